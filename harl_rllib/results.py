"""Results people can look at: marl-eval JSON, learning curves with confidence bands, a final
table, aggregates across tasks with a performance profile, and the agent-count scaling figure.

A run is a `RunRecord`: (env, task, algorithm, seed) and its points, (env steps, metrics) per
logged iteration. `benchmarks/reproduce.py` writes them; everything here only reads them, so
the same functions work on curves from any source (e.g. a marl-eval file read back).

marl-eval layout (instadeepai/marl-eval README, "Data Structure for Raw Experiment data"),
which `marl_eval_json` follows::

    {env: {task: {algorithm: {"seed_<seed>": {
        "step_0": {"step_count": int, "return": [float], "win_rate": [float]},
        ...
        "step_<k>": {...},
        "absolute_metrics": {"return": [float], "win_rate": [float]},
    }}}}}

Runs are keyed `seed_<seed>`, as marl-eval's own `JsonLogger` does (its README allows any run
name) and steps `step_<i>` from 0, as `JsonLogger` numbers them. marl-eval's steps are
evaluations: when a run evaluated (points with `eval_return`, `eval_win_rate`: the mean over
one evaluation's deterministic episodes), its steps are those evaluations; a run without
evaluations gives its training points (the mean over the last training episodes RLlib reports),
and a report must say so. Each metric is a list of one element (marl-eval allows one element
or one per evaluation episode). `JsonLogger` also writes `elapsed_time` (seconds) into each
step; marl-eval's own `DiagnoseData.check_data` then reports the metric sets as unequal
(absolute_metrics has none), so it is opt-in here (`elapsed_time=True`).
`absolute_metrics` is marl-eval's slot for the final (or best) policy re-evaluated over 10x the
episodes: a record's `absolute` metrics (benchmarks/reproduce.py evaluates the final policy
over --final-eval-episodes), else the last step's values.

Statistics come from rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"); this module only arranges runs into its (runs × tasks) score matrices. Every
interval is its 95% stratified percentile bootstrap over runs (seeds), resampled within each
task: the band at each step of a learning curve, the final table's mean, and the IQM / mean /
median / optimality gap across tasks. The resampling is seeded (`BOOTSTRAP_SEED`, 2000
resamples by default), so a figure or table comes out the same every time. With one seed there
is no interval: NaN bounds, no band, and the table says "no CI". With few seeds a percentile
bootstrap describes the seeds rather than promising coverage: the mean's interval is the
seeds' range with 2 seeds, and almost always with 3 (1/27 of resamples repeat the lowest seed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

STEP_COUNT = "step_count"
ELAPSED_TIME = "elapsed_time"
ABSOLUTE_METRICS = "absolute_metrics"
EVAL_PREFIX = "eval_"  # a point's metrics from an evaluation (deterministic episodes), e.g. eval_return
# Metrics that describe when a point was logged, not how well the team did.
_BOOKKEEPING = (STEP_COUNT, ELAPSED_TIME)

Point = tuple[int, dict[str, float]]


@dataclass
class RunRecord:
    """One training run's curve: (env steps, {metric: value}) per logged iteration."""

    env: str
    task: str
    algorithm: str
    seed: int | str
    points: list[Point] = field(default_factory=list)
    # marl-eval's absolute metrics, when the run measured them; else the final point is used.
    absolute: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "task": self.task,
            "algorithm": self.algorithm,
            "seed": self.seed,
            "points": [[int(s), dict(m)] for s, m in self.points],
            "absolute": self.absolute,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        return cls(
            env=str(d["env"]),
            task=str(d["task"]),
            algorithm=str(d["algorithm"]),
            seed=d["seed"],
            points=[(int(s), {k: float(v) for k, v in m.items()}) for s, m in d["points"]],
            absolute=dict(d["absolute"]) if d.get("absolute") else None,
        )

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of the points that have `metric`."""
        pts = [(s, m[metric]) for s, m in self.points if metric in m and _finite(m[metric])]
        if not pts:
            return np.zeros(0), np.zeros(0)
        xs, ys = zip(*pts, strict=True)
        return np.asarray(xs, float), np.asarray(ys, float)

    def final(self, metric: str) -> float | None:
        """The last logged value of `metric` (None if the run never logged it)."""
        _, ys = self.curve(metric)
        return float(ys[-1]) if len(ys) else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def as_records(runs: Iterable[RunRecord | Mapping[str, Any]]) -> list[RunRecord]:
    """Accept records or their dicts (e.g. curve files loaded with json)."""
    return [r if isinstance(r, RunRecord) else RunRecord.from_dict(r) for r in runs]


def run_key(seed: int | str) -> str:
    """marl-eval's run name for a seed (its JsonLogger's `seed_<seed>`)."""
    s = str(seed)
    return s if s.startswith("seed_") else f"seed_{s}"


# ---- marl-eval JSON ------------------------------------------------------------------


def marl_eval_json(runs: Iterable[RunRecord | Mapping[str, Any]], *, elapsed_time: bool = False) -> dict[str, Any]:
    """The runs in marl-eval's raw-data layout (see module doc); `elapsed_time` adds
    JsonLogger's per-step wall time when the points have it.

    Missing or non-finite values are left out (JSON has no NaN); marl-eval wants every
    algorithm/run to have the same steps and metrics, which equal budgets give.
    """
    out: dict[str, Any] = {}
    for r in as_records(runs):
        if "," in r.algorithm:
            raise ValueError(f"marl-eval rejects algorithm names with commas: {r.algorithm!r}")
        algo = out.setdefault(r.env, {}).setdefault(r.task, {}).setdefault(r.algorithm, {})
        key = run_key(r.seed)
        if key in algo:
            raise ValueError(f"Two runs for {r.env}/{r.task}/{r.algorithm}/{key}")
        run: dict[str, Any] = {}
        points = marl_eval_points(r)
        for i, (steps, metrics) in enumerate(points):
            step: dict[str, Any] = {STEP_COUNT: int(steps)}
            if elapsed_time and _finite(metrics.get(ELAPSED_TIME)):
                step[ELAPSED_TIME] = float(metrics[ELAPSED_TIME])
            for name, value in metrics.items():
                if name not in _BOOKKEEPING and _finite(value):
                    step[name] = [float(value)]
            run[f"step_{i}"] = step
        absolute = r.absolute
        if absolute is None and points:
            absolute = {k: v for k, v in points[-1][1].items() if k not in _BOOKKEEPING}
        # Last, as older marl-eval versions take the run's last key as the absolute metrics.
        run[ABSOLUTE_METRICS] = {k: [float(v)] for k, v in (absolute or {}).items() if _finite(v)}
        algo[key] = run
    return out


def marl_eval_points(r: RunRecord) -> list[Point]:
    """The points marl-eval gets: the evaluations (their `eval_*` metrics, named without the
    prefix, as marl-eval's steps are evaluations) when the run evaluated; else the training
    points, without any `eval_*` metric."""
    evaluated = [(s, m) for s, m in r.points if _finite(m.get(EVAL_PREFIX + "return"))]
    if evaluated:
        return [
            (
                s,
                {
                    k.removeprefix(EVAL_PREFIX): v
                    for k, v in m.items()
                    if k.startswith(EVAL_PREFIX) or k in _BOOKKEEPING
                },
            )
            for s, m in evaluated
        ]
    return [(s, {k: v for k, v in m.items() if not k.startswith(EVAL_PREFIX)}) for s, m in r.points]


def write_marl_eval_json(
    path: str | os.PathLike, runs: Iterable[RunRecord | Mapping[str, Any]], *, elapsed_time: bool = False
) -> Path:
    """Write `marl_eval_json(runs)` (strict JSON, written beside and then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(marl_eval_json(runs, elapsed_time=elapsed_time), indent=2, allow_nan=False))
    os.replace(tmp, path)
    return path


def _step_index(key: str) -> int:
    m = re.search(r"(\d+)$", key)
    return int(m.group(1)) if m else -1


def read_marl_eval_json(path: str | os.PathLike) -> list[RunRecord]:
    """Read a marl-eval file back into records (ours or another tool's).

    Steps are ordered by their number (`step_10` after `step_9`); a metric list becomes its
    mean (what marl-eval itself aggregates per step); `seed_<n>` runs get seed n.
    """
    data = json.loads(Path(path).read_text())
    records = []
    for env, tasks in data.items():
        for task, algos in tasks.items():
            for algorithm, run_dict in algos.items():
                for run_name, steps in run_dict.items():
                    points: list[Point] = []
                    absolute = None
                    for key in sorted(steps, key=_step_index):
                        metrics = steps[key]
                        if "absolute" in key.lower():
                            absolute = {k: float(np.mean(v)) for k, v in metrics.items()}
                            continue
                        values = {k: float(np.mean(v)) for k, v in metrics.items() if k != STEP_COUNT}
                        points.append((int(metrics[STEP_COUNT]), values))
                    m = re.fullmatch(r"seed_(-?\d+)", run_name)
                    seed: int | str = int(m.group(1)) if m else run_name
                    records.append(RunRecord(env, task, algorithm, seed, points, absolute))
    return records


# ---- statistics ----------------------------------------------------------------------

# rliable's interval settings: 95% percentile intervals from 2000 stratified bootstrap resamples
# (its performance profiles' default; enough for the third digit of a band, and quick).
CONFIDENCE = 0.95
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


class Estimate(NamedTuple):
    """A point estimate and its confidence interval (NaN bounds: undefined, fewer than 2 runs)."""

    point: float
    lower: float
    upper: float


def _rliable() -> tuple[ModuleType, ModuleType]:
    """rliable's `library` and `metrics`, imported on first use (an optional dependency)."""
    try:
        from rliable import library, metrics
    except ImportError as e:
        raise ImportError("Confidence intervals need rliable: pip install 'harl_rllib[results]'") from e
    except TypeError as e:  # arch < 8 (rliable 1.2 pins it) calls a pandas helper that pandas 3 changed
        raise ImportError(f"rliable's arch does not import under pandas >= 3 ({e}): pip install 'pandas<3'") from e
    return library, metrics


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """rliable 1.2's StratifiedBootstrap draws its resamples with `np.random.choice`, NumPy's
    global generator, whatever `random_state` it is given: seed that one for the call (so an
    interval is the same every time) and put the caller's state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _intervals(
    scores: Mapping[str, np.ndarray], statistic: Callable[[np.ndarray], np.ndarray], *, reps: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{key: (point, lower, upper)} of `statistic` over a (runs × …) score array per key, from
    rliable's stratified bootstrap (runs resampled within each task / column).

    Fewer than 2 runs: NaN bounds, as one run says nothing about run-to-run spread (the
    bootstrap would return the point as a zero-width interval)."""
    library, _ = _rliable()
    out = {}
    for key, s in scores.items():
        s = np.asarray(s, float)
        if len(s) < 2:
            point = np.asarray(statistic(s), float)
            out[key] = (point, np.full_like(point, np.nan), np.full_like(point, np.nan))
            continue
        with _numpy_global_seed(seed):
            points, cis = library.get_interval_estimates(
                {key: s}, statistic, reps=reps, confidence_interval_size=CONFIDENCE
            )
        ci = np.asarray(cis[key], float)
        out[key] = (np.asarray(points[key], float), ci[0], ci[1])
    return out


def mean_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], *, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean over seeds, lower, upper): the 95% band at each step is rliable's
    stratified bootstrap over seeds, each step resampled on its own.

    Seeds log at slightly different env steps: each curve is interpolated onto the first
    seed's steps, up to where the shortest curve ends. One seed: NaN bounds (no band)."""
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    end = min(x[-1] for x, _ in curves)
    grid = curves[0][0][curves[0][0] <= end]
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])  # seeds × steps
    ((mean, lower, upper),) = _intervals({"curve": ys}, lambda s: s.mean(axis=0), reps=reps, seed=seed).values()
    return grid, mean, lower, upper


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = a·x + b and its R² (1 when y is constant and fitted exactly)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    a, b = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (a * x + b)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(a), float(b), 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def _groups(runs: list[RunRecord], metric: str) -> dict[str, dict[str, list[RunRecord]]]:
    """{"env/task": {algorithm: [runs]}} in order of first appearance, runs with `metric` only."""
    out: dict[str, dict[str, list[RunRecord]]] = {}
    for r in runs:
        if r.final(metric) is not None:
            out.setdefault(f"{r.env}/{r.task}", {}).setdefault(r.algorithm, []).append(r)
    return out


