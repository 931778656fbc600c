"""The README's train command, as a user types it, and train.py's answers to bad input.

Why: the main command once shipped broken (a relative default storage path crashed the first
checkpoint) while every test passed, because the tests gave absolute temporary paths. Here
the command is read from README.md and run from a fresh directory holding train.py, as a
user's checkout would, with the default relative `./results`, through a checkpoint, an
interrupt (Ctrl-C) and a `--resume` with a relative path. Only `--stop-iters` and
`--checkpoint-every` are added, to keep it short.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_train_command() -> list[str]:
    """The train command of the README's set-up-and-train line (the last `&&` part)."""
    lines = [x for x in (ROOT / "README.md").read_text().splitlines() if "pip install" in x and "train.py" in x]
    assert len(lines) == 1, f"expected one set-up-and-train line in README.md, found {lines}"
    command = shlex.split(lines[0].split("&&")[-1])
    assert command[:2] == ["python", "train.py"], command
    return [sys.executable, *command[1:]]


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "progress.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_readme_train_command_from_a_fresh_directory_through_checkpoint_interrupt_and_resume(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / "train.py", checkout / "train.py")
    command = readme_train_command()
    assert "--storage-path" not in command  # the default relative ./results is what is tested
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # The run: 4 iterations, a checkpoint every 2; interrupted (Ctrl-C) once iteration 3 is logged.
    first = subprocess.Popen(
        [*command, "--stop-iters", "4", "--checkpoint-every", "2"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline, run_dir = time.time() + 400, None
    try:
        while time.time() < deadline and first.poll() is None:
            runs = list((checkout / "results").glob("*")) if (checkout / "results").exists() else []
            if runs and len(_rows(runs[0])) >= 3:
                run_dir = runs[0]
                first.send_signal(signal.SIGINT)
                break
            time.sleep(0.1)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert run_dir is not None, f"iteration 3 was never logged:\n{out[-3000:]}"
    assert first.returncode == 130 and "--resume" in out, out[-3000:]
    assert run_dir.parent == checkout / "results"  # relative to where the user ran it
    assert (run_dir / "checkpoint").is_dir() and not (run_dir / "result.json").exists()
    assert [r["iteration"] for r in _rows(run_dir)] == [1, 2, 3]  # 3 trained; the checkpoint holds 2

    # The resume, with a relative path and no stop flags: the run's own criterion and cadence.
    relative = os.path.relpath(run_dir, checkout)
    again = subprocess.run(
        [sys.executable, "train.py", "--resume", relative],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    rows = _rows(run_dir)
    # One row per iteration: iteration 3, lost with the interrupted process, was trained again.
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["env_steps"] for r in rows] == [4000, 8000, 12000, 16000]
    times = [r["time_s"] for r in rows]
    assert times == sorted(times) and times[2] > times[1]  # time goes on from the checkpoint's
    result = json.loads((run_dir / "result.json").read_text())
    assert result["iteration"] == 4 and result["checkpoint"] == str(run_dir.resolve() / "checkpoint")
    assert json.loads((run_dir / "run.json").read_text())["stop_iters"] == 4

    # A finished run resumed again trains nothing more; its checkpoint is the 4th iteration's.
    done = subprocess.run(
        [sys.executable, "train.py", "--resume", relative], cwd=checkout, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and [r["iteration"] for r in _rows(run_dir)] == [1, 2, 3, 4], done.stderr[-2000:]


@pytest.mark.parametrize(
    "args, config_text, message",
    [
        (["--stop-iters", "0"], None, "--stop-iters must be a positive number"),
        (["--stop-iters", "-3"], None, "--stop-iters must be a positive number"),
        (["--stop-timesteps", "0"], None, "--stop-timesteps must be a positive number"),
        (["--checkpoint-every", "-1"], None, "--checkpoint-every must be >= 0"),
        (["--env", "smax", "--task", "3m", "--continuous-actions"], None, "discrete actions only"),
        (["--env", "toy", "--task", "recall", "--continuous-actions"], None, "discrete actions only"),
        ([], "lr: [0.1\nnum_epochs: 2\n", "not valid YAML"),
        ([], "minibatch_size: 8000\n", "larger than the batch"),
        ([], "max_env_failures_per_sample: -1\n", "max_env_failures_per_sample"),
        (["--config", "no_such_file.yaml"], None, "no_such_file.yaml"),
        (["--resume", "results/no_such_run"], None, "No checkpoint"),
        (["--tune", "SWEEP"], "algo: happo\nsearch: {lr: [0.1\n", "not valid YAML"),
    ],
)
def test_bad_input_exits_2_before_ray_starts(tmp_path, monkeypatch, capsys, args, config_text, message):
    import ray

    sys.path.insert(0, str(ROOT))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.chdir(tmp_path)
    if config_text is not None:
        (tmp_path / "file.yaml").write_text(config_text)
        args = [a.replace("SWEEP", "file.yaml") for a in args] if "SWEEP" in args else [*args, "--config", "file.yaml"]
    was_running = ray.is_initialized()
    assert train.main(args) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert ray.is_initialized() == was_running
    assert not (tmp_path / "results").exists()  # nothing written
