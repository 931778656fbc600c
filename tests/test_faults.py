"""Fault tolerance: training survives an env that crashes and an env runner that dies.

Why: long cluster runs meet crashing simulators (StarCraft II) and lost nodes (spot
instances). These tests inject both faults into real HAPPO runs and check that training
goes on without double-counting the episodes the crash cut.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harl_rllib import HAPPOConfig
from harl_rllib.envs.faults import CRASHING_ENV_ID, CrashOnStepEnv, InjectedEnvCrash, register_fault_envs

from conftest import small_config

CRASH_AT = 60  # process-wide env step; step 1 is RLlib's env check, so the crash is mid-episode 3


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _crashing_config(events: Path, **env_config: Any) -> HAPPOConfig:
    register_fault_envs()
    config = small_config(batch=200, num_epochs=1, critic_epoch=1)
    return config.environment(
        CRASHING_ENV_ID,
        env_config={
            "inner_env": "harl_mpe",
            "inner_config": {"task": "simple_spread_v3"},
            "events_file": str(events),
            **env_config,
        },
    )


def test_crashing_env_wraps_the_team_and_crashes_once_per_process(tmp_path):
    events = tmp_path / "events.jsonl"
    settings = {"inner_config": {"task": "simple_speaker_listener_v4"}, "crash_at_step": 3, "events_file": str(events)}
    env = CrashOnStepEnv(settings)
    assert env.possible_agents == ["listener_0", "speaker_0"]
    assert env.get_action_space("speaker_0").n == 3 and env.state_space is not None
    env.reset(seed=0)
    noop = {a: 0 for a in env.possible_agents}
    env.step(noop)
    env.step(noop)
    with pytest.raises(InjectedEnvCrash, match="step 3"):
        env.step(noop)
    # A rebuilt env (what RLlib does after a crash) continues the process-wide count: no second crash.
    env = CrashOnStepEnv(settings)
    env.reset(seed=0)
    for _ in range(25):
        *_, truncateds, _ = env.step(noop)
    assert truncateds["__all__"]
    assert [e["event"] for e in _events(events)] == ["crash", "episode_end"]
    with pytest.raises(ValueError, match="unknown inner_env"):
        CrashOnStepEnv({"inner_env": "no_such_env"})


@pytest.mark.parametrize("num_env_runners", [1, 0], ids=["remote_runner", "local_runner"])
def test_env_crash_is_survived_and_cut_episodes_are_not_counted(ray_session, tmp_path, num_env_runners):
    events = tmp_path / "events.jsonl"
    config = (
        _crashing_config(events, crash_at_step=CRASH_AT)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=1)
        .fault_tolerance(restart_failed_env_runners=True, restart_failed_sub_environments=True)
    )
    algo = config.build_algo()
    try:
        steps, episodes, failures = [], [], []
        for _ in range(3):
            er = algo.train()["env_runners"]
            steps.append(er["num_env_steps_sampled_lifetime"])
            episodes.append(er["num_episodes_lifetime"])
            failures.append(er.get("num_env_step_failures", 0))
    finally:
        algo.stop()
    assert steps[0] >= 200 and steps[1] >= steps[0] + 200 and steps[2] >= steps[1] + 200
    crashes = [e for e in _events(events) if e["event"] == "crash"]
    sampling_runner = 1 if num_env_runners else 0  # the remote runner, or the local one in the driver
    assert len(crashes) == 1 and crashes[0]["worker_index"] == sampling_runner
    assert failures[-1] == 1
    # Every episode RLlib counts ended in the env, once; the one the crash cut is not among them.
    ends = sum(e["event"] == "episode_end" for e in _events(events))
    assert episodes[-1] == ends > 0


def test_killed_env_runner_is_restarted_and_training_continues(ray_session, tmp_path):
    # The wrapper never crashes here: it only logs which process finished which episode.
    events = tmp_path / "events.jsonl"
    config = (
        _crashing_config(events)
        .env_runners(num_env_runners=2, num_envs_per_env_runner=1)
        # A runner that raises waits this long before exiting (RLlib's default: 60 s): keep a failure short.
        .fault_tolerance(delay_between_env_runner_restarts_s=1.0)
    )
    algo = config.build_algo()
    try:
        group = algo.env_runner_group
        algo.train()
        pids = dict(group.foreach_env_runner(lambda r: (r.worker_index, os.getpid()), local_env_runner=False))
        # As a lost node or an OOM kill would: Ray restarts the actor (RLlib sets its max_restarts).
        ray_session.kill(group._worker_manager.actors()[1], no_restart=False)

        last, stats, deadline = algo.train(), None, time.time() + 120
        while time.time() < deadline:
            result = algo.train()
            # Training goes on meanwhile: the healthy runner fills the batch alone.
            assert (
                result["env_runners"]["num_env_steps_sampled_lifetime"]
                >= last["env_runners"]["num_env_steps_sampled_lifetime"] + 200
            )
            last, stats = result, result["fault_tolerance"]
            if stats["num_healthy_workers"] == 2 and stats["num_remote_worker_restarts"] >= 1:
                break
            if stats["num_remote_worker_restarts"] > 1:
                break  # restored, then lost again: fails below
            time.sleep(1.0)
        # Two restarts mean the restored runner died again: e.g. it failed to take the state RLlib
        # syncs into restored runners (the driver's local runner's, which has no env).
        assert (stats["num_remote_worker_restarts"], stats["num_healthy_workers"]) == (1, 2), stats

        # Back in service: a new process, with the current weights, finishing episodes.
        algo.train()
        runners = group.foreach_env_runner(
            lambda r: (r.worker_index, os.getpid(), r.module.get_state(inference_only=True)), local_env_runner=False
        )
        new = {index: (pid, weights) for index, pid, weights in runners}
        assert set(new) == {1, 2} and new[1][0] != pids[1] and new[2][0] == pids[2]
        assert any(e["event"] == "episode_end" and e["pid"] == new[1][0] for e in _events(events))
        weights_1, weights_2 = new[1][1], new[2][1]
        assert set(weights_1) == set(weights_2)
        for module_id, params in weights_1.items():
            for name, value in params.items():
                np.testing.assert_array_equal(np.asarray(value), np.asarray(weights_2[module_id][name]))
    finally:
        algo.stop()