Normalization = Mapping[str, tuple[float, float]]


def score_matrices(
    runs: Iterable[RunRecord | Mapping[str, Any]], metric: str = "return", normalization: Normalization | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(tasks, {algorithm: runs × tasks final scores}): rliable's input layout.

    `normalization` maps a task ("env/task" or the task's name) to its (min, max) score, which
    become 0 and 1; it is needed with more than one task (raw scores on different scales are
    not comparable), optional with one. Every algorithm must have run every task with equally
    many seeds (the matrix has no holes); else a ValueError says which."""
    groups = _groups(as_records(runs), metric)
    if not groups:
        raise ValueError(f"No run logged {metric!r}: no scores")
    tasks = list(groups)
    if len(tasks) > 1 and normalization is None:
        raise ValueError(f"Scores on {len(tasks)} tasks need normalization={{task: (min, max)}} to be aggregated")
    scale = {}
    for task in tasks:
        lo_hi = None
        if normalization is not None:
            lo_hi = normalization.get(task, normalization.get(task.split("/", 1)[-1]))
            if lo_hi is None:
                raise ValueError(f"normalization has no (min, max) for task {task!r}")
            if not lo_hi[1] > lo_hi[0]:
                raise ValueError(f"normalization for {task!r} needs min < max; got {lo_hi}")
        scale[task] = lo_hi
    algorithms = list(dict.fromkeys(a for g in groups.values() for a in g))
    out = {}
    for algo in algorithms:
        columns = []
        for task in tasks:
            finals = np.asarray([r.final(metric) for r in groups[task].get(algo, [])], float)
            if scale[task] is not None:
                lo, hi = scale[task]
                finals = (finals - lo) / (hi - lo)
            columns.append(finals)
        counts = {task: len(c) for task, c in zip(tasks, columns, strict=True)}
        if len(set(counts.values())) != 1 or not min(counts.values()):
            raise ValueError(f"{algo}: runs per task differ or are missing ({counts}); aggregates need every cell")
        out[algo] = np.stack(columns, axis=1)
    return tasks, out


def aggregate_scores(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    metric: str = "return",
    *,
    normalization: Normalization | None = None,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, Estimate]]:
    """{algorithm: {"iqm", "mean", "median"[, "optimality_gap"]: Estimate}} over runs × tasks of
    final `metric` values, with rliable's 95% stratified-bootstrap intervals (runs resampled
    within each task): the aggregates of Agarwal et al. 2021 that stay sound with few seeds.

    The optimality gap (1 − mean of scores clipped at 1) needs scores normalized to [0, 1]:
    only reported with `normalization`. See `score_matrices` for the layout rules."""
    _, metrics = _rliable()
    _, scores = score_matrices(runs, metric, normalization)
    names = ["iqm", "mean", "median"]
    fns = [metrics.aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_median]
    if normalization is not None:
        names.append("optimality_gap")
        fns.append(metrics.aggregate_optimality_gap)
    estimates = _intervals(scores, lambda s: np.array([f(s) for f in fns]), reps=reps, seed=seed)
    return {
        algo: {n: Estimate(float(p), float(lo), float(hi)) for n, p, lo, hi in zip(names, *est, strict=True)}
        for algo, est in estimates.items()
    }


# ---- figures and tables --------------------------------------------------------------


def _new_figure(ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A figure drawn with the Agg canvas, without pyplot: no display, no global backend switch."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is not a core dependency
        raise ImportError("Plotting needs matplotlib: pip install matplotlib") from e
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, out_png: str | os.PathLike) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_curves(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    out_png: str | os.PathLike,
    metric: str = "return",
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> Path:
    """One panel per task, one line per algorithm: the mean over seeds with its 95% band
    (`mean_band`; no band with one seed)."""
    groups = _groups(as_records(runs), metric)
    if not groups:
        raise ValueError(f"No run logged {metric!r}: nothing to plot")
    algorithms = list(dict.fromkeys(a for g in groups.values() for a in g))
    colors = {a: f"C{i % 10}" for i, a in enumerate(algorithms)}
    fig, axes = _new_figure(len(groups))
    for ax, (task, by_algo) in zip(axes[0], groups.items(), strict=True):
        for algo, rs in by_algo.items():
            x, mean, lower, upper = mean_band([r.curve(metric) for r in rs], reps=reps, seed=seed)
            ax.plot(x, mean, color=colors[algo], label=f"{algo} (n={len(rs)})")
            if len(rs) > 1:
                ax.fill_between(x, lower, upper, color=colors[algo], alpha=0.2, linewidth=0)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{metric}: mean over seeds, 95% CI (stratified bootstrap, rliable)", fontsize="medium")
    return _save(fig, out_png)


def final_table(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    metric: str = "return",
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> str:
    """Markdown: algorithm × task → final value over seeds: mean [95% CI], IQM (n seeds).
    One seed has no interval: the cell says so."""
    _, metrics = _rliable()
    groups = _groups(as_records(runs), metric)
    if not groups:
        raise ValueError(f"No run logged {metric!r}: no table")
    algorithms = list(dict.fromkeys(a for g in groups.values() for a in g))
    headers = []
    for task, by_algo in groups.items():
        steps = [r.curve(metric)[0][-1] for rs in by_algo.values() for r in rs]
        headers.append(f"{task} (≈{int(np.median(steps)):,} env steps)")
    lines = [
        f"| algorithm | {' | '.join(headers)} |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for algo in algorithms:
        cells = []
        for by_algo in groups.values():
            finals = np.asarray([r.final(metric) for r in by_algo.get(algo, [])], float)
            if not len(finals):
                cells.append("–")
                continue
            # One task: a runs × 1 matrix, so rliable's bootstrap resamples the seeds.
            scores = finals[:, None]
            ((mean, lower, upper),) = _intervals(
                {algo: scores}, lambda s: np.atleast_1d(metrics.aggregate_mean(s)), reps=reps, seed=seed
            ).values()
            ci = "[no CI]" if np.isnan(lower[0]) else f"[{lower[0]:.2f}, {upper[0]:.2f}]"
            iqm = float(metrics.aggregate_iqm(scores))
            cells.append(f"{mean[0]:.2f} {ci}, IQM {iqm:.2f} (n={len(finals)})")
        lines.append(f"| {algo} | {' | '.join(cells)} |")
    lines.append("")
    what = "iteration (RLlib's running mean over the last training episodes)"
    if EVAL_PREFIX in metric:  # eval_*: an evaluation during training; final_eval_*: of the final policy
        what = "evaluation (the mean over its deterministic episodes)"
    lines.append(
        f"Final `{metric}` = the last logged {what} of each run; mean over seeds "
        f"[{CONFIDENCE:.0%} CI: rliable's stratified percentile bootstrap, "
        f"{reps} resamples, seed {seed}; none with one seed]; IQM = interquartile mean over seeds (the mean "
        "below 4 seeds)."
    )
    return "\n".join(lines) + "\n"


def plot_performance_profile(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    out_png: str | os.PathLike,
    metric: str = "return",
    *,
    normalization: Normalization | None = None,
    taus: Sequence[float] | np.ndarray | None = None,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> Path:
    """rliable's performance profile of the final scores: the fraction of runs (all tasks) that
    score above τ, per algorithm, with 95% stratified-bootstrap bands (none with one seed).

    It shows the whole distribution, so one lucky seed cannot pass for an improvement. Scores as
    in `score_matrices`; τ defaults to 101 points over the scores' range."""
    library, _ = _rliable()
    tasks, scores = score_matrices(runs, metric, normalization)
    if taus is None:
        everything = np.concatenate([s.ravel() for s in scores.values()])
        taus = np.linspace(everything.min(), everything.max(), 101)
    taus = np.asarray(taus, float)
    with _numpy_global_seed(seed):
        profiles, cis = library.create_performance_profile(scores, taus, reps=reps, confidence_interval_size=CONFIDENCE)
    one_seed = min(len(s) for s in scores.values()) < 2
    from rliable import plot_utils

    fig, axes = _new_figure(1, width=6.0, height=4.0)
    ax = axes[0][0]
    names = {a: f"{a} (n={len(s)})" for a, s in scores.items()}  # rliable labels lines by their key
    label = "normalized score" if normalization is not None else metric
    plot_utils.plot_performance_profiles(
        {names[a]: p for a, p in profiles.items()},
        taus,
        performance_profile_cis=None if one_seed else {names[a]: c for a, c in cis.items()},
        ax=ax,
        colors={names[a]: f"C{i % 10}" for i, a in enumerate(scores)},
        xlabel=f"{label} (τ)",
        ylabel="fraction of runs with score > τ",
        labelsize="medium",
        ticklabelsize="small",
    )
    ax.legend(fontsize="small")
    band = "no CI: one seed" if one_seed else f"{CONFIDENCE:.0%} CI, stratified bootstrap"
    ax.set_title(f"performance profile, {len(tasks)} task(s) ({band})", fontsize="medium")
    return _save(fig, out_png)


# ---- the scaling study ----------------------------------------------------------------

SCALING_COLUMNS = (
    "n_agents",
    "iters",
    "env_steps_per_iter",
    "iter_s",
    "sampling_s",
    "actors_s",
    "actor_mean_s",
    "actor_min_s",
    "actor_max_s",
    "critic_s",
    "other_s",
)


def plot_scaling(rows: Iterable[Mapping[str, Any]], out_png: str | os.PathLike) -> Path:
    """Per-iteration time vs number of agents: stacked sampling / all actor updates / critic /
    other (left, with a fitted line through the totals), and one agent's actor update (right:
    mean with the min–max over agents), which the sequential update should keep flat."""
    rows = sorted(
        ({k: float(v) for k, v in r.items() if k in SCALING_COLUMNS} for r in rows), key=lambda r: r["n_agents"]
    )
    if not rows:
        raise ValueError("No scaling rows to plot")
    n = np.asarray([r["n_agents"] for r in rows])
    parts = [
        ("sampling", "sampling_s", "C0"),
        ("actor updates (all agents)", "actors_s", "C1"),
        ("critic update", "critic_s", "C2"),
        ("other (team batch, factor, sync)", "other_s", "C7"),
    ]
    fig, axes = _new_figure(2)
    left, right = axes[0]
    bottom = np.zeros(len(rows))
    width = 0.6 * float(np.min(np.diff(n))) if len(n) > 1 else 0.6
    for label, key, color in parts:
        h = np.asarray([max(r.get(key, 0.0), 0.0) for r in rows])
        left.bar(n, h, width=width, bottom=bottom, label=label, color=color)
        bottom += h
    total = np.asarray([r["iter_s"] for r in rows])
    left.plot(n, total, "k.", label="iteration (measured)")
    if len(rows) > 1:
        a, b, r2 = linear_fit(n, total)
        xs = np.linspace(n.min(), n.max(), 50)
        left.plot(xs, a * xs + b, "k--", linewidth=1, label=f"linear fit, R²={r2:.3f}")
    left.set_xlabel("agents (MPE simple_spread N)")
    left.set_ylabel("seconds per iteration")
    left.set_title("time per iteration")
    left.legend(fontsize="small", loc="upper left")
    left.grid(alpha=0.3)
    mean = np.asarray([r.get("actor_mean_s", 0.0) for r in rows])
    lo = np.asarray([r.get("actor_min_s", m) for r, m in zip(rows, mean, strict=True)])
    hi = np.asarray([r.get("actor_max_s", m) for r, m in zip(rows, mean, strict=True)])
    right.errorbar(n, mean, yerr=[mean - lo, hi - mean], fmt="o-", color="C1", capsize=3)
    right.set_xlabel("agents (MPE simple_spread N)")
    right.set_ylabel("seconds")
    right.set_title("one agent's actor update\n(mean; bars: min–max over agents)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    return _save(fig, out_png)


__all__ = [
    "BOOTSTRAP_REPS",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "Estimate",
    "RunRecord",
    "SCALING_COLUMNS",
    "aggregate_scores",
    "as_records",
    "final_table",
    "linear_fit",
    "marl_eval_json",
    "mean_band",
    "plot_curves",
    "plot_performance_profile",
    "plot_scaling",
    "read_marl_eval_json",
    "run_key",
    "score_matrices",
    "write_marl_eval_json",
]
