"""SMAX and MAMuJoCo through the user's two entry points: `train.py` and Tune by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray import tune

from harl_rllib.run import build_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"train_batch_size_per_learner": 200, "num_epochs": 1, "critic_epoch": 1, "num_envs_per_env_runner": 2}
CASES = [("smax", "3m"), ("mamujoco", "HalfCheetah-2x3")]


@pytest.mark.parametrize("env, task", CASES)
def test_tune_by_name(ray_session, tmp_path, env, task):
    pytest.importorskip("jaxmarl" if env == "smax" else "gymnasium_robotics")
    config = build_config(algo="hatrpo", env=env, task=task, overrides=SMALL)
    results = tune.Tuner(
        "HATRPO",
        param_space=config,
        run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert not results.errors, results.errors
    metrics = results[0].metrics
    assert metrics["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
    assert any(k.startswith("hatrpo_kl") for k in metrics["learners"]["agent_0"])


@pytest.mark.parametrize("env, task", CASES)
def test_train_py(tmp_path, env, task):
    pytest.importorskip("jaxmarl" if env == "smax" else "gymnasium_robotics")
    overrides = tmp_path / "small.yaml"
    overrides.write_text("".join(f"{k}: {v}\n" for k, v in SMALL.items()))
    args = ["--algo", "happo", "--env", env, "--task", task, "--stop-iters", "1", "--config", str(overrides)]
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "--storage-path", str(tmp_path / "res"), "--num-cpus", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list((tmp_path / "res").iterdir())
    (line,) = [json.loads(x) for x in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert line["env_steps"] >= 200


def test_unknown_tasks_exit_2():
    for env, task in (("smax", "4m"), ("mamujoco", "HalfCheetah-9x9"), ("smac", "nope")):
        out = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "--env", env, "--task", task], capture_output=True, text=True
        )
        assert out.returncode == 2 and "Unknown" in out.stderr, (env, out.stderr[-500:])
