"""Evaluate a checkpoint of train.py: deterministic episodes on the run's own env and task.

    python evaluate.py results/happo_mpe_simple_spread_v3_20261201-101500 --episodes 100
    python evaluate.py RUN_DIR --render team.gif            # also an animation of one episode
    python evaluate.py RUN_DIR/checkpoint --json            # machine-readable

Prints the mean team return with its 95% confidence interval, and the win rate where the env
has one (SMAX, SMAC). Runs in this process, without Ray workers. A checkpoint holds pickles:
only evaluate checkpoints from a source you trust.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a run directory of train.py, or a checkpoint directory")
    p.add_argument("--episodes", type=int, default=100, help="episodes to run (default 100)")
    p.add_argument("--explore", action="store_true", help="sample actions instead of the deterministic ones")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="env seed: the same seed plays the same episodes (default: the run's, as its evaluations)",
    )
    p.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="envs stepped together (default: as the run's evaluations, at most --episodes; 1 when rendering)",
    )
    p.add_argument("--render", default=None, metavar="FILE", help="write the first episodes as FILE (.gif or .mp4)")
    p.add_argument("--render-episodes", type=int, default=1, help="episodes in the animation (default 1)")
    p.add_argument("--fps", type=int, default=10, help="animation frames per second")
    p.add_argument("--render-scale", type=float, default=1.0, help="resize the frames (e.g. 0.5) before writing")
    p.add_argument("--json", action="store_true", help="print one JSON object (with every episode's return)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from harl_rllib.evaluation import evaluate, format_summary

    try:
        result = evaluate(
            args.path,
            episodes=args.episodes,
            explore=args.explore,
            seed=args.seed,
            num_envs=args.num_envs,
            render=args.render,
            render_episodes=args.render_episodes,
            fps=args.fps,
            render_scale=args.render_scale,
        )
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
