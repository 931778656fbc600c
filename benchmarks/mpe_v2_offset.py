"""The team-return offset between HARL's MPE simple_spread and ours, measured: docs/RESULTS.md §6.

HARL pins PettingZoo 1.22.2, whose `simple_spread_v2` charges every agent −1 per step for
colliding with itself (its collision loop does not skip the agent; PettingZoo fixed that in
March 2023) and moves agents with the velocity of the same step (v3, May 2023, moves them with the
previous step's). We run mpe2's `simple_spread_v3`. This script plays the same random actions from
the same seeds in both and prints the mean team return (sum of all agents' rewards over 25 steps,
HARL's and our definition) of each, and their difference, which is what to add to HARL's published
curves before reading them next to ours. PettingZoo 1.22.2 needs Python < 3.11 to install, but its
MPE code runs on newer ones from the unpacked wheel:

    pip download pettingzoo==1.22.2 --no-deps --python-version 3.10 --only-binary=:all: -d /tmp/pz122
    python -m zipfile -e /tmp/pz122/PettingZoo-1.22.2-py3-none-any.whl /tmp/pz122/src
    python benchmarks/mpe_v2_offset.py --v2-path /tmp/pz122/src

With `--checkpoint` (a checkpoint or a run directory of an MPE simple_spread run), the trained
actors play instead of random actions, each agent its deterministic (most probable) action, the
policy evaluate.py scores: how much of the gap to HARL's curves a trained policy owes to the
versions rather than to the learning (RESULTS §6). The actors never saw v2, so their v2 return
is a lower bound of what training on v2 would reach.

The two PettingZoo versions cannot share one process (mpe2 imports the installed one), so each
env plays in a subprocess of this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

STEPS = 25  # simple_spread's episode length (max_cycles), HARL's and ours


Policy = Callable[[dict[str, np.ndarray]], dict[str, int]]


def random_policy() -> Policy:
    """Uniform random actions (seed 0)."""
    rng = np.random.default_rng(0)
    return lambda obs: {a: int(rng.integers(5)) for a in obs}


def trained_policy(checkpoint: str) -> Policy:
    """Each agent's most probable action under its actor in `checkpoint`."""
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    from harl_rllib.evaluation import MODULES, load_config, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    config = load_config(path)
    modules: dict[str, RLModule] = {}

    def act(obs: dict[str, np.ndarray]) -> dict[str, int]:
        actions = {}
        for agent, o in obs.items():
            mid = config.policy_mapping_fn(agent, None)
            if mid not in modules:
                modules[mid] = RLModule.from_checkpoint(path / MODULES / mid)
            with torch.no_grad():
                out = modules[mid].forward_inference({Columns.OBS: torch.as_tensor(o[None], dtype=torch.float32)})
            actions[agent] = int(out[Columns.ACTION_DIST_INPUTS][0].argmax())
        return actions

    return act


def play(version: str, v2_path: str, episodes: int, checkpoint: str | None = None) -> list[list[float]]:
    """Per-step team rewards of `episodes` episodes from reset seeds 0..n-1, of random actions
    (seed 0) or of `checkpoint`'s deterministic actions."""
    if version == "v2":
        sys.path.insert(0, v2_path)
        from pettingzoo.mpe import simple_spread_v2 as module
    else:
        import mpe2.simple_spread_v3 as module
    policy = trained_policy(checkpoint) if checkpoint else random_policy()
    episodes_rewards = []
    for episode in range(episodes):
        env = module.parallel_env(N=3, local_ratio=0.5, max_cycles=STEPS, continuous_actions=False)
        obs = env.reset(seed=episode)
        obs = obs[0] if isinstance(obs, tuple) else obs  # PettingZoo 1.22.2 returns no infos
        rewards = []
        for _ in range(STEPS):
            obs, reward, _, _, _ = env.step(policy(obs))
            rewards.append(float(sum(reward.values())))
        episodes_rewards.append(rewards)
    return episodes_rewards


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--v2-path", required=True, help="directory holding PettingZoo 1.22.2's `pettingzoo` package")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--checkpoint", help="a simple_spread run's checkpoint (or run directory): its actors play")
    p.add_argument("--play", choices=["v2", "v3"], help=argparse.SUPPRESS)  # the subprocesses' role
    args = p.parse_args(argv)
    if args.play:
        print(json.dumps(play(args.play, args.v2_path, args.episodes, args.checkpoint)))
        return 0
    if args.checkpoint:
        args.checkpoint = str(Path(args.checkpoint).resolve())
    runs = {}
    for version in ("v2", "v3"):
        cmd = [sys.executable, __file__, "--v2-path", args.v2_path, "--episodes", str(args.episodes), "--play", version]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[version] = np.array(json.loads(out))
    v2, v3 = runs["v2"].sum(axis=1), runs["v3"].sum(axis=1)
    per_step = (runs["v2"] - runs["v3"]).mean(axis=0)
    who = f"the deterministic actions of {args.checkpoint}" if args.checkpoint else "random actions"
    print(f"{who}, {args.episodes} episodes of {STEPS} steps, team return (sum over the 3 agents):")
    print(f"  PettingZoo 1.22.2 simple_spread_v2 (HARL): {v2.mean():8.2f}")
    print(f"  mpe2 simple_spread_v3 (harl_rllib):        {v3.mean():8.2f}")
    alone = f"self-collisions alone: 3 agents x {STEPS} steps x -0.5 = {-1.5 * STEPS}"
    print(f"  difference v2 - v3: {np.mean(v2 - v3):.2f} ({alone})")
    first, mean, last = per_step[0], per_step.mean(), per_step[-1]
    print(f"  per-step difference, first / mean / last step: {first:.2f} / {mean:.2f} / {last:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
