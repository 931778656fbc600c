"""The off-policy family through the user's entry points, on real Ray and real envs: Tune by
name, `train.py`, checkpoints, the warm-up/update cadence, exploration and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.columns import Columns

import harl_rllib
from harl_rllib import HASACConfig, HATD3Config
from harl_rllib.core.off_policy_learner import TOTAL_IT
from harl_rllib.run import build_config

ROOT = Path(__file__).resolve().parents[1]
OFF_POLICY = ("HADDPG", "HATD3", "HASAC", "MADDPG", "MATD3")
# 2 envs × 5 steps per iteration, 5 updates of 16 rows after 20 warm-up steps.
SMALL = {
    "num_envs_per_env_runner": 2,
    "warmup_steps": 20,
    "train_interval": 5,
    "update_per_train": 1,
    "train_batch_size_per_learner": 16,
    "buffer_size": 1000,
}


def _mpe(cls, **training):
    return (
        cls()
        .environment("harl_mpe", env_config={"task": "simple_spread_v3", "continuous_actions": True})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .debugging(seed=0)
        .training(**{**{k: v for k, v in SMALL.items() if k != "num_envs_per_env_runner"}, **training})
    )


def test_registered_with_tune_and_train_py():
    from ray.tune.registry import TRAINABLE_CLASS, _global_registry

    from harl_rllib.run import ALGO_CONFIGS

    for name in OFF_POLICY:
        assert _global_registry.get(TRAINABLE_CLASS, name) is harl_rllib.ALGORITHMS[name]
        assert name.lower() in ALGO_CONFIGS


def test_warmup_then_cadence_and_counts(ray_session):
    algo = _mpe(HATD3Config).build_algo()
    try:
        learner = algo.learner_group._learner
        r1 = algo.train()  # warm-up: 20 random steps, no update
        assert r1["env_runners"]["num_env_steps_sampled_lifetime"] == 20
        assert learner.total_it == 0 and len(learner.buffer) == 20
        r2 = algo.train()  # 2 envs × 5 steps, then 5 updates (update_per_train × train_interval)
        assert r2["env_runners"]["num_env_steps_sampled_lifetime"] == 30
        assert learner.total_it == 5 and len(learner.buffer) == 30
        assert r2["learners"]["__all_modules__"]["num_env_steps_trained"] == 5 * 16
        # TD3: actors train on every 2nd update; both actor and critic metrics are reported.
        assert "actor_loss" in r2["learners"]["agent_0"]
        assert "critic_loss" in r2["learners"]["__central_critic__"]
        # The env runners act with the learner's actors after the update.
        with torch.no_grad():
            obs = torch.randn(4, 18)
            a_learner = learner.module["agent_0"].unwrapped().pi(obs)
            a_runner = algo.env_runner.module["agent_0"].pi(obs)
        torch.testing.assert_close(a_learner, a_runner)
        assert not hasattr(algo.env_runner.module["agent_0"], "target_pi")  # inference-only modules
    finally:
        algo.stop()


def test_exploration_noise_and_warmup_actions():
    module = _mpe(HATD3Config, expl_noise=0.3, warmup_steps=100).get_multi_rl_module_spec().build()["agent_0"]
    obs = torch.randn(20_000, 18)
    with torch.no_grad():
        greedy = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
        noisy = module.forward_exploration({Columns.OBS: obs}, t=100)[Columns.ACTIONS]
    inner = (greedy.abs() < 0.2).all(-1)  # away from the box's edge, the noise is unclipped
    assert float((noisy - greedy)[inner].std()) == pytest.approx(0.3, rel=0.05)
    assert noisy.abs().max() <= 1.0
    warm = module.forward_exploration({Columns.OBS: obs}, t=99)[Columns.ACTIONS]  # warm-up: uniform
    assert float(warm.mean()) == pytest.approx(0.0, abs=0.02) and float(warm.var()) == pytest.approx(1 / 3, rel=0.05)


@pytest.mark.parametrize("name", ["HATD3", "HASAC"])
def test_checkpoint_round_trip_keeps_weights_targets_and_counters(ray_session, tmp_path, name):
    cls = harl_rllib.ALGORITHMS[name].get_default_config().__class__
    algo = _mpe(cls, actor_model={"hidden_sizes": [32, 32]}, critic_hidden_sizes=[32, 32]).build_algo()
    try:
        algo.train()
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        weights = algo.learner_group._learner.module.get_state()
        total_it = algo.learner_group._learner.total_it
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        learner = restored.learner_group._learner
        again = learner.module.get_state()
        assert learner.total_it == total_it == learner.get_state()[TOTAL_IT]
        for mid in weights:
            assert set(weights[mid]) == set(again[mid])
            for k, v in weights[mid].items():
                np.testing.assert_array_equal(np.asarray(v), np.asarray(again[mid][k]), err_msg=f"{mid}/{k}")
        assert any("target" in k for k in again["__central_critic__"])
        # The buffer is not in the checkpoint (as RLlib's default): it refills before updating.
        result = restored.train()
        assert result["training_iteration"] == 3 and learner.total_it == total_it
    finally:
        restored.stop()


def test_tuner_by_name_hasac_on_discrete_toy(ray_session, tmp_path):
    config = (
        HASACConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(**{k: v for k, v in SMALL.items() if k != "num_envs_per_env_runner"}, auto_alpha=True)
    )
    results = tune.Tuner(
        "HASAC",
        param_space=config,
        run_config=tune.RunConfig(stop={"training_iteration": 3}, storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert not results.errors, results.errors
    learners = results[0].metrics["learners"]
    assert learners["__all_modules__"]["num_env_steps_trained_lifetime"] == 2 * 5 * 16
    assert "alpha" in learners["agent_0"] and learners["agent_0"]["alpha"] != 1.0  # tuned temperature


@pytest.mark.parametrize("algo", ["hatd3", "hasac", "maddpg"])
def test_train_py(tmp_path, algo):
    overrides = tmp_path / "small.yaml"
    overrides.write_text("".join(f"{k}: {v}\n" for k, v in SMALL.items()))
    args = ["--algo", algo, "--env", "mpe", "--task", "simple_spread_v3", "--continuous-actions"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "--stop-iters", "2", "--config", str(overrides)]
        + ["--storage-path", str(tmp_path / "res"), "--num-cpus", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list((tmp_path / "res").iterdir())
    lines = [json.loads(x) for x in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert [x["env_steps"] for x in lines] == [20, 30]
    assert (run_dir / "checkpoint").is_dir()


def test_bad_input_raises_before_ray_starts():
    import ray

    was_running = ray.is_initialized()
    with pytest.raises(ValueError, match="continuous-actions"):
        build_config(algo="hatd3", env="mpe", task="simple_spread_v3")  # discrete MPE
    with pytest.raises(ValueError, match="tau"):
        build_config(algo="hatd3", env="mpe", task="simple_spread_v3", continuous_actions=True, overrides={"tau": 2})
    with pytest.raises(ValueError, match="HAD3QN supports state_type='EP' only"):
        build_config(algo="had3qn", env="smax", task="3m", overrides={"state_type": "FP", "use_valuenorm": False})
    # Several learners and FP states are HATD3's and HASAC's as HARL's (tests/test_multi_learner.py).
    assert (
        build_config(
            algo="hasac", env="mpe", task="simple_spread_v3", continuous_actions=True, num_learners=2
        ).num_learners
        == 2
    )
    fp = build_config(algo="hatd3", env="mamujoco", task="HalfCheetah-2x3", overrides={"state_type": "FP"})
    assert fp.state_type == "FP"
    assert ray.is_initialized() == was_running
    bad = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--algo", "hatd3", "--env", "mpe"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "continuous" in bad.stderr


def test_replay_buffer_in_checkpoints_when_asked(ray_session, tmp_path):
    """store_buffer_in_checkpoints (RLlib's name): the restored learner holds the same rows, links
    and sampling RNG, so it draws the same next batch as the original."""
    config = _mpe(HATD3Config, store_buffer_in_checkpoints=True, actor_model={"hidden_sizes": [16]})
    algo = config.build_algo()
    try:
        algo.train()
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        learner = algo.learner_group._learner
        size, expected = len(learner.buffer), learner.buffer.sample(8)
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        buffer = restored.learner_group._learner.buffer
        assert len(buffer) == size == 30
        got = buffer.sample(8)
        np.testing.assert_array_equal(got["state"], expected["state"])
        np.testing.assert_array_equal(got["agent_0"][Columns.ACTIONS], expected["agent_0"][Columns.ACTIONS])
    finally:
        restored.stop()
