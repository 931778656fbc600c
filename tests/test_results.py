"""harl_rllib.results and benchmarks/reproduce.py: the marl-eval JSON layout (written, read back,
keys checked), rliable's intervals (checked against a plain bootstrap and exact cases), curve,
profile and scaling plots, the final table, aggregates across tasks, and one tiny reproduce.py run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harl_rllib.results import (
    RunRecord,
    aggregate_scores,
    final_table,
    linear_fit,
    marl_eval_json,
    mean_band,
    plot_curves,
    plot_performance_profile,
    plot_scaling,
    read_marl_eval_json,
    score_matrices,
    write_marl_eval_json,
)

ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = ROOT / "benchmarks" / "reproduce.py"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def records() -> list[RunRecord]:
    """2 algorithms × 2 seeds on one task, 2 points each."""
    out = []
    for algo, base in (("happo", -80.0), ("mappo", -90.0)):
        for seed in (1, 2):
            out.append(
                RunRecord(
                    "mpe",
                    "simple_spread_v3",
                    algo,
                    seed,
                    [
                        (4000, {"return": base + seed, "win_rate": 0.25, "elapsed_time": 5.0}),
                        (8000, {"return": base + 10 + seed, "win_rate": 0.5, "elapsed_time": 10.5}),
                    ],
                )
            )
    return out


def strict_json(path: Path) -> dict:
    """Load as strict JSON (NaN / Infinity are not JSON)."""

    def reject(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=reject)


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_HEADER


# ---- marl-eval JSON --------------------------------------------------------------------


def test_marl_eval_layout(tmp_path):
    """{env: {task: {algorithm: {run: {step_i: {step_count, metric: [..]}, absolute_metrics}}}}}."""
    data = marl_eval_json(records())
    assert list(data) == ["mpe"]
    assert list(data["mpe"]) == ["simple_spread_v3"]
    assert list(data["mpe"]["simple_spread_v3"]) == ["happo", "mappo"]
    for algo in ("happo", "mappo"):
        runs = data["mpe"]["simple_spread_v3"][algo]
        assert list(runs) == ["seed_1", "seed_2"]  # marl-eval's JsonLogger names runs seed_<seed>
        for run in runs.values():
            # absolute_metrics last: older marl-eval versions take the last key as the absolute metrics
            assert list(run) == ["step_0", "step_1", "absolute_metrics"]
    run = data["mpe"]["simple_spread_v3"]["happo"]["seed_1"]
    assert run["step_0"] == {"step_count": 4000, "return": [-79.0], "win_rate": [0.25]}
    assert type(run["step_0"]["step_count"]) is int
    assert run["step_1"] == {"step_count": 8000, "return": [-69.0], "win_rate": [0.5]}
    # No separate evaluation: the final logged values.
    assert run["absolute_metrics"] == {"return": [-69.0], "win_rate": [0.5]}

    # A run that evaluated: marl-eval's steps are its evaluations (named without eval_), the
    # training points are left out; its absolute metrics are the final evaluation's.
    evaluated = RunRecord(
        "smax",
        "3m",
        "happo",
        1,
        [
            (4000, {"return": 1.0, "win_rate": 0.1}),
            (8000, {"return": 2.0, "win_rate": 0.2, "eval_return": 3.0, "eval_win_rate": 0.3}),
            (12000, {"return": 4.0, "win_rate": 0.4}),
            (16000, {"return": 5.0, "win_rate": 0.5, "eval_return": 6.0, "eval_win_rate": 0.6}),
        ],
        absolute={"return": 7.0, "win_rate": 0.7},
    )
    ev = marl_eval_json([evaluated])["smax"]["3m"]["happo"]["seed_1"]
    assert ev == {
        "step_0": {"step_count": 8000, "return": [3.0], "win_rate": [0.3]},
        "step_1": {"step_count": 16000, "return": [6.0], "win_rate": [0.6]},
        "absolute_metrics": {"return": [7.0], "win_rate": [0.7]},
    }

    # JsonLogger's elapsed_time: a plain number per step, never an absolute metric.
    timed = marl_eval_json(records(), elapsed_time=True)["mpe"]["simple_spread_v3"]["happo"]["seed_1"]
    assert timed["step_1"] == {"step_count": 8000, "elapsed_time": 10.5, "return": [-69.0], "win_rate": [0.5]}
    assert timed["absolute_metrics"] == run["absolute_metrics"]

    # Written as strict JSON and read back into the same records.
    path = write_marl_eval_json(tmp_path / "sub" / "marl_eval.json", records())
    assert strict_json(path) == data
    back = read_marl_eval_json(path)
    assert [(r.env, r.task, r.algorithm, r.seed) for r in back] == [
        (r.env, r.task, r.algorithm, r.seed) for r in records()
    ]
    for got, want in zip(back, records(), strict=True):
        assert got.points == [(s, {k: v for k, v in m.items() if k != "elapsed_time"}) for s, m in want.points]
        assert got.absolute == {"return": want.points[-1][1]["return"], "win_rate": 0.5}


def test_marl_eval_edge_cases(tmp_path):
    """NaN values are left out, bad names and duplicate runs are errors, and a marl-eval
    README-style file (other run names, lists per episode, step_10 after step_9) reads back."""
    r = RunRecord("toy", "distinct_actions", "happo", 3, [(100, {"return": math.nan}), (200, {"return": 2.0})])
    run = marl_eval_json([r])["toy"]["distinct_actions"]["happo"]["seed_3"]
    assert run["step_0"] == {"step_count": 100}
    assert run["step_1"] == {"step_count": 200, "return": [2.0]}
    with pytest.raises(ValueError, match="commas"):
        marl_eval_json([RunRecord("toy", "t", "happo,v2", 1, [(1, {"return": 0.0})])])
    with pytest.raises(ValueError, match="Two runs"):
        marl_eval_json([r, r])

    steps = {f"step_{i}": {"step_count": 10 * (i + 1), "return": [float(i), float(i) + 2]} for i in range(11)}
    raw = {"env_1": {"task_1": {"algo_1": {"run_1": {**steps, "absolute_metrics": {"return": [1, 2, 3]}}}}}}
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    (rec,) = read_marl_eval_json(path)
    assert (rec.env, rec.task, rec.algorithm, rec.seed) == ("env_1", "task_1", "algo_1", "run_1")
    assert [s for s, _ in rec.points] == [10 * (i + 1) for i in range(11)]
    assert rec.points[10][1] == {"return": 11.0}  # the mean of the episodes' values
    assert rec.absolute == {"return": 2.0}


# ---- statistics, plots, table ----------------------------------------------------------


def plain_bootstrap(ys: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile interval of the mean over rows, each column resampled on its own,
    with NumPy's own generator: an independent computation of what rliable's bootstrap estimates."""
    rng = np.random.default_rng(seed)
    n, steps = ys.shape
    idx = rng.integers(0, n, size=(reps, n, steps))
    means = ys[idx, np.arange(steps)].mean(axis=1)
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def test_mean_band_and_linear_fit():
    pytest.importorskip("rliable")
    x = np.array([0.0, 10.0, 20.0])
    curves = [(x, np.array([1.0, 2.0, 3.0])), (x, np.array([3.0, 4.0, 5.0])), (x + 1, np.array([2.0, 3.0, 4.0]))]
    state = np.random.get_state()
    grid, mean, lower, upper = mean_band(curves)
    # Cut where the shortest curve ends (x = 20), interpolated onto the first seed's steps.
    np.testing.assert_allclose(grid, [0.0, 10.0, 20.0])
    np.testing.assert_allclose(mean, [2.0, (2 + 4 + 2.9) / 3, (3 + 5 + 3.9) / 3])
    assert np.all(lower < mean) and np.all(mean < upper)
    ys = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])
    assert np.all(lower >= ys.min(axis=0)) and np.all(upper <= ys.max(axis=0))  # a mean of resampled seeds
    # Two seeds: a resample repeats one seed with probability 1/4 > 2.5%, so the band is their range.
    _, _, lo2, hi2 = mean_band(curves[:2])
    np.testing.assert_array_equal(lo2, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(hi2, [3.0, 4.0, 5.0])
    # Identical seeds: no spread, a zero-width band at the mean.
    _, same, lo_same, hi_same = mean_band([curves[0], curves[0]])
    np.testing.assert_array_equal(lo_same, same)
    np.testing.assert_array_equal(hi_same, same)
    # One seed: the interval is undefined (NaN), not zero-width.
    _, single, lo1, hi1 = mean_band(curves[:1])
    np.testing.assert_array_equal(single, [1.0, 2.0, 3.0])
    assert np.isnan(lo1).all() and np.isnan(hi1).all()
    # The bootstrap is seeded by its argument, and the caller's global NumPy state is left alone.
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]

    a, b, r2 = linear_fit([2, 4, 6], [1.0, 2.0, 3.0])
    assert (a, b, r2) == pytest.approx((0.5, 0.0, 1.0))
    assert linear_fit([1, 2, 3], [1.0, 3.0, 1.0])[2] == pytest.approx(0.0)


