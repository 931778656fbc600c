"""Train a HARL algorithm on RLlib.

    python train.py --algo happo --env mpe --task simple_spread_v3

Starts a local Ray (or joins the cluster in RAY_ADDRESS, as under `ray submit`), prints
progress each iteration, writes progress.jsonl, result.json and a final checkpoint
under --storage-path.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="happo", help="happo | hatrpo | haa2c | mappo")
    p.add_argument("--env", default="mpe", help="mpe | smax | mamujoco | smac | smacv2 | toy")
    p.add_argument("--task", default="simple_spread_v3")
    p.add_argument("--stop-iters", type=int, default=None)
    p.add_argument("--stop-timesteps", type=int, default=None, help="env steps (default 400000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--continuous-actions", action="store_true")
    p.add_argument("--num-env-runners", type=int, default=None)
    p.add_argument("--envs-per-runner", type=int, default=None)
    p.add_argument("--num-learners", type=int, default=None, help="remote learner actors (0: learn on the driver)")
    p.add_argument("--num-gpus-per-learner", type=float, default=None)
    p.add_argument("--config", default=None, help="YAML file: overrides of any config field")
    p.add_argument("--storage-path", default="./results")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray")
    args = p.parse_args(argv)
    if args.stop_iters is None and args.stop_timesteps is None:
        args.stop_timesteps = 400_000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from harl_rllib.run import build_config, default_out_dir, load_overrides, train

    try:
        config = build_config(
            algo=args.algo,
            env=args.env,
            task=args.task,
            seed=args.seed,
            continuous_actions=args.continuous_actions,
            num_env_runners=args.num_env_runners,
            envs_per_runner=args.envs_per_runner,
            num_learners=args.num_learners,
            num_gpus_per_learner=args.num_gpus_per_learner,
            overrides=load_overrides(args.config),
        )
    except (ValueError, FileNotFoundError, ImportError) as e:  # ImportError: a missing env package or StarCraft II
        print(f"error: {e}", file=sys.stderr)
        return 2

    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        out_dir = default_out_dir(args.storage_path, args.algo, args.env, args.task)
        print(f"writing to {out_dir}", flush=True)
        last = train(config, stop_iters=args.stop_iters, stop_timesteps=args.stop_timesteps, out_dir=out_dir)
        print(f"done: {last}")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
