"""Tune sweeps from YAML (harl_rllib.tune_sweep): every shipped sweep file validates, ASHA and PBT
sweeps run on the toy task (the ASHA one also writes its figure of every trial), wandb logs offline
without a key, and bad sweep files fail early."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

from harl_rllib.envs.smac import SMACNotInstalledError, StarCraftIINotFoundError
from harl_rllib.tune_sweep import (
    DEFAULT_METRIC,
    EVAL_METRIC,
    SWEEP_FIGURE,
    WIN_METRIC,
    load_sweep,
    param_key,
    plot_trial_curves,
    prepare_sweep,
    run_sweep,
    trial_labels,
)

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "tune_configs").glob("*.yaml"))
STANDIN = "standins.starcraft2_standin:StarCraft2EnvStandIn"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"

# A sweep small enough for a test: the toy task, 100 env steps per iteration, 1 CPU per trial.
TOY = {
    "algo": "happo",
    "env": "toy",
    "task": "distinct_actions",
    "config": {"train_batch_size_per_learner": 100, "num_epochs": 1, "critic_epoch": 1},
    "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 1},
    "stop": {"training_iteration": 1},
}


def toy(**changes) -> dict:
    spec = copy.deepcopy(TOY)
    spec.update(changes)
    return spec


def test_sweep_files_exist():
    names = {p.name for p in SWEEPS}
    for name in (
        "happo_mpe_simple_spread.yaml",
        "hatrpo_mpe_simple_spread.yaml",
        "happo_smax_3m.yaml",
        "happo_smac_3s5z.yaml",
        "hatrpo_smac_3s5z.yaml",
        "happo_mamujoco_halfcheetah_2x3.yaml",
        "hatrpo_mamujoco_halfcheetah_2x3.yaml",
        "seeds_happo_mpe.yaml",
        "pbt_happo_mpe.yaml",
        "tiny_asha_toy.yaml",
    ):
        assert name in names


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_file_validates(path):
    """Loads, builds and validates the config and every searched value, without Ray or training."""
    was_running = ray.is_initialized()
    spec = load_sweep(path)
    assert spec["name"] == path.stem
    if spec["env"] == "smac":
        try:
            prepare_sweep(spec)
        except ImportError as e:  # no StarCraft II / oxwhirl smac here: it must say so, specifically
            assert isinstance(e, (SMACNotInstalledError, StarCraftIINotFoundError)), repr(e)
        spec["env_config"] = {**(spec.get("env_config") or {}), "sc2_env_cls": STANDIN}
    plan = prepare_sweep(spec)
    assert plan.trainable == spec["algo"].upper()
    assert plan.searched and all(k in plan.param_space for k in plan.searched)
    assert plan.stop and plan.metric.startswith("env_runners/")
    assert plan.param_space["env_config"].get("task") == spec["task"]
    for key, value in spec.get("config", {}).items():
        assert plan.param_space[param_key(key, plan.param_space)] == value or key == "actor_model", key
    assert ray.is_initialized() == was_running


def test_yaml_exponent_floats_and_search_spaces(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "algo: hatrpo\nenv: toy\ntask: distinct_actions\nstop: {training_iteration: 1}\n"
        "search:\n  lr: {loguniform: [1e-5, 1e-3]}\n  kl_threshold: {uniform: [1e-3, 2e-2]}\n"
        "  num_epochs: {randint: [1, 4]}\n  seed: {choice: [1, 2]}\n  lambda_: {grid: [0.9, 0.95]}\n"
        "  actor_model: {grid: [{hidden_sizes: [8]}]}\n  train_batch_size_per_learner: {grid: [50, 100]}\n"
    )
    spec = load_sweep(f)
    assert spec["search"]["lr"]["loguniform"] == [1e-5, 1e-3]
    plan = prepare_sweep(spec)
    assert plan.param_space["lr"].lower == 1e-5 and plan.param_space["kl_threshold"].upper == 2e-2
    assert plan.param_space["lambda"] == {"grid_search": [0.9, 0.95]}  # to_dict's name for lambda_
    (model,) = plan.param_space["actor_model"]["grid_search"]
    assert model["hidden_sizes"] == [8] and "activation" in model  # merged over the default
    assert plan.param_space["_train_batch_size_per_learner"] == {"grid_search": [50, 100]}  # a property
    assert plan.scheduler is None and plan.metric == "env_runners/team_episode_return_mean"


BAD = [
    (dict(config={"clip_parm": 0.1}), "Unknown config field"),
    (dict(search={"lr_actor": {"grid": [1e-4]}}), "unknown config field 'lr_actor'"),
    (dict(search={"lr": {"grid": [1e-4, -1.0]}}), r"search.lr: value -1.0 is invalid"),
    (dict(search={"lr": {"normal": [0, 1]}}), "unknown space 'normal'"),
    (dict(search={"lr": [1e-4]}), "must be one of"),
    (dict(search={"lr": {"loguniform": [0.0, 1e-3]}}), "loguniform needs low > 0"),
    (dict(config={"lr": 1e-4}, search={"lr": {"grid": [1e-3]}}), "both fixed"),
    (dict(scheduler={"type": "hyperband"}), "Unknown scheduler type 'hyperband'"),
    (dict(scheduler={"type": "asha", "grace": 1}), "Unknown ASHA setting"),
    (dict(scheduler={"type": "asha", "grace_period": 5, "max_t": 2}), "grace_period <= max_t"),
    (
        dict(
            scheduler={"type": "pbt", "perturbation_interval": 2, "hyperparam_mutations": {"lr": [1e-4, 1e-3]}},
            checkpoint={"frequency": 2, "num_to_keep": 1},
        ),
        "num_to_keep >= 2",
    ),
    (
        dict(
            scheduler={"type": "pbt", "perturbation_interval": 2, "hyperparam_mutations": {"lr": [1e-4, 1e-3]}},
            checkpoint={"frequency": 5, "num_to_keep": 2},
        ),
        "checkpoint.frequency between 1 and perturbation_interval",
    ),
    (dict(scheduler={"type": "pbt", "perturbation_interval": 2}), "hyperparam_mutations"),
    (
        dict(scheduler={"type": "pbt", "perturbation_interval": 2, "hyperparam_mutations": {"lr_x": [1e-4]}}),
        "unknown config field 'lr_x'",
    ),
    (dict(stop={}), "needs 'stop'"),
    (dict(algo="ppo"), "Unknown algo"),
    (dict(task="nope"), "Unknown toy task"),
    (dict(metric="x", scheduler={"type": "asha", "metric": "y"}), "'metric' is 'x' at the top"),
    (dict(mode="maximize"), "'mode' must be"),
    (dict(searhc={}), "Unknown sweep key"),
    (dict(resources={"num_gpus": 1}), "Unknown key"),
    (dict(wandb={"project": "p", "api_key": "k"}), "Unknown key"),
]


@pytest.mark.parametrize("changes, match", BAD, ids=[m for _, m in BAD])
def test_bad_sweeps_raise_before_ray_starts(changes, match):
    was_running = ray.is_initialized()
    with pytest.raises(ValueError, match=match):
        prepare_sweep(toy(**changes))
    assert ray.is_initialized() == was_running


def test_overrides_win_but_never_over_searched_fields():
    plan = prepare_sweep(toy(), overrides={"num_envs_per_env_runner": 2, "lr": 1e-3})
    assert plan.param_space["num_envs_per_env_runner"] == 2 and plan.param_space["lr"] == 1e-3
    with pytest.raises(ValueError, match="both fixed"):
        prepare_sweep(toy(search={"lr": {"grid": [1e-4]}}), overrides={"lr": 1e-3})


def test_wandb_settings(monkeypatch, capsys):
    import importlib.util

    with_section = toy(wandb={"project": "p", "tags": ["a"]})
    assert prepare_sweep(toy()).wandb is None
    assert prepare_sweep(toy(), wandb=False).wandb is None
    assert prepare_sweep(with_section, wandb=False).wandb is None
    find_spec = importlib.util.find_spec
    if find_spec("wandb") is not None:
        assert prepare_sweep(toy(), wandb=True).wandb == {}
        assert prepare_sweep(with_section).wandb == {"project": "p", "tags": ["a"]}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    assert prepare_sweep(with_section).wandb is None  # a section is a wish: skipped, and said so
    assert "wandb is not installed" in capsys.readouterr().out
    with pytest.raises(ImportError, match="pip install wandb"):
        prepare_sweep(with_section, wandb=True)  # an explicit request is not


def test_asha_sweep_on_toy(ray_session, tmp_path, capsys):
    spec = load_sweep(ROOT / "tune_configs" / "tiny_asha_toy.yaml")
    results = run_sweep(spec, storage_path=tmp_path, wandb=False, verbose=0)
    assert not results.errors
    assert len(results) == 3
    assert sorted(r.config["lr"] for r in results) == [1e-4, 5e-4, 2e-3]
    iters = [r.metrics["training_iteration"] for r in results]
    assert max(iters) == 3 and min(iters) >= 1
    best = results.get_best_result()  # metric and mode come from the sweep's TuneConfig
    assert best.metrics["env_runners"]["team_episode_return_mean"] > 0
    assert best.checkpoint is not None  # checkpoint.at_end
    assert Path(results.experiment_path) == tmp_path / "tiny_asha_toy"
    out = capsys.readouterr().out
    assert "best trial: env_runners/team_episode_return_mean = " in out and "'lr': " in out
    # The sweep figure: every trial's history has the flattened columns it plots, and it was written.
    for r in results:
        assert {"env_runners/num_env_steps_sampled_lifetime", spec_metric(spec)} <= set(r.metrics_dataframe.columns)
    if importlib.util.find_spec("matplotlib") is not None:  # the figure is skipped without it
        png = tmp_path / "tiny_asha_toy" / SWEEP_FIGURE
        assert f"sweep curves: {png}" in out
        assert png.is_file() and png.stat().st_size > 0 and png.read_bytes()[:8] == PNG_HEADER
        image = imread_png(png)
        assert image.shape[:2] == (432, 600) and image[..., :3].std() > 0.05  # one panel, not blank


def spec_metric(spec: dict) -> str:
    return spec.get("metric") or DEFAULT_METRIC


def imread_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def history(steps: list[int], returns: list[float], **more: list[float]) -> pd.DataFrame:
    """A trial's Tune history as `Result.metrics_dataframe` has it: "/"-joined columns, NaN where
    an iteration did not report a metric."""
    return pd.DataFrame(
        {
            "training_iteration": list(range(1, len(steps) + 1)),
            "env_runners/num_env_steps_sampled_lifetime": steps,
            DEFAULT_METRIC: returns,
            **more,
        }
    )


def has_color(image: np.ndarray, color: str) -> bool:
    from matplotlib.colors import to_rgb

    return bool((np.abs(image[..., :3] - np.asarray(to_rgb(color))).max(axis=-1) < 0.02).sum() > 20)


def test_trial_labels():
    small, large = {"hidden_sizes": [8], "activation": "relu"}, {"hidden_sizes": [16], "activation": "relu"}
    configs = [
        {"lr": 1e-4, "_train_batch_size_per_learner": 50, "actor_model": small},
        {"lr": 5e-4, "_train_batch_size_per_learner": 50, "actor_model": large},
    ]
    assert trial_labels(configs, ["lr", "_train_batch_size_per_learner", "actor_model"]) == [
        "lr=0.0001, train_batch_size_per_learner=50, actor_model.hidden_sizes=[8]",
        "lr=0.0005, train_batch_size_per_learner=50, actor_model.hidden_sizes=[16]",
    ]
    assert trial_labels(configs, ["_train_batch_size_per_learner"]) == [
        "train_batch_size_per_learner=50 #0",
        "train_batch_size_per_learner=50 #1",
    ]
    assert trial_labels(configs, []) == ["trial 0", "trial 1"]


def test_plot_trial_curves(tmp_path):
    """One panel for the return alone; three when a trial also reports the evaluation return and
    the win rate (NaN rows skipped); each trial's line in its colour."""
    pytest.importorskip("matplotlib")
    a = history([100, 200, 300], [1.0, 2.0, 2.5])
    b = history([100, 200, 300], [0.5, float("nan"), 1.5])
    one = plot_trial_curves([("lr=0.0001", a), ("lr=0.0005", b)], tmp_path / "one.png")
    assert one == str(tmp_path / "one.png")
    image = imread_png(Path(one))
    assert image.shape[:2] == (432, 600)  # 5 × 3.6 inches at 120 dpi: one panel
    assert has_color(image, "C0") and has_color(image, "C1") and not has_color(image, "C2")

    c = history([100, 200], [3.0, 3.5], **{EVAL_METRIC: [2.0, float("nan")], WIN_METRIC: [0.0, 0.5]})
    three = plot_trial_curves([("lr=0.0001", a), ("lr=0.002", c)], tmp_path / "sub" / "three.png")
    image = imread_png(Path(three))
    assert image.shape[:2] == (432, 1800)  # return, evaluation return, win rate
    assert has_color(image, "C0") and has_color(image, "C1")

    # A sweep stored at a URI (s3://, gs://...) gets its figure through pyarrow, as Tune stores
    # the rest: pyarrow's local filesystem behind a file:// URI takes the same branch.
    uri = f"file://{tmp_path}/remote/sweep_curves.png"
    assert plot_trial_curves([("lr=0.0001", a)], uri) == uri
    assert imread_png(tmp_path / "remote" / "sweep_curves.png").shape[:2] == (432, 600)