def test_mean_band_against_a_plain_bootstrap():
    """8 and 32 noisy seeds: the band matches a plain NumPy percentile bootstrap (to Monte Carlo
    error), is reproducible, depends on the seed, and narrows about as 1/sqrt(seeds)."""
    pytest.importorskip("rliable")
    rng = np.random.default_rng(7)
    x = np.arange(0.0, 50.0, 10.0)
    ys = x / 10 + rng.normal(0.0, 1.0, size=(32, len(x)))
    curves = [(x, y) for y in ys]
    _, mean, lower, upper = mean_band(curves[:8])
    ref_lo, ref_hi = plain_bootstrap(ys[:8], reps=20000, seed=123)
    sem = ys[:8].std(axis=0, ddof=1) / math.sqrt(8)
    np.testing.assert_allclose(lower, ref_lo, atol=0.25 * sem.max())
    np.testing.assert_allclose(upper, ref_hi, atol=0.25 * sem.max())
    assert np.all(upper - lower > 2 * sem)  # not a collapsed band: about 2 × 1.96 · sem wide
    again = mean_band(curves[:8])
    np.testing.assert_array_equal(again[2], lower)
    np.testing.assert_array_equal(again[3], upper)
    assert not np.array_equal(mean_band(curves[:8], seed=1)[2], lower)
    _, _, lo32, hi32 = mean_band(curves)
    ratio = (hi32 - lo32).mean() / (upper - lower).mean()
    assert 0.3 < ratio < 0.75, ratio  # sqrt(8 / 32) = 0.5


