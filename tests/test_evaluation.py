"""Evaluation as HARL reports it: train.py's evaluations (deterministic, on separate runners,
leaving the training streams alone), its curves, and evaluate.py on a run's checkpoint."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harl_rllib.evaluation import evaluate, resolve_checkpoint
from harl_rllib.run import read_progress

from conftest import small_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = "train_batch_size_per_learner: 100\nnum_epochs: 1\ncritic_epoch: 1\nnum_envs_per_env_runner: 1\n"


def _evaluate_cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", ROOT / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> tuple[Path, str]:
    """train.py as a user runs it: MPE, 2 iterations, an evaluation of 5 episodes at the second."""
    tmp = tmp_path_factory.mktemp("evaluated_run")
    small = tmp / "small.yaml"
    small.write_text(SMALL)
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--num-cpus", "1", "--stop-iters", "2", "--config", str(small)]
        + ["--eval-interval", "2", "--eval-episodes", "5", "--storage-path", str(tmp / "results")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list((tmp / "results").iterdir())
    return run_dir, out.stdout


def test_train_py_reports_evaluations_and_draws_curves(evaluated_run):
    run_dir, stdout = evaluated_run
    rows = read_progress(run_dir)
    assert [r["iteration"] for r in rows] == [1, 2]
    assert "eval_team_return" not in rows[0]  # RLlib repeats old evaluations: only iteration 2 evaluated
    assert math.isfinite(rows[1]["eval_team_return"]) and rows[1]["eval_team_return"] < 0  # MPE's return
    lines = [x for x in stdout.splitlines() if x.startswith("iter")]
    assert "eval return" not in lines[0] and f"eval return {rows[1]['eval_team_return']:.2f}" in lines[1]
    assert json.loads((run_dir / "result.json").read_text())["eval_team_return"] == rows[1]["eval_team_return"]
    with Image.open(run_dir / "curves.png") as im:  # a valid image, written at the final checkpoint
        im.verify()
    with Image.open(run_dir / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_evaluate_reproduces_the_runs_evaluation_deterministically(evaluated_run, monkeypatch, capsys):
    """With the run's seed and envs and the same 5 episodes, evaluate.py plays exactly the
    battles of the run's last evaluation (same weights, same env seeds, deterministic actions);
    twice the same; sampled actions play differently."""
    run_dir, _ = evaluated_run
    want = read_progress(run_dir)[-1]["eval_team_return"]
    cli = _evaluate_cli()
    assert cli.main([str(run_dir), "--episodes", "5", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["team_return_mean"] == want
    assert first["episodes"] == 5 and len(first["team_returns"]) == 5 and first["deterministic"] is True
    assert (first["env"], first["task"], first["algorithm"], first["seed"]) == ("mpe", "simple_spread_v3", "HAPPO", 1)
    lo, hi = first["team_return_ci95"]
    assert lo < first["team_return_mean"] < hi
    again = evaluate(resolve_checkpoint(run_dir / "checkpoint"), episodes=5)
    assert again["team_returns"] == first["team_returns"]
    sampled = evaluate(run_dir, episodes=5, explore=True)
    assert sampled["team_returns"] != first["team_returns"] and sampled["deterministic"] is False

    assert cli.main([str(run_dir), "--episodes", "3", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert "HAPPO on mpe simple_spread_v3: 3 deterministic episodes (seed 7)" in text
    assert "team return" in text and "95% CI [" in text and "win rate" not in text  # MPE has no wins

    # One episode has no interval: strict JSON (no NaN) with null, and the summary says so.
    assert cli.main([str(run_dir), "--episodes", "1", "--json"]) == 0
    one = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert one["episodes"] == 1 and one["team_return_ci95"] is None
    assert cli.main([str(run_dir), "--episodes", "1"]) == 0
    text = capsys.readouterr().out
    assert "no 95% CI (one episode)" in text and "nan" not in text

    # A relative path, as a user types `evaluate.py results/<run>` (Ray's loaders take it for a URI).
    monkeypatch.chdir(run_dir.parent.parent)
    for path in (f"results/{run_dir.name}", f"results/{run_dir.name}/checkpoint"):
        assert cli.main([path, "--episodes", "1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["team_returns"] == one["team_returns"]


def test_evaluate_py_errors_are_clear(tmp_path, capsys):
    cli = _evaluate_cli()
    assert cli.main([str(tmp_path / "nothing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert cli.main([str(tmp_path)]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err
    assert cli.main([str(tmp_path), "--render", "out.avi"]) == 2
    assert ".gif or .mp4" in capsys.readouterr().err
    assert cli.main([str(tmp_path), "--episodes", "0"]) == 2
    assert "positive" in capsys.readouterr().err


def test_evaluation_leaves_the_training_streams_alone(ray_session):
    """A run with an evaluation every iteration trains on the same episodes, and ends with the
    same weights, as one without (the evaluation runner's envs and draws are its own)."""

    def run(evaluate_every: int | None) -> tuple[list[float], dict]:
        config = small_config(batch=200, num_epochs=1, critic_epoch=1)
        if evaluate_every:
            config.evaluation(evaluation_interval=evaluate_every, evaluation_duration=2)
        algo = config.build_algo()
        try:
            results = [algo.train() for _ in range(3)]
            weights = algo.learner_group.get_weights()
        finally:
            algo.stop()
        if evaluate_every:
            assert all(math.isfinite(r["evaluation"]["env_runners"]["team_episode_return_mean"]) for r in results)
        return [r["env_runners"]["team_episode_return_mean"] for r in results], weights

    plain_returns, plain_weights = run(None)
    eval_returns, eval_weights = run(1)
    assert eval_returns == plain_returns
    for mid, params in plain_weights.items():
        for name, value in params.items():
            np.testing.assert_array_equal(
                np.asarray(eval_weights[mid][name]), np.asarray(value), err_msg=f"{mid}/{name}"
            )


def _gif(path: Path) -> tuple[int, tuple[int, int], int]:
    """(frames stored, size, total duration in ms). Pillow stores a frame equal to the one before
    as a longer duration of that one, so the duration counts the recorded frames."""
    with Image.open(path) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        return im.n_frames, im.size, int(sum(durations))


def test_evaluate_renders_an_mpe_episode(evaluated_run, tmp_path):
    run_dir, _ = evaluated_run
    gif = tmp_path / "mpe.gif"
    result = evaluate(run_dir, episodes=2, render=gif, render_episodes=2, fps=10, render_scale=0.5)
    assert result["episode_lengths"] == [25, 25]
    assert result["frames"] == 2 * 26  # each episode's reset and its 25 steps
    stored, size, duration = _gif(gif)
    assert size == (350, 350) and 2 <= stored <= 52 and duration == 52 * 100  # mpe2's 700x700, halved


def _one_iteration_checkpoint(tmp_path: Path, env: str, env_config: dict, *, envs: int, batch: int) -> Path:
    """HAPPO trained one short iteration on `env`, saved to tmp_path/checkpoint."""
    from harl_rllib import HAPPOConfig

    config = (
        HAPPOConfig()
        .environment(env, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=envs)
        .training(train_batch_size_per_learner=batch, num_epochs=1, critic_epoch=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo.stop()
    return tmp_path / "checkpoint"


def test_evaluate_renders_a_smax_battle(ray_session, tmp_path):
    """A SMAX checkpoint (1 short iteration) evaluated with a recording: one frame per step and
    one after the reset, drawn by the env's batched vector env."""
    checkpoint = _one_iteration_checkpoint(tmp_path, "harl_smax", {"task": "3m", "max_steps": 12}, envs=2, batch=48)
    gif = tmp_path / "smax.gif"
    result = evaluate(checkpoint, episodes=1, render=gif)
    (length,) = result["episode_lengths"]
    assert 1 <= length <= 13 and result["frames"] == length + 1  # 13: max_steps + 1, as observed of jaxmarl
    assert result["win_rate"] in (0.0, 1.0) and result["win_rate_ci95"] is None  # one battle: no interval
    stored, size, duration = _gif(gif)
    assert size == (660, 690) and 1 <= stored <= length + 1 and duration == (length + 1) * 100


def test_evaluate_renders_a_mamujoco_episode(ray_session, tmp_path):
    """MAMuJoCo offscreen (EGL where libEGL is there; skipped, with the reason, where no GL
    backend works): a 10-step HalfCheetah episode gives 11 frames of the requested size."""
    pytest.importorskip("gymnasium_robotics")
    from harl_rllib.envs.mamujoco import MuJoCoGLError

    env_config = {"task": "HalfCheetah-2x3", "max_episode_steps": 10, "width": 96, "height": 64}
    checkpoint = _one_iteration_checkpoint(tmp_path, "harl_mamujoco", env_config, envs=1, batch=20)
    gif = tmp_path / "cheetah.gif"
    try:
        result = evaluate(checkpoint, episodes=1, render=gif)
    except MuJoCoGLError as e:
        pytest.skip(f"MuJoCo cannot render on this machine: {e}")
    assert result["episode_lengths"] == [10] and result["frames"] == 11
    stored, size, duration = _gif(gif)
    assert size == (96, 64) and 2 <= stored <= 11 and duration == 11 * 100


@pytest.mark.parametrize(
    "algo, task",
    [("HATD3", "continuous_sum"), ("HASAC", "continuous_sum"), ("HAD3QN", "distinct_actions")],
)
def test_off_policy_evaluations_are_deterministic(ray_session, algo, task):
    """The off-policy family on RLlib's evaluation runner: no exploration noise, no sampled
    actions, no ε (explore=False), so two evaluations of the same weights are the same."""
    import harl_rllib

    config = (
        getattr(harl_rllib, f"{algo}Config")()
        .environment("harl_toy", env_config={"task": task})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(warmup_steps=20, train_interval=5, train_batch_size_per_learner=16)
        .evaluation(evaluation_interval=2, evaluation_duration=4)
        .debugging(seed=0)
    )
    algo_ = config.build_algo()
    try:
        results = [algo_.train() for _ in range(2)]
        assert "evaluation" in results[1]
        first, second = (algo_.evaluate()["env_runners"]["team_episode_return_mean"] for _ in range(2))
    finally:
        algo_.stop()
    assert math.isfinite(first) and first == second
