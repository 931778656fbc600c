"""Guards at the env boundary and in the update: faulty envs stop training with a clear error
instead of hanging it or poisoning the weights, and no checkpoint ever holds NaN.

Why: RLlib restarts a failing env and its sample() call without bound (an env failing every
50 steps looped for 200 s, no iteration, no error), and one NaN reward turned every weight
into NaN within an update, surfacing iterations later as a torch error naming neither env
nor agent. The faulty envs here are real MPE/toy envs wrapped by `CrashOnStepEnv`.
"""

from __future__ import annotations

import logging
import signal
import time
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest
import torch

from harl_rllib.core.algorithm import NonFiniteCheckpointError
from harl_rllib.core.critic import CRITIC_MODULE_ID
from harl_rllib.core.env_checks import EnvFailureError, EnvValueError, TeamValueChecker
from harl_rllib.core.learner import NONFINITE_SKIPPED, NonFiniteUpdateError
from harl_rllib.envs.faults import CRASHING_ENV_ID, register_fault_envs
from harl_rllib.run import save_checkpoint

from conftest import small_config


def _faulty_config(num_env_runners: int = 0, task: str = "simple_spread_v3", inner="harl_mpe", **env_config):
    register_fault_envs()
    config = small_config(batch=200, num_epochs=1, critic_epoch=1).env_runners(num_env_runners=num_env_runners)
    return config.environment(
        CRASHING_ENV_ID, env_config={"inner_env": inner, "inner_config": {"task": task}, **env_config}
    )


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) if the block runs longer than `seconds`."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("num_env_runners", [0, 1], ids=["local_runner", "remote_runner"])
def test_env_failing_every_50_steps_stops_training_with_a_clear_error(ray_session, num_env_runners):
    config = _faulty_config(num_env_runners, crash_at_step=list(range(50, 1_000_000, 50)))
    config.fault_tolerance(max_env_failures_per_sample=4, delay_between_env_runner_restarts_s=1.0)
    algo = config.build_algo()
    try:
        start = time.time()
        with time_limit(150), pytest.raises(EnvFailureError) as error:
            for _ in range(20):
                algo.train()
        # Each sample() call restarts from scratch after a failure: 200 steps never come.
        assert time.time() - start < 150
    finally:
        algo.stop()
    message = str(error.value)
    env = "Env 'harl_crashing' (task 'simple_spread_v3')"
    assert f"{env} failed 5 times in one sample() call of env runner {num_env_runners}" in message
    assert "max_env_failures_per_sample=4" in message and "InjectedEnvCrash" in message


BAD_VALUES = {
    "nan_reward": "a non-finite reward nan for agent 'agent_0'",
    "nan_obs": "a non-finite observation of agent 'agent_0'",
    "nan_state": "a non-finite global state (info['state']) for agent 'agent_0'",
    "obs_shape": "an observation of agent 'agent_0' of shape (19,); its space Box(-inf, inf, (18,), float32)",
}


# Each fault in the driver's local runner; one through a remote runner, whose error the driver raises.
@pytest.mark.parametrize("fault, num_env_runners", [(f, 0) for f in BAD_VALUES] + [("nan_reward", 1)])
def test_bad_env_value_names_env_agent_and_step(ray_session, fault, num_env_runners):
    what = BAD_VALUES[fault]
    # Process-wide step 30: RLlib's env check takes step 1, the first episode 25 more.
    algo = _faulty_config(num_env_runners, crash_at_step=[30], fault=fault).build_algo()
    try:
        with pytest.raises(EnvValueError) as error:
            algo.train()
        algo.check_finite_weights()  # nothing reached the learner
    finally:
        algo.stop()
    message = str(error.value)
    assert message.startswith(f"Env 'harl_crashing' (task 'simple_spread_v3') returned {what}"), message
    assert f"(env runner {num_env_runners}, env 0, step 4 of its episode)" in message
    assert "check_env_values=False" in message


def test_out_of_bounds_observation_warns_once_per_agent(ray_session, caplog):
    # The toy task's observations are Box(0, 1); agent_0's first entry is pushed above 1.
    config = _faulty_config(
        inner="harl_toy", task="distinct_actions", crash_at_step=[5, 6, 7, 40], fault="obs_out_of_bounds"
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.WARNING, logger="harl_rllib.core.env_checks"):
            algo.train()
            algo.train()
    finally:
        algo.stop()
    warnings = [r.getMessage() for r in caplog.records if "outside its space" in r.getMessage()]
    assert len(warnings) == 1 and "observation of agent 'agent_0'" in warnings[0], warnings