def test_plot_curves_and_table(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("rliable")
    runs = records()
    # A second task, where only happo ran (3 seeds, slightly different step counts).
    runs += [
        RunRecord("toy", "distinct_actions", "happo", s, [(0 + s, {"return": 2.0}), (4000 + s, {"return": 4.0 + s})])
        for s in (1, 2, 3)
    ]
    out = plot_curves(runs, tmp_path / "figs" / "curves.png")
    assert_png(out)
    assert_png(plot_curves([r.to_dict() for r in runs], tmp_path / "win.png", metric="win_rate"))
    with pytest.raises(ValueError, match="No run logged"):
        plot_curves(runs, tmp_path / "none.png", metric="nope")

    table = final_table(runs)
    lines = table.splitlines()
    assert lines[0] == (
        "| algorithm | mpe/simple_spread_v3 (≈8,000 env steps) | toy/distinct_actions (≈4,002 env steps) |"
    )
    assert lines[1] == "|---|---|---|"
    # happo on spread: finals −69, −68: 2 seeds, so the interval is their range (see test_mean_band...);
    # on toy: 5, 6, 7: 1/27 of resamples are all 5s (or all 7s), more than 2.5%: the range again.
    # Below 4 seeds the IQM trims nothing: the mean.
    assert lines[2] == "| happo | -68.50 [-69.00, -68.00], IQM -68.50 (n=2) | 6.00 [5.00, 7.00], IQM 6.00 (n=3) |"
    assert lines[3] == "| mappo | -78.50 [-79.00, -78.00], IQM -78.50 (n=2) | – |"
    assert final_table(runs) == table  # seeded
    # One seed: no interval, and the cell says so.
    one = final_table([r for r in runs if r.seed == 1]).splitlines()
    assert one[2] == "| happo | -69.00 [no CI], IQM -69.00 (n=1) | 5.00 [no CI], IQM 5.00 (n=1) |"
    # Four seeds: the IQM drops the lowest and highest.
    four = [RunRecord("toy", "t", "happo", s, [(10, {"return": v})]) for s, v in enumerate((0.0, 1.0, 2.0, 9.0))]
    assert "3.00 [" in final_table(four) and "IQM 1.50 (n=4)" in final_table(four)


def score_runs(seeds: int = 4) -> list[RunRecord]:
    """Finals on two tasks with different scales: happo better than mappo on both."""
    rng = np.random.default_rng(3)
    out = []
    for algo, level in (("happo", 0.8), ("mappo", 0.5)):
        for seed in range(seeds):
            for env, task, lo, hi in (("mpe", "spread", -100.0, -50.0), ("toy", "distinct_actions", 0.0, 5.0)):
                value = lo + (hi - lo) * (level + 0.1 * rng.standard_normal())
                out.append(RunRecord(env, task, algo, seed, [(1000, {"return": float(value)})]))
    return out


NORM = {"mpe/spread": (-100.0, -50.0), "distinct_actions": (0.0, 5.0)}  # by env/task or by task


def test_aggregate_scores():
    pytest.importorskip("rliable")
    runs = score_runs()
    tasks, scores = score_matrices(runs, normalization=NORM)
    assert tasks == ["mpe/spread", "toy/distinct_actions"] and list(scores) == ["happo", "mappo"]
    assert scores["happo"].shape == (4, 2)
    raw = np.array([[r.final("return") for r in runs if r.algorithm == "happo" and r.task == t] for t in ("spread",)])
    np.testing.assert_allclose(scores["happo"][:, 0], (raw[0] + 100.0) / 50.0)

    agg = aggregate_scores(runs, normalization=NORM, reps=500)
    assert set(agg) == {"happo", "mappo"}
    for algo, m in scores.items():
        est = agg[algo]
        assert set(est) == {"iqm", "mean", "median", "optimality_gap"}
        flat = np.sort(m.ravel())
        assert est["iqm"].point == pytest.approx(flat[2:6].mean())  # 8 scores: drop 2 at each end
        assert est["mean"].point == pytest.approx(m.mean())
        assert est["median"].point == pytest.approx(np.median(m.mean(axis=0)))
        assert est["optimality_gap"].point == pytest.approx(np.mean(1.0 - np.minimum(m, 1.0)))
        for e in est.values():
            assert e.lower <= e.point <= e.upper and e.upper > e.lower
    assert agg["happo"]["iqm"].lower > agg["mappo"]["iqm"].upper  # 0.8 vs 0.5 with 0.1 noise: clear
    assert aggregate_scores(runs, normalization=NORM, reps=500) == agg  # seeded

    # One task: raw scores (no optimality gap: there is no 1 to fall short of).
    one_task = [r for r in runs if r.task == "spread"]
    raw_agg = aggregate_scores(one_task, reps=100)
    assert set(raw_agg["happo"]) == {"iqm", "mean", "median"}
    happo_raw = [r.final("return") for r in one_task if r.algorithm == "happo"]
    assert len(happo_raw) == 4 and raw_agg["happo"]["mean"].point == pytest.approx(np.mean(happo_raw))
    # One seed: no interval.
    single = aggregate_scores([r for r in runs if r.seed == 0], normalization=NORM, reps=100)
    assert all(math.isnan(e.lower) and math.isnan(e.upper) for e in single["happo"].values())

    with pytest.raises(ValueError, match="need normalization"):
        aggregate_scores(runs)
    with pytest.raises(ValueError, match="no \\(min, max\\) for task 'toy/distinct_actions'"):
        aggregate_scores(runs, normalization={"mpe/spread": (-100.0, -50.0)})
    with pytest.raises(ValueError, match="runs per task differ"):
        aggregate_scores([r for r in runs if not (r.task == "spread" and r.seed == 0)], normalization=NORM)
    with pytest.raises(ValueError, match="runs per task differ"):  # mappo never ran the toy task
        aggregate_scores([r for r in runs if not (r.algorithm == "mappo" and r.env == "toy")], normalization=NORM)


def test_plot_performance_profile(tmp_path):
    pytest.importorskip("rliable")
    from matplotlib.image import imread

    out = plot_performance_profile(score_runs(), tmp_path / "figs" / "profile.png", normalization=NORM, reps=500)
    assert_png(out)
    image = imread(out)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    one_seed = [r for r in score_runs() if r.seed == 0 and r.task == "spread"]
    assert_png(plot_performance_profile(one_seed, tmp_path / "one.png", taus=np.linspace(-100, -50, 11), reps=100))
    with pytest.raises(ValueError, match="need normalization"):
        plot_performance_profile(score_runs(), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_scaling(tmp_path):
    pytest.importorskip("matplotlib")
    rows = []
    for n in (2, 3, 4, 6):
        actor = 0.01 * n
        rows.append(
            {
                "n_agents": n,
                "iters": 2,
                "env_steps_per_iter": 1000,
                "iter_s": 1.0 + 0.5 * n,
                "sampling_s": 0.8 + 0.4 * n,
                "actors_s": actor * n,
                "actor_mean_s": actor,
                "actor_min_s": actor * 0.9,
                "actor_max_s": actor * 1.1,
                "critic_s": 0.05,
                "other_s": 0.1,
            }
        )
    assert_png(plot_scaling(rows, tmp_path / "scaling.png"))
    # CSV rows come back as strings.
    assert_png(plot_scaling([{k: str(v) for k, v in r.items()} for r in rows], tmp_path / "scaling_csv.png"))


# ---- benchmarks/reproduce.py --------------------------------------------------------------


def load_reproduce():
    """benchmarks/ is not a package: load the script as a module (registered, as dataclasses need)."""
    name = "harl_benchmarks_reproduce"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPRODUCE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_reproduce_rejects_bad_input_before_ray(capsys):
    """share_param needs equal spaces: the shared-vs-separate ablation on speaker-listener is refused
    (exit 2) before any Ray starts; so is an unknown algorithm."""
    import ray

    was_running = ray.is_initialized()
    reproduce = load_reproduce()
    args = ["--ablation", "shared-vs-separate", "--env", "mpe", "--tasks", "simple_speaker_listener_v4"]
    assert reproduce.main(args) == 2
    assert "share_param" in capsys.readouterr().err
    assert reproduce.main(["--algos", "happo,nope", "--env", "toy", "--tasks", "distinct_actions"]) == 2
    assert "Unknown algo" in capsys.readouterr().err
    assert ray.is_initialized() == was_running
    env, tasks, variants = reproduce.plan(reproduce.parse_args(["--ablation", "sequential-vs-simultaneous"]))
    assert (env, tasks) == ("mpe", ["simple_speaker_listener_v4"])
    assert [v.name for v in variants] == ["happo-sequential", "happo-simultaneous"]
    # Sharing on MPE: the equal-space task by default.
    env, tasks, variants = reproduce.plan(reproduce.parse_args(["--ablation", "shared-vs-separate", "--env", "mpe"]))
    assert (env, tasks) == ("mpe", ["simple_spread_v3"])
    assert [v.overrides for v in variants] == [{"share_param": False}, {"share_param": True}]


PUBLISHED_RUNS = sorted(
    p
    for pattern in ("*smax_*/runs/*.json", "mpe_spread_2m/runs/*.json", "mamujoco_halfcheetah_1m/runs/*.json")
    for p in (ROOT / "docs" / "results").glob(pattern)
)
# Published SMAX runs whose config is not a task's sweep file: the diagnosis's own file.
RUN_CONFIGS = {"diag_smax_5m_vs_6m_jaxmarl": ROOT / "benchmarks" / "configs" / "smax_5m_vs_6m_jaxmarl_mappo.yaml"}


@pytest.mark.parametrize("run_file", PUBLISHED_RUNS, ids=[f"{p.parents[1].name}-{p.stem}" for p in PUBLISHED_RUNS])
def test_published_runs_used_their_sweep_files_values(run_file):
    """Every published SMAX, 2M MPE and 1M HalfCheetah run (comparisons, ablations, diagnoses)
    recorded the config values it trained with; they are exactly what reproduce.py reads from its
    config file (the task's sweep file in tune_configs/: the algorithm's own where HARL tunes it
    apart, as HATRPO on 5m_vs_6m and MPE, else HAPPO's), plus an ablation variant's own settings."""
    reproduce = load_reproduce()
    run = json.loads(run_file.read_text())
    # simple_spread_v3's file is *_mpe_simple_spread.yaml, HalfCheetah-2x3's *_mamujoco_halfcheetah_2x3.yaml
    task = re.sub(r"_v\d+$", "", run["task"]).lower().replace("-", "_")
    candidates = [ROOT / "tune_configs" / f"{algo}_{run['env']}_{task}.yaml" for algo in (run["algo"], "happo")]
    config_file = RUN_CONFIGS.get(run_file.parents[1].name) or next(p for p in candidates if p.exists())
    args = reproduce.parse_args(["--config", str(config_file)])
    file_overrides = reproduce.load_file_overrides(args, run["env"], [run["task"]])
    variants = {v.name: v for a in reproduce.ABLATIONS.values() for v in a.variants}
    variant = variants.get(run["algorithm"], reproduce.Variant(run["algorithm"], run["algo"]))
    assert variant.algo == run["algo"]
    assert reproduce.run_overrides(file_overrides, variant) == run["overrides"]


def test_reproduce_sweep_file_config_is_for_its_own_task(tmp_path):
    """A sweep file as --config holds one task's values: another task, or env settings reproduce.py
    would not apply, are refused before anything runs."""
    reproduce = load_reproduce()
    args = reproduce.parse_args(["--config", str(ROOT / "tune_configs" / "happo_smax_3m.yaml")])
    with pytest.raises(ValueError, match="is for smax/3m; this run is smax/2s3z"):
        reproduce.load_file_overrides(args, "smax", ["2s3z"])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("algo: happo\nenv: mpe\ntask: simple_spread_v3\nenv_config: {N: 4}\nconfig: {lr: 1.0e-4}\n")
    args = reproduce.parse_args(["--config", str(sweep)])
    with pytest.raises(ValueError, match="env_config"):
        reproduce.load_file_overrides(args, "mpe", ["simple_spread_v3"])
    sweep.write_text(
        "algo: happo\nenv: mpe\ntask: simple_spread_v3\nconfig: {lr: 1e-4}\nresources: {num_env_runners: 1}\n"
    )
    assert reproduce.load_file_overrides(args, "mpe", ["simple_spread_v3"]) == {"lr": 1e-4, "num_env_runners": 1}


def test_reproduce_end_to_end(tmp_path, capsys):
    """2 algorithms × toy distinct_actions × 2 seeds × 2 iterations of 100 env steps (checkpointed
    after every iteration but the last), in a subprocess with its own local Ray; then a second
    call trains nothing (curve files exist), nor a third with a seed more and --no-train."""
    import ray

    config = tmp_path / "tiny.yaml"
    config.write_text("train_batch_size_per_learner: 100\nnum_envs_per_env_runner: 1\nnum_epochs: 1\ncritic_epoch: 1\n")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(REPRODUCE),
        "--algos",
        "happo,mappo",
        "--env",
        "toy",
        "--tasks",
        "distinct_actions",
        "--seeds",
        "1,2",
        "--env-steps",
        "200",
        "--stop-iters",
        "2",
        "--config",
        str(config),
        "--num-cpus",
        "1",
        "--final-eval-episodes",
        "3",
        "--checkpoint-minutes",
        "0",
        "--out",
        str(out),
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 runs, 4 to train" in proc.stdout

    data = strict_json(out / "marl_eval.json")
    algos = data["toy"]["distinct_actions"]
    assert sorted(algos) == ["happo", "mappo"]
    for runs in algos.values():
        assert sorted(runs) == ["seed_1", "seed_2"]
        for run in runs.values():
            assert list(run) == ["step_0", "step_1", "absolute_metrics"]
            assert [run[s]["step_count"] for s in ("step_0", "step_1")] == [100, 200]
            assert len(run["step_1"]["return"]) == 1 and 0.0 <= run["step_1"]["return"][0] <= 5.0
    assert len(list((out / "runs").glob("*.json"))) == 4
    # Each run was checkpointed after its first iteration; a finished run's partial state is removed.
    assert (out / "partial").is_dir() and list((out / "partial").iterdir()) == []
    if importlib.util.find_spec("matplotlib") is not None:  # plots are skipped without it
        assert_png(out / "curves.png")
    table = (out / "table.md").read_text()
    assert "| happo |" in table and "| mappo |" in table and "(n=2)" in table
    # The final policy evaluated over --final-eval-episodes: the absolute metrics, from a
    # deterministic evaluation (a toy return is within [0, 5]), recorded in the curve file.
    for path in (out / "runs").glob("*.json"):
        absolute = strict_json(path)["absolute"]
        assert set(absolute) == {"return"} and 0.0 <= absolute["return"] <= 5.0
    assert proc.stdout.count("final evaluation over 3 episodes") == 4

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 runs, 0 to train" in again.stdout
    assert strict_json(out / "marl_eval.json") == data

    # A third seed asked for with --no-train: nothing trains (no Ray); the outputs are the
    # finished runs' again, and the unfinished ones are named.
    was_running = ray.is_initialized()
    reproduce = load_reproduce()
    argv = cmd[2:]
    argv[argv.index("1,2")] = "1,2,3"
    (out / "table.md").unlink()
    (out / "marl_eval.json").unlink()
    assert reproduce.main([*argv, "--no-train"]) == 0
    printed = capsys.readouterr().out
    assert "left out of the outputs: happo distinct_actions seed 3, mappo distinct_actions seed 3" in printed
    assert "6 runs, 0 to train" in printed and "final evaluation" not in printed
    assert strict_json(out / "marl_eval.json") == data
    assert (out / "table.md").read_text().replace("1,2,3", "1,2") == table
    assert ray.is_initialized() == was_running
    assert reproduce.main([*argv, "--no-train", "--out", str(tmp_path / "empty")]) == 2


def test_reproduce_run_stopped_midway_continues_from_its_checkpoint(ray_session, tmp_path, monkeypatch, capsys):
    """A run stopped after iteration 2 whose last checkpoint (OUT/partial/...) is iteration 1
    continues from iteration 1 and ends with the same curve as an uninterrupted run: the
    restored algorithm's exact state, and the points recorded up to that checkpoint. The
    directory is relative, as under a user's `--out docs/results/...` (Ray's checkpoint loader
    takes a relative path for a URI without a scheme and fails: the resume once did)."""
    from harl_rllib import HAPPOConfig

    reproduce = load_reproduce()
    config = (
        HAPPOConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=100, num_epochs=2, critic_epoch=2)
    )
    straight, _ = reproduce.train_curve(config, env_steps=10**9, stop_iters=4, label="straight")
    monkeypatch.chdir(tmp_path)
    partial = Path("partial")
    stopped, _ = reproduce.train_curve(
        config, env_steps=10**9, stop_iters=2, label="stopped", partial=partial, checkpoint_every_s=0
    )
    assert len(stopped) == 2 and (partial / "checkpoint").is_dir()
    assert [i for i, _, _ in json.loads((partial / "points.json").read_text())["points"]] == [1]
    resumed, _ = reproduce.train_curve(
        config, env_steps=10**9, stop_iters=4, label="resumed", partial=partial, checkpoint_every_s=0
    )
    assert "resumed  resuming at iteration 1" in capsys.readouterr().out
    assert [s for s, _ in resumed] == [s for s, _ in straight] == [100, 200, 300, 400]
    np.testing.assert_allclose([m["return"] for _, m in resumed], [m["return"] for _, m in straight], rtol=1e-6)
    assert len({m["return"] for _, m in straight}) > 1  # the curve moves: the comparison can fail


def test_reproduce_keeps_evaluations_of_iterations_without_a_finished_training_episode(ray_session):
    """Episodes longer than an iteration (MaMuJoCo's 1000 steps under the off-policy cadence of 500
    or 1000 env steps per iteration) finish on few iterations; an evaluation on any other iteration
    is still a point of the curve, with its eval return and no training return."""
    from harl_rllib import HAPPOConfig

    reproduce = load_reproduce()
    config = (
        HAPPOConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions", "episode_length": 30})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=20, num_epochs=1, critic_epoch=1)
        .evaluation(evaluation_interval=1, evaluation_duration=1)
    )
    points, _ = reproduce.train_curve(config, env_steps=10**9, stop_iters=3, label="long episodes")
    # Iteration 1 (20 steps) finishes no training episode, iteration 2 (40 steps) the first one.
    assert [s for s, _ in points] == [20, 40, 60]
    assert "return" not in points[0][1] and "eval_return" in points[0][1]
    assert all({"return", "eval_return"} <= set(m) for _, m in points[1:])


def test_reproduce_summary_of_both_families_with_one_sweep_file(tmp_path, capsys):
    """`--no-train` summarizes the published HalfCheetah runs of HAPPO, HATD3 and HASAC with HAPPO's
    sweep file (as §6 of docs/RESULTS.md does with MPE's): a summary builds no config, so the PPO
    fields that an off-policy config rejects do not stop it."""
    reproduce = load_reproduce()
    published = ROOT / "docs" / "results" / "mamujoco_halfcheetah_1m" / "runs"
    shutil.copytree(published, tmp_path / "runs")
    argv = ["--env", "mamujoco", "--tasks", "HalfCheetah-2x3", "--algos", "happo,hatd3,hasac", "--seeds", "1"]
    argv += ["--config", str(ROOT / "tune_configs" / "happo_mamujoco_halfcheetah_2x3.yaml")]
    assert reproduce.main([*argv, "--no-train", "--env-steps", "1000000", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert all(f"| {algo} |" in table for algo in ("happo", "hatd3", "hasac"))
    # Training still checks every config before Ray starts: HAPPO's fields are an error for HATD3.
    assert reproduce.main([*argv, "--env-steps", "1000000", "--out", str(tmp_path / "train")]) == 2
    assert "Unknown config field(s)" in capsys.readouterr().err
