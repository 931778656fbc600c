"""Checkpoints: atomic writes, and a resumed run that matches the uninterrupted one."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ray.rllib.algorithms.algorithm import Algorithm

from harl_rllib.run import InterruptLatch, last_checkpoint, save_checkpoint

from conftest import small_config

ROOT = Path(__file__).resolve().parents[1]


def _iteration(algo) -> dict:
    r = algo.train()
    positions = {a: r["learners"][a]["update_position"] for a in ("agent_0", "agent_1", "agent_2")}
    return {"return": r["env_runners"]["team_episode_return_mean"], "positions": positions}


def _actor_weights(algo) -> dict:
    return algo.learner_group.get_weights()


@pytest.mark.parametrize("env", ["harl_mpe", "harl_toy"])
def test_resumed_run_matches_uninterrupted(ray_session, tmp_path, env):
    """4 iterations in one go vs 2 + checkpoint + restore in a new Algorithm + 2: the same
    agent orders, returns and weights. MPE's 25-step episodes end at the 200-step iteration
    boundary, so the checkpoint (weights, optimizers, RNGs of the env, of exploration, of the
    agent order and of the minibatches) is all the state there is."""

    def config():
        c = small_config(batch=200, num_epochs=2, critic_epoch=2, minibatch_size=50)
        return c.environment(env, env_config={"task": "simple_spread_v3" if env == "harl_mpe" else "distinct_actions"})

    algo = config().build_algo()
    try:
        straight = [_iteration(algo) for _ in range(4)]
        final = _actor_weights(algo)
    finally:
        algo.stop()

    algo = config().build_algo()
    try:
        first = [_iteration(algo) for _ in range(2)]
        save_checkpoint(algo, tmp_path / "checkpoint")
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(last_checkpoint(tmp_path)))
    try:
        assert restored.iteration == 2
        second = [_iteration(restored) for _ in range(2)]
        resumed_final = _actor_weights(restored)
    finally:
        restored.stop()

    resumed = first + second
    assert [s["positions"] for s in straight] == [s["positions"] for s in resumed]
    assert len({tuple(s["positions"].values()) for s in straight}) > 1  # the order did change
    np.testing.assert_allclose([s["return"] for s in resumed], [s["return"] for s in straight], rtol=1e-6)
    for mid, weights in final.items():
        for key, value in weights.items():
            np.testing.assert_allclose(resumed_final[mid][key], value, rtol=1e-5, atol=1e-6, err_msg=f"{mid}/{key}")


def test_save_checkpoint_keeps_a_complete_one(ray_session, tmp_path):
    algo = small_config(batch=100, num_epochs=1, critic_epoch=1).build_algo()
    try:
        algo.train()
        save_checkpoint(algo, tmp_path / "checkpoint")
        save_checkpoint(algo, tmp_path / "checkpoint")  # replaces the first one
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
        # A crash between the two renames leaves only the previous checkpoint: still found.
        (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
        assert last_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    finally:
        algo.stop()
    with pytest.raises(FileNotFoundError):
        last_checkpoint(tmp_path / "nothing")


def test_train_py_resume(tmp_path):
    base = [sys.executable, str(ROOT / "train.py"), "--num-cpus", "1"]
    small = tmp_path / "small.yaml"
    small.write_text("train_batch_size_per_learner: 100\nnum_epochs: 1\ncritic_epoch: 1\nnum_envs_per_env_runner: 1\n")
    args = ["--stop-iters", "2", "--checkpoint-every", "1", "--config", str(small), "--storage-path", str(tmp_path)]
    first = subprocess.run(
        [*base, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    again = subprocess.run([*base, "--resume", str(run_dir), "--stop-iters", "3"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [json.loads(x) for x in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3]
    assert lines[2]["env_steps"] == 300
    missing = subprocess.run([*base, "--resume", str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2 and "No checkpoint" in missing.stderr


def test_train_py_uploads_to_a_uri(tmp_path):
    """A cloud --storage-path (here a file:// URI, through the same pyarrow path as s3:// or
    gs://): the run is staged locally and uploaded after every checkpoint and at the end."""
    small = tmp_path / "small.yaml"
    small.write_text("train_batch_size_per_learner: 100\nnum_epochs: 1\ncritic_epoch: 1\nnum_envs_per_env_runner: 1\n")
    remote = tmp_path / "bucket"
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--num-cpus", "1", "--stop-iters", "2", "--config", str(small)]
        + ["--checkpoint-every", "1", "--storage-path", remote.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARL_RLLIB_STAGING": str(tmp_path / "staging")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list(remote.iterdir())
    assert [json.loads(x)["iteration"] for x in (run_dir / "progress.jsonl").read_text().splitlines()] == [1, 2]
    assert (run_dir / "checkpoint").is_dir() and (run_dir / "result.json").is_file()
    assert json.loads((run_dir / "result.json").read_text())["checkpoint"].startswith("file://")


def test_ctrl_c_discarded_in_a_gc_callback_still_stops_training():
    """JAX (imported by RLlib) runs a gc callback; a Ctrl-C whose KeyboardInterrupt is raised
    there is discarded by Python, and train.py once trained on after one (seen in CI). The
    latch remembers it: `check()` raises it after the iteration."""

    def collect_with_a_signal(phase: str, info: dict) -> None:
        if phase == "start":
            signal.raise_signal(signal.SIGINT)  # the handler runs inside this callback

    def interrupted_inside_gc() -> None:
        gc.callbacks.append(collect_with_a_signal)
        try:
            gc.collect()  # Python prints "Exception ignored in ..." and goes on
        finally:
            gc.callbacks.remove(collect_with_a_signal)

    default = signal.getsignal(signal.SIGINT)
    with InterruptLatch() as latch:
        latch.check()  # nothing yet
        interrupted_inside_gc()
        assert latch.received
        with pytest.raises(KeyboardInterrupt):
            latch.check()
    assert signal.getsignal(signal.SIGINT) is default
    # Without the latch the same interrupt is lost: this is what the latch is for.
    interrupted_inside_gc()