def test_value_checker_on_fixed_dicts():
    box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    masked = gym.spaces.Dict({"obs": box, "action_mask": gym.spaces.Box(0.0, 1.0, (4,), np.float32)})
    checker = TeamValueChecker("'my_env'", {"a": box, "b": masked})
    ok_obs = {"a": np.zeros(3, np.float32), "b": {"obs": np.ones(3, np.float32), "action_mask": np.ones(4, np.float32)}}
    checker.check(ok_obs, {"a": {"state": np.zeros(5)}}, {"a": 1.0, "b": np.float32(1.0)}, where="here")
    big = np.full(3, 3e38, np.float32)  # finite, though its sum overflows float32
    checker.check({**ok_obs, "a": big}, {}, None, where="here")
    with pytest.raises(EnvValueError, match=r"observation\['action_mask'\] of agent 'b' of shape \(5,\)"):
        checker.check({**ok_obs, "b": {**ok_obs["b"], "action_mask": np.ones(5, np.float32)}}, {}, None, where="h")
    with pytest.raises(EnvValueError, match=r"non-finite reward inf for agent 'b' \(here\)"):
        checker.check(ok_obs, {}, {"a": 0.0, "b": float("inf")}, where="here")
    with pytest.raises(EnvValueError, match="non-finite global state"):
        checker.check(ok_obs, {"a": {"state": np.array([0.0, np.nan])}}, None, where="here")


def test_value_checker_on_a_batched_step():
    """An env's own vector step (SMAX's team_step): team arrays of B = 4 envs, 2 agents; the
    error names the env and the agent of the first bad value."""
    checker = TeamValueChecker("'my_env'", {})
    obs = {"obs": np.zeros((4, 2, 3), np.float32), "action_mask": np.ones((4, 2, 5), np.float32)}
    reward, states = np.zeros(4, np.float32), (np.zeros((4, 1, 6), np.float32),)

    def where(b: int) -> str:
        return f"env {b}"

    checker.check_arrays(reward, states, (obs,), ["a", "b"], where=where)
    bad_obs = {**obs, "obs": obs["obs"].copy()}
    bad_obs["obs"][2, 1, 0] = np.nan
    with pytest.raises(EnvValueError, match=r"non-finite observation\['obs'\] of agent 'b' \(env 2\)"):
        checker.check_arrays(reward, states, (obs, bad_obs), ["a", "b"], where=where)
    with pytest.raises(EnvValueError, match=r"non-finite team reward \(env 3\)"):
        checker.check_arrays(np.array([0, 0, 0, np.inf], np.float32), states, (obs,), ["a", "b"], where=where)
    bad_state = np.zeros((4, 1, 6), np.float32)
    bad_state[1, 0, 5] = -np.inf
    with pytest.raises(EnvValueError, match=r"non-finite global state \(env 1\)"):
        checker.check_arrays(reward, (bad_state,), (obs,), ["a", "b"], where=where)


def test_nonfinite_updates_are_skipped_then_stop_training(ray_session):
    # With the env check off, every reward is NaN: every gradient step is non-finite.
    config = _faulty_config(crash_probability=1.0, fault="nan_reward")
    config.environment(check_env_values=False).fault_tolerance(max_consecutive_nonfinite_updates=5)
    algo = config.build_algo()
    try:
        before = algo.learner_group.get_weights()
        result = algo.train()  # 4 gradient steps (3 actors, 1 critic), none applied
        skipped = sum(m.get(NONFINITE_SKIPPED, 0) for m in result["learners"].values() if isinstance(m, dict))
        assert skipped == 4
        after = algo.learner_group.get_weights()
        for mid, weights in before.items():
            for name, value in weights.items():
                np.testing.assert_array_equal(after[mid][name], value, err_msg=f"{mid}/{name}")
        with pytest.raises(NonFiniteUpdateError, match="5 gradient steps in a row had a non-finite loss"):
            algo.train()
        algo.check_finite_weights()
    finally:
        algo.stop()


def test_no_checkpoint_holds_nonfinite_weights(ray_session, tmp_path, monkeypatch):
    algo = small_config(batch=100, num_epochs=1, critic_epoch=1).build_algo()
    try:
        algo.train()
        monkeypatch.chdir(tmp_path)
        algo.save_to_path("relative_checkpoint")  # a relative path works (RLlib's needs an absolute one)
        assert (tmp_path / "relative_checkpoint").is_dir()
        restored = type(algo).from_checkpoint("relative_checkpoint")  # and loads from one
        try:
            assert restored.iteration == algo.iteration == 1
        finally:
            restored.stop()
        algo.restore_from_path("relative_checkpoint")
        save_checkpoint(algo, tmp_path / "checkpoint")
        learner = algo.learner_group._learner
        with torch.no_grad():
            learner.module[CRITIC_MODULE_ID].unwrapped().value_norm.running_mean.fill_(float("nan"))
        with pytest.raises(NonFiniteCheckpointError, match="__central_critic__/value_norm.running_mean"):
            save_checkpoint(algo, tmp_path / "checkpoint")
        with pytest.raises(NonFiniteCheckpointError):
            algo.save_to_path(tmp_path / "direct")
    finally:
        algo.stop()
    assert not (tmp_path / "direct").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "relative_checkpoint"]  # the old one kept
