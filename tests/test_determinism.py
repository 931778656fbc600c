"""A seed repeats a run: the same config in two processes with different Python hash seeds
samples the same actions and trains to the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# One process: build with seed 0, record the first sampled actions of every agent, train one
# iteration, report the team return. RLlib's agents-to-act are a set, whose order follows
# the hash seed; harl_rllib's SortAgentsInBatch makes the order fixed (core/agent_order.py).
SCRIPT = r"""
import json, sys
import numpy as np
import ray
import harl_rllib
from harl_rllib import HAPPOConfig, HATD3Config

ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
harl_rllib.register()
out = {}
for name, cls, extra in (("happo", HAPPOConfig, {}), ("happo_shared", HAPPOConfig, {"share_param": True}),
                         ("hatd3", HATD3Config, {"warmup_steps": 0, "train_interval": 10})):
    env_config = {"task": "simple_spread_v3", "continuous_actions": name == "hatd3"}
    config = (cls().environment("harl_mpe", env_config=env_config)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
              .training(train_batch_size_per_learner=200, **extra).debugging(seed=0))
    if name.startswith("happo"):
        config = config.training(num_epochs=1, critic_epoch=1)
    algo = config.build_algo()
    samples = algo.env_runner.sample(num_timesteps=20, random_actions=False)
    if hasattr(samples[0], "actions"):  # team rollouts (HAPPO) or episodes (HATD3)
        actions = {aid: s.actions[aid].round(5).tolist() for s in samples for aid in sorted(s.actions)}
    else:
        actions = {aid: np.asarray(sa.get_actions()).round(5).tolist()
                   for ep in samples for aid, sa in sorted(ep.agent_episodes.items())}
    ret = algo.train()["env_runners"].get("team_episode_return_mean")
    out[name] = {"actions": actions, "return": None if ret is None or ret != ret else round(float(ret), 5)}
    algo.stop()
ray.shutdown()
print("RESULT" + json.dumps(out))
"""


def _run(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.parametrize("hash_seeds", [("1", "2")])
def test_seeded_runs_repeat_across_hash_seeds(hash_seeds):
    first, second = (_run(h) for h in hash_seeds)
    for name in first:
        assert first[name]["actions"] == second[name]["actions"], name
        assert first[name]["return"] == second[name]["return"], name
