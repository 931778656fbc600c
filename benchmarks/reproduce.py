"""Reproduce docs/RESULTS.md: algorithm comparisons, ablations and the agent-count scaling study.

    python benchmarks/reproduce.py --algos happo,mappo,hatrpo --env mpe --tasks simple_spread_v3 \\
        --seeds 1,2,3 --env-steps 400000 --out results/repro
    python benchmarks/reproduce.py --ablation sequential-vs-simultaneous      # MPE speaker-listener
    python benchmarks/reproduce.py --ablation shared-vs-separate              # toy distinct_actions
    python benchmarks/reproduce.py --scaling --agents 2,3,4,6,8,10,12 --batch 1000

docs/RESULTS.md has the commands (and budgets) behind each published result.

Runs are trained one after another in one local Ray (or the cluster in RAY_ADDRESS); each
iteration records env steps, the team return (env_runners/team_episode_return_mean) and, where
the env reports it, the win rate (env_runners/battle_won). In --out:

  runs/<env>__<task>__<variant>__seed<k>.json   one curve per run; a run whose file exists is
                                                skipped, so a stopped matrix continues where it was
  partial/<env>__<task>__<variant>__seed<k>/    a running run's checkpoint and points, every
                                                --checkpoint-minutes; a stopped run continues from
                                                it (with the checkpoint's config); removed when the
                                                run's curve file is written
  marl_eval.json                                marl-eval's raw-data layout (harl_rllib.results)
  curves.png, table.md                          mean over seeds with 95% CI; final mean ± std
  curves_win_rate.png                           when win rates were reported

These summaries cover the matrix's finished runs; --no-train writes them without training the rest
(e.g. after adding a seed for some algorithms only).

Ablations (--ablation NAME, HAPPO variants; --env/--tasks choose another task):
  sequential-vs-simultaneous  happo-sequential vs happo-simultaneous (sequential_update True/False);
                              default MPE simple_speaker_listener_v4 (heterogeneous agents)
  random-vs-fixed-order       happo-random-order vs happo-fixed-order (fixed_order False/True);
                              default MPE simple_speaker_listener_v4
  shared-vs-separate          happo-separate vs happo-shared (share_param False/True); default toy
                              distinct_actions. share_param=True needs identical observation and
                              action spaces: use toy distinct_actions or MPE simple_spread_v3, not
                              speaker_listener (its config is rejected before anything runs)

--scaling: HAPPO on MPE simple_spread with N agents (env_config N), a warm-up iteration and then
--scaling-iters measured ones per N; per-iteration wall time split into sampling (the env runner's
sample() calls), each agent's actor update and the critic update (timed inside the learner),
and the rest. Writes scaling.csv and scaling.png and reports a linear fit of time vs N (R²).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

TEAM_RETURN = "team_episode_return_mean"
WIN_RATE = "battle_won"
ACTOR_TIME = "actor_step_s"
PARTIAL_POINTS = "points.json"
CRITIC_TIME = "critic_step_s"


@dataclass(frozen=True)
class Variant:
    """One line in the outputs: an algorithm with fixed config changes."""

    name: str
    algo: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ablation:
    env: str
    tasks: tuple[str, ...]
    variants: tuple[Variant, ...]


HETEROGENEOUS = ("mpe", ("simple_speaker_listener_v4",))
# An env's task when --tasks is not given (and the env is not the ablation's own).
DEFAULT_TASKS = {"mpe": "simple_spread_v3", "toy": "distinct_actions"}
ABLATIONS = {
    "sequential-vs-simultaneous": Ablation(
        *HETEROGENEOUS,
        (
            Variant("happo-sequential", "happo", {"sequential_update": True}),
            Variant("happo-simultaneous", "happo", {"sequential_update": False}),
        ),
    ),
    "random-vs-fixed-order": Ablation(
        *HETEROGENEOUS,
        (
            Variant("happo-random-order", "happo", {"fixed_order": False}),
            Variant("happo-fixed-order", "happo", {"fixed_order": True}),
        ),
    ),
    # Sharing needs equal spaces: speaker and listener differ, the toy task's agents do not.
    "shared-vs-separate": Ablation(
        "toy",
        ("distinct_actions",),
        (
            Variant("happo-separate", "happo", {"share_param": False}),
            Variant("happo-shared", "happo", {"share_param": True}),
        ),
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="happo,mappo,hatrpo", help="comma-separated (ignored with --ablation)")
    p.add_argument("--env", default=None, help="default: mpe (an ablation's own default with --ablation)")
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated; default: the ablation's, else mpe simple_spread_v3 / toy distinct_actions",
    )
    p.add_argument("--seeds", default="1,2,3", help="comma-separated integers")
    p.add_argument("--env-steps", type=int, default=400_000, help="env steps per run")
    p.add_argument("--stop-iters", type=int, default=None, help="also stop each run after this many iterations")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: write marl_eval.json, the figures and table.md from the runs already finished",
    )
    p.add_argument(
        "--eval-interval",
        type=int,
        default=None,
        help="evaluate every N iterations, as train.py (default: about every 100k env steps; 0: never)",
    )
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation (HARL's 20)")
    p.add_argument(
        "--final-eval-episodes",
        type=int,
        default=200,
        help="episodes of the final policy's evaluation (marl-eval's absolute metrics: 10x --eval-episodes)",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        help="checkpoint a running run this often into OUT/partial/; a stopped run continues from there",
    )
    p.add_argument("--config", default=None, help="YAML file: config overrides for every run (as train.py)")
    p.add_argument("--batch", type=int, default=None, help="train_batch_size_per_learner of every run (over --config)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray")
    p.add_argument("--out", default=None, help="output directory (default results/repro, results/<ablation>, ...)")
    p.add_argument("--ablation", choices=sorted(ABLATIONS), default=None, help="run a preset (see above)")
    p.add_argument("--scaling", action="store_true", help="the agent-count scaling study (see above)")
    p.add_argument("--agents", default="2,3,4,6,8,10,12", help="--scaling: numbers of agents")
    p.add_argument("--scaling-iters", type=int, default=3, help="--scaling: measured iterations per N")
    args = p.parse_args(argv)
    if args.ablation and args.scaling:
        p.error("--ablation and --scaling are separate studies; run them one at a time")
    if args.out is None:
        args.out = (
            "results/scaling" if args.scaling else f"results/{args.ablation}" if args.ablation else "results/repro"
        )
    return args


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def plan(args: argparse.Namespace) -> tuple[str, list[str], list[Variant]]:
    """(env, tasks, variants) of a matrix or an ablation."""
    if args.ablation:
        preset = ABLATIONS[args.ablation]
        env = args.env or preset.env
        default_tasks = list(preset.tasks) if env == preset.env else None
        variants = list(preset.variants)
    else:
        env = args.env or "mpe"
        default_tasks = None
        variants = [Variant(a.strip(), a.strip()) for a in args.algos.split(",") if a.strip()]
    if default_tasks is None and env in DEFAULT_TASKS:
        default_tasks = [DEFAULT_TASKS[env]]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else default_tasks
    if not tasks:
        raise ValueError(f"--tasks is needed for env {env!r}")
    if not variants:
        raise ValueError("--algos is empty")
    return env, tasks, variants


def run_overrides(file_overrides: dict[str, Any], variant: Variant, *, warn: bool = False) -> dict[str, Any]:
    """--config values, then the variant's own settings (they define the comparison)."""
    for key, value in variant.overrides.items():
        if warn and key in file_overrides and file_overrides[key] != value:
            print(f"note: {variant.name} sets {key}={value!r} (the --config file's {file_overrides[key]!r} is ignored)")
    return {**file_overrides, **variant.overrides}