def test_pbt_exploits(ray_session, tmp_path):
    spec = toy(
        name="pbt_toy",
        search={"lr": {"grid": [1e-5, 3e-3]}},  # far apart, so one trial clearly trails
        scheduler={
            "type": "pbt",
            "perturbation_interval": 2,
            "synch": True,  # both trials reach each perturbation point before it is decided
            "hyperparam_mutations": {"lr": [1e-5, 1e-4, 1e-3, 3e-3], "entropy_coeff": {"uniform": [0.0, 0.02]}},
        },
        stop={"training_iteration": 4},  # one exploit, after iteration 2
        checkpoint={"frequency": 2, "num_to_keep": 3},
    )
    results = run_sweep(spec, storage_path=tmp_path, wandb=False, verbose=0)
    assert not results.errors and len(results) == 2
    assert all(r.metrics["training_iteration"] == 4 for r in results)
    exp = Path(results.experiment_path)
    # PBT logs every exploit: one line per exploit in pbt_global.txt, and pbt_policy_<trial>.txt per exploiter.
    global_log = (exp / "pbt_global.txt").read_text().strip().splitlines()
    assert global_log, "PBT never exploited"
    assert list(exp.glob("pbt_policy_*.txt"))
    # The exploiting trial continued from the other's weights with perturbed settings, and its
    # actors' optimizers run at its own (perturbed) lr, not at the lr stored in the checkpoint.
    assert any(r.config["entropy_coeff"] != 0.01 for r in results)
    for r in results:
        assert r.metrics["learners"]["agent_0"]["default_optimizer_learning_rate"] == pytest.approx(r.config["lr"])


def test_wandb_offline_without_key(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    spec = toy(name="wandb_toy", wandb={"project": "harl_rllib_test", "group": "tests", "tags": ["toy"]})
    results = run_sweep(spec, storage_path=tmp_path / "results", verbose=0)
    assert not results.errors and len(results) == 1
    runs = list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb_dir").rglob("*"))[:20]
    assert list(runs[0].glob("*.wandb")), "no run data file (run-<id>.wandb)"
