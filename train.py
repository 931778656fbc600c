"""Train a HARL algorithm on RLlib.

    python train.py --algo happo --env mpe --task simple_spread_v3
    python train.py --tune tune_configs/happo_mpe_simple_spread.yaml [--wandb]

Joins a running Ray cluster (RAY_ADDRESS, or the one on this node, as under `ray submit`)
or starts a local Ray; prints progress each iteration; evaluates with deterministic actions
every --eval-interval iterations; writes progress.jsonl, result.json, curves.png and
checkpoints under --storage-path (evaluate a checkpoint with evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--algo",
        default="happo",
        help="happo | hatrpo | haa2c | mappo | haddpg | hatd3 | hasac | had3qn | maddpg | matd3",
    )
    p.add_argument("--env", default="mpe", help="mpe | smax | mamujoco | smac | smacv2 | toy")
    p.add_argument("--task", default="simple_spread_v3")
    p.add_argument("--stop-iters", type=int, default=None, help="iterations (a resumed run: its own by default)")
    p.add_argument(
        "--stop-timesteps", type=int, default=None, help="env steps (default 400000; a resumed run: its own)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--continuous-actions", action="store_true")
    p.add_argument("--num-env-runners", type=int, default=None)
    p.add_argument("--envs-per-runner", type=int, default=None)
    p.add_argument("--num-learners", type=int, default=None, help="remote learner actors (0: learn on the driver)")
    p.add_argument("--num-gpus-per-learner", type=float, default=None)
    p.add_argument(
        "--eval-interval",
        type=int,
        default=None,
        help="evaluate every N iterations with deterministic actions on separate env runners "
        "(default: about every 100k env steps, HARL's 25 iterations of 4000; 0: never)",
    )
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default 20, HARL's)")
    p.add_argument("--config", default=None, help="YAML file: overrides of any config field")
    p.add_argument("--storage-path", default="./results", help="a local or shared directory, or a URI (s3://, gs://)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="iterations per checkpoint (default 10; 0: at the end only; a resumed run: its own)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (its config; stop flags count the whole run)",
    )
    p.add_argument(
        "--tune",
        default=None,
        metavar="FILE",
        help="YAML sweep file (see tune_configs/): run a Ray Tune sweep; the file sets algo, env, task and stop",
    )
    p.add_argument(
        "--wandb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --tune: log trials to Weights & Biases (offline without a key); default: if the file has 'wandb:'",
    )
    return p.parse_args(argv)


# Bad input, reported before any Ray worker starts (ImportError: a missing env package or StarCraft II).
BAD_INPUT = (ValueError, FileNotFoundError, ImportError)


def input_error(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def start_ray(num_cpus: int | None):
    """Join a running cluster (RAY_ADDRESS, or this node's, as under `ray submit`), else start a local Ray."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return ray


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.tune:
        return tune_main(args)
    from harl_rllib.run import (
        build_config,
        default_out_dir,
        last_checkpoint,
        load_overrides,
        local_path_or_uri,
        run_settings,
        train,
    )

    try:
        # Every path resolved here, before Ray starts: relative ones from this directory.
        resume = Path(local_path_or_uri(args.resume)) if args.resume else None
        storage_path = local_path_or_uri(args.storage_path)
        if resume is not None:  # the run's own config comes from its checkpoint
            if "://" in args.resume:
                raise ValueError("--resume takes a local run directory (download a mirrored run first)")
            last_checkpoint(resume)
        settings = run_settings(
            stop_iters=args.stop_iters,
            stop_timesteps=args.stop_timesteps,
            checkpoint_every=args.checkpoint_every,
            resume_dir=resume,
        )
        if resume is not None:
            config = None
        else:
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
                eval_interval="auto" if args.eval_interval is None else args.eval_interval,
                eval_episodes=args.eval_episodes,
                overrides=load_overrides(args.config),
            )
    except BAD_INPUT as e:
        return input_error(e)

    ray = start_ray(args.num_cpus)
    try:
        if resume is not None:
            import harl_rllib  # noqa: F401  (registers the algorithms and envs the checkpoint names)

            out_dir, mirror = resume, settings["mirror"]
        else:
            out_dir, mirror = default_out_dir(storage_path, args.algo, args.env, args.task)
        stop = {k: v for k in ("stop_iters", "stop_timesteps") if (v := settings[k]) is not None}
        print(f"{'resuming' if resume else 'writing to'} {out_dir} (stop at {stop})", flush=True)
        if mirror:
            print(f"uploading to {mirror} after every checkpoint", flush=True)
        try:
            last = train(
                config,
                stop_iters=settings["stop_iters"],
                stop_timesteps=settings["stop_timesteps"],
                out_dir=out_dir,
                checkpoint_every=settings["checkpoint_every"],
                resume=resume is not None,
                mirror=mirror,
            )
        except KeyboardInterrupt:
            print(f"interrupted; continue from the last checkpoint with: python train.py --resume {out_dir}")
            return 130
        print(f"done: {json.dumps(last, default=float)}")
    finally:
        ray.shutdown()
    return 0


def tune_main(args: argparse.Namespace) -> int:
    """--tune FILE: a Ray Tune sweep (harl_rllib.tune_sweep); --config and the resource flags override the file."""
    from harl_rllib.run import load_overrides, local_path_or_uri
    from harl_rllib.tune_sweep import load_sweep, prepare_sweep, run_sweep

    flags = {
        "num_env_runners": args.num_env_runners,
        "num_envs_per_env_runner": args.envs_per_runner,
        "num_learners": args.num_learners,
        "num_gpus_per_learner": args.num_gpus_per_learner,
        "evaluation_interval": args.eval_interval,
        "evaluation_duration": args.eval_episodes,
    }
    try:
        overrides = {**load_overrides(args.config), **{k: v for k, v in flags.items() if v is not None}}
        storage_path = local_path_or_uri(args.storage_path)  # before Ray starts, from this directory
        spec = load_sweep(args.tune)
        prepare_sweep(spec, overrides=overrides, wandb=args.wandb)  # every check, before Ray starts
    except BAD_INPUT as e:
        return input_error(e)

    ray = start_ray(args.num_cpus)
    try:
        results = run_sweep(spec, storage_path=storage_path, wandb=args.wandb, overrides=overrides)
    finally:
        ray.shutdown()
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