def load_file_overrides(args: argparse.Namespace, env: str | None = None, tasks: Sequence[str] = ()) -> dict[str, Any]:
    """--config's fields, with --batch on top.

    --config is a mapping of config fields (as train.py's), or a sweep file of tune_configs/: then
    its ``config`` and ``resources`` sections, so the file a published run used is the file its
    Tune sweep starts from. The sweep's algo and search are not used (--algos and --seeds are);
    its env and task must be the ones run.
    """
    from harl_rllib.run import load_overrides
    from harl_rllib.tune_sweep import load_sweep

    overrides = load_overrides(args.config)
    if "algo" in overrides and isinstance(overrides.get("config", {}), dict):
        sweep = load_sweep(args.config)
        where = f"--config {args.config} (a sweep file)"
        if sweep.get("env") != env or (sweep.get("task") is not None and set(tasks) - {sweep.get("task")}):
            ran = f"{env}/{','.join(tasks)}"
            raise ValueError(f"{where} is for {sweep.get('env')}/{sweep.get('task')}; this run is {ran}")
        unused = sorted(set(sweep) & {"env_config", "continuous_actions"})
        if unused:
            raise ValueError(f"{where}: {unused} are not supported here; put the values in its config section")
        overrides = {**(sweep.get("config") or {}), **(sweep.get("resources") or {})}
    if args.batch is not None:
        overrides["train_batch_size_per_learner"] = args.batch
    return overrides


