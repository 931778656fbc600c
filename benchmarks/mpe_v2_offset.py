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

The two PettingZoo versions cannot share one process (mpe2 imports the installed one), so each
env plays in a subprocess of this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

STEPS = 25  # simple_spread's episode length (max_cycles), HARL's and ours


def play(version: str, v2_path: str, episodes: int) -> list[list[float]]:
    """Per-step team rewards of `episodes` random-action episodes (action seed 0, reset seeds 0..n-1)."""
    if version == "v2":
        sys.path.insert(0, v2_path)
        from pettingzoo.mpe import simple_spread_v2 as module
    else:
        import mpe2.simple_spread_v3 as module
    rng = np.random.default_rng(0)
    episodes_rewards = []
    for episode in range(episodes):
        env = module.parallel_env(N=3, local_ratio=0.5, max_cycles=STEPS, continuous_actions=False)
        env.reset(seed=episode)
        rewards = []
        for _ in range(STEPS):
            _, reward, _, _, _ = env.step({a: int(rng.integers(5)) for a in env.agents})
            rewards.append(float(sum(reward.values())))
        episodes_rewards.append(rewards)
    return episodes_rewards


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--v2-path", required=True, help="directory holding PettingZoo 1.22.2's `pettingzoo` package")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--play", choices=["v2", "v3"], help=argparse.SUPPRESS)  # the subprocesses' role
    args = p.parse_args(argv)
    if args.play:
        print(json.dumps(play(args.play, args.v2_path, args.episodes)))
        return 0
    runs = {}
    for version in ("v2", "v3"):
        cmd = [sys.executable, __file__, "--v2-path", args.v2_path, "--episodes", str(args.episodes), "--play", version]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[version] = np.array(json.loads(out))
    v2, v3 = runs["v2"].sum(axis=1), runs["v3"].sum(axis=1)
    per_step = (runs["v2"] - runs["v3"]).mean(axis=0)
    print(f"random actions, {args.episodes} episodes of {STEPS} steps, team return (sum over the 3 agents):")
    print(f"  PettingZoo 1.22.2 simple_spread_v2 (HARL): {v2.mean():8.2f}")
    print(f"  mpe2 simple_spread_v3 (harl_rllib):        {v3.mean():8.2f}")
    alone = f"self-collisions alone: 3 agents x {STEPS} steps x -0.5 = {-1.5 * STEPS}"
    print(f"  difference v2 - v3: {np.mean(v2 - v3):.2f} ({alone})")
    first, mean, last = per_step[0], per_step.mean(), per_step[-1]
    print(f"  per-step difference, first / mean / last step: {first:.2f} / {mean:.2f} / {last:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
