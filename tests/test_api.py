"""Registration, Tune, checkpoints, train.py, heterogeneous and continuous spaces, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune
from ray.rllib.algorithms.algorithm import Algorithm

import harl_rllib
from harl_rllib import HAPPO, HAPPOConfig, MAPPOConfig
from harl_rllib.run import build_config

from conftest import no_state_env_class, small_config

ROOT = Path(__file__).resolve().parents[1]


def test_import_registers_algorithms_and_envs():
    from ray.tune.registry import ENV_CREATOR, TRAINABLE_CLASS, _global_registry

    for name in ("HAPPO", "HATRPO", "HAA2C", "MAPPO"):
        assert _global_registry.get(TRAINABLE_CLASS, name) is harl_rllib.ALGORITHMS[name]
    assert _global_registry.contains(ENV_CREATOR, "harl_mpe")


def test_tuner_by_name(ray_session, tmp_path):
    config = small_config(batch=100, num_epochs=1, critic_epoch=1)
    results = tune.Tuner(
        "HAPPO",
        param_space=config,
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert not results.errors
    assert results[0].metrics["training_iteration"] == 1
    assert results[0].metrics["env_runners"]["num_env_steps_sampled_lifetime"] >= 100


def test_checkpoint_round_trip(ray_session, tmp_path):
    algo = small_config(batch=100, num_epochs=1, critic_epoch=1).build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        weights = algo.learner_group._learner.module.get_state()
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert isinstance(restored, HAPPO)
        again = restored.learner_group._learner.module.get_state()
        assert set(again) == set(weights) and "__central_critic__" in again
        for mid in weights:
            for k, v in weights[mid].items():
                np.testing.assert_array_equal(np.asarray(v), np.asarray(again[mid][k]))
        result = restored.train()
        assert result["training_iteration"] == 2
    finally:
        restored.stop()


def test_heterogeneous_speaker_listener_and_shared_error(ray_session):
    config = small_config(task="simple_speaker_listener_v4", batch=100, num_epochs=1, critic_epoch=1)
    spec = config.get_multi_rl_module_spec()
    assert spec.rl_module_specs["speaker_0"].action_space.n == 3
    assert spec.rl_module_specs["listener_0"].action_space.n == 5
    assert spec.rl_module_specs["__central_critic__"].learner_only
    algo = config.build_algo()
    try:
        assert algo.train()["env_runners"]["num_env_steps_sampled_lifetime"] >= 100
        assert "__central_critic__" not in algo.env_runner.module.keys()
    finally:
        algo.stop()
    with pytest.raises(ValueError, match="share_param=True needs every agent"):
        small_config(task="simple_speaker_listener_v4", share_param=True).validate()


def test_continuous_actions(ray_session):
    config = small_config(batch=100, num_epochs=1, critic_epoch=1, env_config={"continuous_actions": True})
    algo = config.build_algo()
    try:
        before = {k: v.clone() for k, v in algo.learner_group._learner.module["agent_0"].state_dict().items()}
        result = algo.train()
        after = algo.learner_group._learner.module["agent_0"].state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert np.isfinite(result["learners"]["agent_0"]["policy_loss"])
    finally:
        algo.stop()


def test_mappo_shares_one_actor(ray_session):
    config = small_config(MAPPOConfig, batch=100, num_epochs=1, critic_epoch=1)
    config.validate()
    assert set(config.get_multi_rl_module_spec().rl_module_specs) == {"shared_actor", "__central_critic__"}
    algo = config.build_algo()
    try:
        assert "shared_actor" in algo.train()["learners"]
    finally:
        algo.stop()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(algo="happo", env="nope", task=None), "Unknown env 'nope'"),
        (dict(algo="happo", env="mpe", task="simple_nope"), "Unknown mpe task"),
        (dict(algo="nope", env="mpe", task="simple_spread_v3"), "Unknown algo"),
        (dict(algo="happo", env="mpe", task="simple_spread_v3", overrides={"clip_param": -1}), "clip_param"),
        (dict(algo="happo", env="mpe", task="simple_spread_v3", overrides={"gamma": 2.0}), "gamma"),
        (dict(algo="happo", env="mpe", task="simple_spread_v3", overrides={"num_epochs": 0}), "num_epochs"),
        (dict(algo="happo", env="mpe", task="simple_spread_v3", overrides={"state_type": "XP"}), "state_type"),
        (dict(algo="happo", env="mpe", task="simple_spread_v3", overrides={"clip_parm": 0.1}), "Unknown config field"),
    ],
)
def test_bad_input_raises_before_ray_starts(kwargs, match):
    import ray

    was_running = ray.is_initialized()
    with pytest.raises(ValueError, match=match):
        build_config(**kwargs)
    assert ray.is_initialized() == was_running


@pytest.mark.parametrize(
    "env, task, name, extra, per_agent",
    [
        ("mpe", "simple_spread_v3", "minibatch_size", {}, False),  # a row per env step
        ("mpe", "simple_spread_v3", "minibatch_size", {"share_param": True, "sequential_update": False}, True),
        # A shared actor in the sequential update trains on one agent's rows at a time.
        ("mpe", "simple_spread_v3", "minibatch_size", {"share_param": True}, False),
        ("smax", "3m", "critic_minibatch_size", {"state_type": "FP"}, True),
        ("smax", "3m", "critic_minibatch_size", {}, False),  # EP: one state per env step
    ],
)
def test_minibatch_size_is_bounded_by_the_rows_it_splits(env, task, name, extra, per_agent):
    """A shared actor in the simultaneous update (MAPPO) trains on every agent's rows and an FP
    critic on a state per agent, so their minibatches may be up to n_agents × the env-step batch;
    beyond the rows it splits a minibatch size is refused."""
    rows = 3 * 100 if per_agent else 100  # both tasks have 3 agents
    most = f"{'3 agents × ' if per_agent else ''}`train_batch_size_per_learner` 100 = {rows} rows"
    overrides = {**extra, "train_batch_size_per_learner": 100}
    assert getattr(build_config(algo="happo", env=env, task=task, overrides={**overrides, name: rows}), name) == rows
    message = f"`{name}` ({rows + 1}) is larger than the batch it splits ({most}"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_config(algo="happo", env=env, task=task, overrides={**overrides, name: rows + 1})


def test_train_py_smoke(tmp_path):
    cfg = tmp_path / "over.yaml"
    cfg.write_text("train_batch_size_per_learner: 100\nnum_epochs: 1\ncritic_epoch: 1\n")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--algo",
            "happo",
            "--env",
            "mpe",
            "--task",
            "simple_spread_v3",
            "--stop-iters",
            "2",
            "--config",
            str(cfg),
            "--storage-path",
            str(tmp_path / "res"),
            "--num-cpus",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "iter    2" in out.stdout
    (run_dir,) = list((tmp_path / "res").iterdir())
    lines = [json.loads(x) for x in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2]
    assert (run_dir / "checkpoint").is_dir()
    bad = subprocess.run([sys.executable, str(ROOT / "train.py"), "--env", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Unknown env 'nope'" in bad.stderr


def test_custom_env_without_state(ray_session):
    """A user's MultiAgentEnv with no state: the critic sees the concatenated observations."""
    config = (
        HAPPOConfig()
        .environment(no_state_env_class())
        .env_runners(num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=50, num_epochs=1, critic_epoch=1)
    )
    team = config.get_team_spec()
    assert not team.has_state and team.state_space.shape == (15,)
    algo = config.build_algo()
    try:
        assert algo.train()["training_iteration"] == 1
    finally:
        algo.stop()


def test_team_return_sums_every_chunk_of_an_episode(ray_session):
    """5-step toy episodes sampled in 2-step fragments arrive in chunks; the team return is
    the whole episode's (RLlib's episode_return_mean sums all agents' copies: n × team)."""
    from harl_rllib import HAPPOConfig

    config = (
        HAPPOConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions", "episode_length": 5})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=2)
        .training(train_batch_size_per_learner=30, num_epochs=1, critic_epoch=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        er = algo.train()["env_runners"]
    finally:
        algo.stop()
    assert er["team_episode_return_mean"] == pytest.approx(er["episode_return_mean"] / 3)
    assert er["team_episode_return_mean"] > 1.0  # a 5-step episode, not a 1- or 2-step chunk