def curve_path(out: Path, env: str, task: str, variant: str, seed: int) -> Path:
    return out / "runs" / f"{env}__{task}__{variant}__seed{seed}.json"


def start_ray(num_cpus: int | None):
    """Join the cluster in RAY_ADDRESS, else start our own local Ray (never one found on the machine)."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def train_curve(
    config,
    *,
    env_steps: int,
    stop_iters: int | None,
    label: str,
    final_eval_episodes: int = 0,
    partial: Path | None = None,
    checkpoint_every_s: float = 600.0,
) -> tuple[list[tuple[int, dict[str, float]]], dict[str, float] | None]:
    """Train until the budget; one point per iteration that has a training team return or an
    evaluation (its return and win rate), with whichever it has. Then the final policy
    evaluated over `final_eval_episodes` deterministic episodes (evaluate.py's evaluation):
    marl-eval's absolute metrics, or None with 0.

    With `partial` (a directory), the run is checkpointed there every `checkpoint_every_s`
    seconds with its points so far, and a run stopped midway continues from that checkpoint
    (the algorithm's exact state, as train.py's --resume) instead of from the start."""
    from harl_rllib.evaluation import evaluate
    from harl_rllib.run import InterruptLatch, evaluates, last_checkpoint, save_checkpoint

    points: list[tuple[int, dict[str, float]]] = []
    iterations: list[int] = []  # the iteration of each point
    elapsed = 0.0
    try:
        checkpoint = last_checkpoint(partial) if partial is not None else None
    except FileNotFoundError:
        checkpoint = None
    if checkpoint is not None:
        from ray.rllib.algorithms.algorithm import Algorithm

        algo = Algorithm.from_checkpoint(str(checkpoint))
        state = json.loads((partial / PARTIAL_POINTS).read_text())
        # The points file is written before the checkpoint: drop points of iterations it lacks.
        kept = [(i, s, m) for i, s, m in state["points"] if i <= algo.iteration]
        iterations, points = [i for i, _, _ in kept], [(s, m) for _, s, m in kept]
        if state["iteration"] == algo.iteration:
            elapsed = state["elapsed_time"]
        else:  # the checkpoint is an older one (the newest failed midway): its last point's time
            elapsed = points[-1][1]["elapsed_time"] if points else 0.0
        print(f"{label}  resuming at iteration {algo.iteration} from {checkpoint}", flush=True)
    else:
        algo = config.build_algo()
    absolute = None
    try:
        start = time.perf_counter() - elapsed
        last_save = time.perf_counter()
        with InterruptLatch() as interrupt:
            while True:
                result = algo.train()
                interrupt.check()  # a Ctrl-C that Python discarded (see InterruptLatch)
                er = result.get("env_runners", {})
                steps = int(er.get("num_env_steps_sampled_lifetime") or 0)
                metrics = {"elapsed_time": time.perf_counter() - start}
                for name, key in (("return", TEAM_RETURN), ("win_rate", WIN_RATE)):
                    if (v := _number(er.get(key))) is not None:
                        metrics[name] = v
                if evaluates(algo.config, algo.iteration):
                    ev = result.get("evaluation", {}).get("env_runners", {})
                    for name, key in (("eval_return", TEAM_RETURN), ("eval_win_rate", WIN_RATE)):
                        if (v := _number(ev.get(key))) is not None:
                            metrics[name] = v
                # An iteration with a finished training episode or an evaluation is a point. (Off-
                # policy runs finish their 1000-step MaMuJoCo episodes every 20 iterations, rarely
                # on an evaluating one: keeping only iterations with a training return lost them.)
                if "return" in metrics or "eval_return" in metrics:
                    points.append((steps, metrics))
                    iterations.append(algo.iteration)
                ret, eval_ret = metrics.get("return"), metrics.get("eval_return")
                print(
                    f"{label}  iter {algo.iteration:4d}  env steps {steps:9d}  "
                    f"return {'-' if ret is None else f'{ret:.2f}'}"
                    + ("" if eval_ret is None else f"  eval return {eval_ret:.2f}")
                    + f"  time {metrics['elapsed_time']:7.1f}s",
                    flush=True,
                )
                if steps >= env_steps or (stop_iters is not None and algo.iteration >= stop_iters):
                    break
                if partial is not None and time.perf_counter() - last_save >= checkpoint_every_s:
                    write_json(
                        partial / PARTIAL_POINTS,
                        {
                            "iteration": algo.iteration,
                            "elapsed_time": metrics["elapsed_time"],
                            "points": [[i, s, m] for i, (s, m) in zip(iterations, points, strict=True)],
                        },
                    )
                    save_checkpoint(algo, partial / "checkpoint")
                    last_save = time.perf_counter()
        if final_eval_episodes:
            with tempfile.TemporaryDirectory() as tmp:
                algo.save_to_path(tmp)
                final = evaluate(tmp, episodes=final_eval_episodes)
            absolute = {"return": final["team_return_mean"]}
            if "win_rate" in final:
                absolute["win_rate"] = final["win_rate"]
            print(f"{label}  final evaluation over {final_eval_episodes} episodes: {absolute}", flush=True)
    finally:
        algo.stop()
    return points, absolute


def write_json(path: Path, data: Any) -> None:
    """Write beside, then move into place: a curve file exists only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    os.replace(tmp, path)


def plot_or_warn(plot, *args, **kwargs) -> None:
    """Figures need matplotlib (not a core dependency): without it, the data and tables are still written."""
    try:
        plot(*args, **kwargs)
    except ImportError as e:
        print(f"warning: {e}; skipped {args[1]}", file=sys.stderr)


def run_matrix(args: argparse.Namespace) -> int:
    from harl_rllib.results import RunRecord, final_table, plot_curves, write_marl_eval_json
    from harl_rllib.run import build_config

    out = Path(args.out)
    try:
        env, tasks, variants = plan(args)
        seeds = int_list(args.seeds)
        file_overrides = load_file_overrides(args, env, tasks)
        # Every config is checked before Ray starts (unknown names, share_param with unequal spaces, ...).
        # A summary (--no-train) builds none: it reads finished runs of any family, e.g. HATD3's
        # beside HAPPO's with HAPPO's sweep file, whose PPO fields an off-policy config rejects.
        if not args.no_train:
            for variant in variants:
                for task in tasks:
                    overrides = run_overrides(file_overrides, variant, warn=True)
                    build_config(algo=variant.algo, env=env, task=task, overrides=overrides)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    todo = [
        (v, t, s) for v in variants for t in tasks for s in seeds if not curve_path(out, env, t, v.name, s).exists()
    ]
    if args.no_train:
        missing, todo = todo, []
        left_out = ", ".join(f"{v.name} {t} seed {k}" for v, t, k in missing) or "none"
        print(f"--no-train: unfinished runs left out of the outputs: {left_out}")
    print(f"{len(variants) * len(tasks) * len(seeds)} runs, {len(todo)} to train, into {out}", flush=True)
    if todo:
        ray = start_ray(args.num_cpus)
        try:
            for variant, task, seed in todo:
                config = build_config(
                    algo=variant.algo,
                    env=env,
                    task=task,
                    seed=seed,
                    eval_interval="auto" if args.eval_interval is None else args.eval_interval,
                    eval_episodes=args.eval_episodes,
                    overrides=run_overrides(file_overrides, variant),
                )
                label = f"{variant.name} {env}/{task} seed {seed}"
                path = curve_path(out, env, task, variant.name, seed)
                partial = out / "partial" / path.stem
                points, absolute = train_curve(
                    config,
                    env_steps=args.env_steps,
                    stop_iters=args.stop_iters,
                    label=label,
                    final_eval_episodes=args.final_eval_episodes,
                    partial=partial,
                    checkpoint_every_s=60.0 * args.checkpoint_minutes,
                )
                record = RunRecord(env, task, variant.name, seed, points, absolute=absolute)
                overrides = run_overrides(file_overrides, variant)
                write_json(path, {**record.to_dict(), "algo": variant.algo, "overrides": overrides})
                shutil.rmtree(partial, ignore_errors=True)
        finally:
            ray.shutdown()

    paths = [curve_path(out, env, t, v.name, s) for v in variants for t in tasks for s in seeds]
    runs = [RunRecord.from_dict(json.loads(path.read_text())) for path in paths if path.exists()]
    if not runs:
        print(f"error: no finished runs in {out / 'runs'}", file=sys.stderr)
        return 2
    write_marl_eval_json(out / "marl_eval.json", runs)
    table = [f"# {args.ablation or 'comparison'}: {env} {', '.join(tasks)}, seeds {args.seeds}", ""]
    for metric, title, png in (
        ("return", "Team return (training episodes)", "curves.png"),
        ("win_rate", "Win rate (training episodes)", "curves_win_rate.png"),
        ("eval_return", "Team return (evaluation, deterministic)", "curves_eval.png"),
        ("eval_win_rate", "Win rate (evaluation, deterministic)", "curves_eval_win_rate.png"),
    ):
        if any(r.final(metric) is not None for r in runs):
            table += [f"## {title}", "", final_table(runs, metric)]
            plot_or_warn(plot_curves, runs, out / png, metric=metric)
    finals = [  # each run's final policy, evaluated after training (marl-eval's absolute metrics)
        RunRecord(
            r.env,
            r.task,
            r.algorithm,
            r.seed,
            [(r.points[-1][0], {f"final_eval_{k}": v for k, v in r.absolute.items()})],
        )
        for r in runs
        if r.absolute and r.points
    ]
    if len(finals) == len(runs):
        for name in ("return", "win_rate"):
            if any(r.final(f"final_eval_{name}") is not None for r in finals):
                title = f"Final policy's {name.replace('_', ' ')}, {args.final_eval_episodes} deterministic episodes"
                table += [f"## {title}", "", final_table(finals, f"final_eval_{name}")]
    (out / "table.md").write_text("\n".join(table))
    print("\n".join(table))
    print(f"wrote {out / 'marl_eval.json'}, {out / 'curves.png'}, {out / 'table.md'}")
    return 0


# ---- scaling ---------------------------------------------------------------------------

_TIMED_LEARNER = None


def timed_learner_class():
    """HAPPO's learner, timing each agent's actor step and the critic step.

    HATorchLearner calls `actor_step` once per agent (sequential update) and `critic_step`
    once per update; the times go into the learner's metrics (result["learners"][agent]).
    """
    global _TIMED_LEARNER
    if _TIMED_LEARNER is None:
        from harl_rllib.algorithms.happo.torch.happo_torch_learner import HAPPOTorchLearner
        from harl_rllib.core.critic import CRITIC_MODULE_ID

        class TimedHAPPOTorchLearner(HAPPOTorchLearner):
            def actor_step(self, module_id, data, advantages, factor) -> None:
                start = time.perf_counter()
                super().actor_step(module_id, data, advantages, factor)
                self.metrics.log_value((module_id, ACTOR_TIME), time.perf_counter() - start, window=1)

            def critic_step(self, data) -> None:
                start = time.perf_counter()
                super().critic_step(data)
                self.metrics.log_value((CRITIC_MODULE_ID, CRITIC_TIME), time.perf_counter() - start, window=1)

        _TIMED_LEARNER = TimedHAPPOTorchLearner
    return _TIMED_LEARNER


def scaling_config(n: int, seed: int, overrides: dict[str, Any]):
    from harl_rllib.run import build_config

    config = build_config(
        algo="happo", env="mpe", task="simple_spread_v3", seed=seed, num_env_runners=0, overrides=overrides
    )
    config.environment(env_config={**config.env_config, "N": n})
    config.learners(learner_class=timed_learner_class())
    config.validate()  # again: the team (and its modules) now has n agents
    return config


def measure(config, iters: int) -> dict[str, float]:
    """Mean per-iteration times over `iters` iterations after one warm-up iteration."""
    from harl_rllib.core.critic import CRITIC_MODULE_ID

    agents = list(config.get_team_spec().agents)
    algo = config.build_algo()
    try:
        runner = algo.env_runner_group.local_env_runner
        sample, spent = runner.sample, [0.0]

        def timed_sample(*a, **kw):
            start = time.perf_counter()
            try:
                return sample(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - start

        runner.sample = timed_sample
        algo.train()  # warm-up: first-call costs are not per-iteration costs
        steps0 = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))
        rows = []
        for _ in range(iters):
            spent[0] = 0.0
            start = time.perf_counter()
            result = algo.train()
            wall = time.perf_counter() - start
            learners = result["learners"]
            actor = [float(learners[a][ACTOR_TIME]) for a in agents]
            critic = float(learners[CRITIC_MODULE_ID][CRITIC_TIME])
            rows.append(
                {
                    "iter_s": wall,
                    "sampling_s": spent[0],
                    "actors_s": sum(actor),
                    "actor_mean_s": sum(actor) / len(actor),
                    "actor_min_s": min(actor),
                    "actor_max_s": max(actor),
                    "critic_s": critic,
                    "other_s": wall - spent[0] - sum(actor) - critic,
                }
            )
        steps = result["env_runners"]["num_env_steps_sampled_lifetime"] - steps0
    finally:
        algo.stop()
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    return {"n_agents": len(agents), "iters": iters, "env_steps_per_iter": steps / iters, **mean}


