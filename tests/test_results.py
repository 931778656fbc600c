"""harl_rllib.results and benchmarks/reproduce.py: the marl-eval JSON layout (written, read back,
keys checked), curve and scaling plots, the final table, and one tiny reproduce.py run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harl_rllib.results import (
    RunRecord,
    final_table,
    linear_fit,
    marl_eval_json,
    mean_band,
    plot_curves,
    plot_scaling,
    read_marl_eval_json,
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


def test_mean_band_and_linear_fit():
    x = np.array([0.0, 10.0, 20.0])
    curves = [(x, np.array([1.0, 2.0, 3.0])), (x, np.array([3.0, 4.0, 5.0])), (x + 1, np.array([2.0, 3.0, 4.0]))]
    grid, mean, half = mean_band(curves)
    # Cut where the shortest curve ends (x = 20), interpolated onto the first seed's steps.
    np.testing.assert_allclose(grid, [0.0, 10.0, 20.0])
    np.testing.assert_allclose(mean, [2.0, (2 + 4 + 2.9) / 3, (3 + 5 + 3.9) / 3])
    ys = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])
    np.testing.assert_allclose(half, 4.302653 * ys.std(axis=0, ddof=1) / math.sqrt(3), rtol=1e-4)
    _, _, single = mean_band(curves[:1])
    assert not single.any()
    a, b, r2 = linear_fit([2, 4, 6], [1.0, 2.0, 3.0])
    assert (a, b, r2) == pytest.approx((0.5, 0.0, 1.0))
    assert linear_fit([1, 2, 3], [1.0, 3.0, 1.0])[2] == pytest.approx(0.0)


def test_plot_curves_and_table(tmp_path):
    pytest.importorskip("matplotlib")
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
    # happo on spread: finals −69, −68 → −68.50 ± 0.71; on toy: 5, 6, 7 → 6.00 ± 1.00.
    assert lines[2] == "| happo | -68.50 ± 0.71 (n=2) | 6.00 ± 1.00 (n=3) |"
    assert lines[3] == "| mappo | -78.50 ± 0.71 (n=2) | – |"


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


def test_reproduce_end_to_end(tmp_path):
    """2 algorithms × toy distinct_actions × 2 seeds × 2 iterations of 100 env steps, in a
    subprocess with its own local Ray; then a second call trains nothing (curve files exist)."""
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
    if importlib.util.find_spec("matplotlib") is not None:  # plots are skipped without it
        assert_png(out / "curves.png")
    table = (out / "table.md").read_text()
    assert "| happo |" in table and "| mappo |" in table and "(n=2)" in table

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 runs, 0 to train" in again.stdout
    assert strict_json(out / "marl_eval.json") == data