def run_scaling(args: argparse.Namespace) -> int:
    from harl_rllib.results import SCALING_COLUMNS, linear_fit, plot_scaling

    out = Path(args.out)
    seed = int_list(args.seeds)[0]
    try:
        if (args.env not in (None, "mpe")) or (args.tasks not in (None, "simple_spread_v3")):
            raise ValueError("--scaling runs MPE simple_spread_v3 (its N sets the number of agents)")
        agents = int_list(args.agents)
        if not agents or min(agents) < 1 or args.scaling_iters < 1:
            raise ValueError("--agents needs positive integers and --scaling-iters >= 1")
        overrides = load_file_overrides(args, "mpe", ["simple_spread_v3"])
        configs = {n: scaling_config(n, seed, overrides) for n in agents}  # all checked before Ray starts
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rows = []
    ray = start_ray(args.num_cpus)
    try:
        for n, config in configs.items():
            row = measure(config, args.scaling_iters)
            rows.append(row)
            print(
                f"N={n:3d}  iteration {row['iter_s']:7.2f}s  sampling {row['sampling_s']:6.2f}s  "
                f"actors {row['actors_s']:6.2f}s (one agent {row['actor_mean_s']:.3f}s)  "
                f"critic {row['critic_s']:6.2f}s  other {row['other_s']:6.2f}s",
                flush=True,
            )
    finally:
        ray.shutdown()

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scaling.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SCALING_COLUMNS))
        writer.writeheader()
        writer.writerows({k: row[k] for k in SCALING_COLUMNS} for row in rows)
    plot_or_warn(plot_scaling, rows, out / "scaling.png")
    print(f"wrote {out / 'scaling.csv'}, {out / 'scaling.png'}")
    if len(rows) >= 3:
        n = [r["n_agents"] for r in rows]
        for label, key in (("iteration", "iter_s"), ("sampling", "sampling_s"), ("actor updates", "actors_s")):
            a, b, r2 = linear_fit(n, [r[key] for r in rows])
            verdict = "roughly linear in N" if r2 >= 0.95 else "not linear in N"
            print(f"{label:14s}: {a:.3f} s per agent {b:+.3f} s, R² = {r2:.3f} ({verdict})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_scaling(args) if args.scaling else run_matrix(args)


if __name__ == "__main__":
    sys.exit(main())
