"""What `train.py` does, importable: build a config from names, train, log, checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from harl_rllib.core.callbacks import TEAM_RETURN
from harl_rllib.envs.registry import check_env, env_id

WIN = "battle_won"  # the win-rate stat of SMAX/SMAC/SMACv2 episodes (`episode_stats`)

ALGO_CONFIGS = {
    "happo": "harl_rllib.algorithms.happo:HAPPOConfig",
    "hatrpo": "harl_rllib.algorithms.hatrpo:HATRPOConfig",
    "haa2c": "harl_rllib.algorithms.haa2c:HAA2CConfig",
    "mappo": "harl_rllib.algorithms.mappo:MAPPOConfig",
    "haddpg": "harl_rllib.algorithms.haddpg:HADDPGConfig",
    "hatd3": "harl_rllib.algorithms.hatd3:HATD3Config",
    "hasac": "harl_rllib.algorithms.hasac:HASACConfig",
    "had3qn": "harl_rllib.algorithms.had3qn:HAD3QNConfig",
    "maddpg": "harl_rllib.algorithms.maddpg:MADDPGConfig",
    "matd3": "harl_rllib.algorithms.matd3:MATD3Config",
}


def config_class(algo: str):
    if algo not in ALGO_CONFIGS:
        raise ValueError(f"Unknown algo {algo!r}; known algos: {', '.join(ALGO_CONFIGS)}")
    module, name = ALGO_CONFIGS[algo].split(":")
    import importlib

    return getattr(importlib.import_module(module), name)


RUN_SETTINGS = "run.json"
# train.py evaluates every this many env steps by default: HARL's on-policy default
# (eval_interval 25 iterations of 4000 steps).
EVAL_EVERY_ENV_STEPS = 100_000
DEFAULT_STOP_TIMESTEPS = 400_000
DEFAULT_CHECKPOINT_EVERY = 10


def load_overrides(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields to values")
    return data


def apply_overrides(config, overrides: dict[str, Any]):
    """Set config fields by name; unknown names are an error (no silent typos)."""
    unknown = [k for k in overrides if not hasattr(config, k) and k != "lambda"]
    if unknown:
        raise ValueError(f"Unknown config field(s): {', '.join(unknown)}")
    return config.update_from_dict(overrides)


def build_config(
    *,
    algo: str,
    env: str,
    task: str | None,
    seed: int = 1,
    continuous_actions: bool = False,
    num_env_runners: int | None = None,
    envs_per_runner: int | None = None,
    num_learners: int | None = None,
    num_gpus_per_learner: float | None = None,
    eval_interval: int | str | None = None,
    eval_episodes: int | None = None,
    overrides: dict[str, Any] | None = None,
):
    """A validated config; every bad input raises here, before Ray starts.

    `eval_interval`: evaluate every so many iterations (0: never; "auto": about every
    100k env steps, unless `overrides` set `evaluation_interval`; None: as the config class).
    `eval_episodes`: episodes per evaluation (HARL's default: 20)."""
    check_env(env, task)
    bad_interval = not isinstance(eval_interval, int) or eval_interval < 0
    if eval_interval is not None and eval_interval != "auto" and bad_interval:
        raise ValueError(f"--eval-interval must be >= 0 iterations (0: no evaluation); got {eval_interval}")
    if eval_episodes is not None and eval_episodes <= 0:
        raise ValueError(f"--eval-episodes must be a positive number; got {eval_episodes}")
    if continuous_actions and env != "mpe":
        raise ValueError(
            f"--continuous-actions is for MPE (whose tasks have both action kinds); {env!r} has "
            + ("continuous actions already." if env == "mamujoco" else "discrete actions only.")
        )
    import harl_rllib  # noqa: F401  (registers envs and algorithms)

    env_config: dict[str, Any] = {}
    if continuous_actions:
        env_config["continuous_actions"] = True
    if task is not None:
        env_config["task"] = task
    if (overrides or {}).get("state_type") == "FP":
        env_config["state_type"] = "FP"  # the env must produce the per-agent states
    config = config_class(algo)().environment(env_id(env), env_config=env_config).debugging(seed=seed)
    if num_env_runners is not None:
        config.env_runners(num_env_runners=num_env_runners)
    if envs_per_runner is not None:
        config.env_runners(num_envs_per_env_runner=envs_per_runner)
    if num_learners is not None:
        config.learners(num_learners=num_learners)
    if num_gpus_per_learner is not None:
        config.learners(num_gpus_per_learner=num_gpus_per_learner)
    apply_overrides(config, overrides or {})
    if eval_interval == "auto":
        if "evaluation_interval" not in (overrides or {}):
            config.evaluation(evaluation_interval=default_eval_interval(config))
    elif eval_interval is not None:
        config.evaluation(evaluation_interval=eval_interval or None)
    if eval_episodes is not None:
        config.evaluation(evaluation_duration=eval_episodes)
    config.validate()
    return config


def default_eval_interval(config) -> int:
    """Iterations between evaluations: about every `EVAL_EVERY_ENV_STEPS` env steps."""
    return max(1, round(EVAL_EVERY_ENV_STEPS / config.env_steps_per_iteration()))


def summarize(result: dict, time_offset_s: float = 0.0, evaluated: bool = False) -> dict[str, Any]:
    """One progress row. `time_offset_s`: the run's time before a resume (a restored
    Algorithm counts its time from zero). The win rate (envs with `battle_won`) and, when
    this iteration `evaluated`, the evaluation's return and win rate appear when there are
    such values (RLlib repeats the last evaluation's in every later result)."""
    er = result.get("env_runners", {})
    row = {
        "iteration": result.get("training_iteration"),
        "env_steps": er.get("num_env_steps_sampled_lifetime"),
        "team_return": er.get(TEAM_RETURN),
        "episode_return_mean": er.get("episode_return_mean"),
        "time_s": time_offset_s + (result.get("time_total_s") or 0.0),
        "iter_time_s": result.get("time_this_iter_s"),
    }
    if WIN in er:
        row["win_rate"] = er[WIN]
    ev = (result.get("evaluation") or {}).get("env_runners") or {} if evaluated else {}
    if TEAM_RETURN in ev:
        row["eval_team_return"] = ev[TEAM_RETURN]
        if WIN in ev:
            row["eval_win_rate"] = ev[WIN]
    return row


def local_path_or_uri(path: str) -> str:
    """A URI as given; a local path made absolute (from the working directory, ~ expanded).
    RLlib hands checkpoint paths to pyarrow, which takes only absolute paths and URIs."""
    return path if is_uri(path) else str(Path(os.path.expanduser(path)).resolve())


def run_settings(
    *,
    stop_iters: int | None = None,
    stop_timesteps: int | None = None,
    checkpoint_every: int | None = None,
    resume_dir: Path | None = None,
) -> dict[str, Any]:
    """The run's stop criterion and checkpoint cadence. A resumed run keeps its own (saved
    in its run.json); stop flags given now replace its stop criterion, and a cadence given
    now its cadence. A new run: the flags, by default 400k env steps and every 10 iterations."""
    saved: dict[str, Any] = {}
    if resume_dir is not None and (resume_dir / RUN_SETTINGS).is_file():
        saved = json.loads((resume_dir / RUN_SETTINGS).read_text())
    for flag, value in (("--stop-iters", stop_iters), ("--stop-timesteps", stop_timesteps)):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be a positive number; got {value}")
    if checkpoint_every is not None and checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0 (0: at the end only); got {checkpoint_every}")
    if stop_iters is None and stop_timesteps is None:
        if saved:
            stop_iters, stop_timesteps = saved.get("stop_iters"), saved.get("stop_timesteps")
        else:
            stop_timesteps = DEFAULT_STOP_TIMESTEPS
    if checkpoint_every is None:
        checkpoint_every = saved.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY)
    return {
        "stop_iters": stop_iters,
        "stop_timesteps": stop_timesteps,
        "checkpoint_every": checkpoint_every,
        "mirror": saved.get("mirror"),
    }


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def progress_until(out_dir: Path, iteration: int) -> list[dict]:
    """The run's progress rows up to `iteration` (its checkpoint's). Rows of later iterations,
    trained and then lost with the process that trained them, are dropped, so that the
    resumed run writes one row per iteration."""
    rows = read_progress(out_dir)
    kept = [r for r in rows if (r.get("iteration") or 0) <= iteration]
    if kept != rows:
        write_atomically(out_dir / "progress.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in kept))
    return kept


def read_progress(out_dir: Path) -> list[dict]:
    """The run's progress rows (a line cut by a kill mid-write is skipped)."""
    path = out_dir / "progress.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def save_checkpoint(algo, path: Path) -> None:
    """Write a checkpoint so that `path` always holds a complete one: save beside it, then
    swap directories (a crash mid-save leaves the previous checkpoint in place)."""
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp))
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def last_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint of a run (see `save_checkpoint`), as an absolute path:
    Ray's checkpoint loader reads a relative one as a URI and fails."""
    for name in ("checkpoint", "checkpoint.old"):
        if (run_dir / name).is_dir():
            return (run_dir / name).absolute()
    raise FileNotFoundError(f"No checkpoint in {run_dir} to resume from")


class InterruptLatch:
    """Ctrl-C raises KeyboardInterrupt, as by default, and is also remembered. Python discards an
    exception raised inside a gc callback, and JAX (which RLlib imports) installs one: a Ctrl-C
    that lands there would be lost and the run go on. `check()` re-raises a remembered one."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.received:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptLatch:
        if threading.current_thread() is threading.main_thread():  # handlers only from the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    config,
    *,
    stop_iters: int | None,
    stop_timesteps: int | None,
    out_dir: Path,
    quiet: bool = False,
    checkpoint_every: int | None = 10,
    resume: bool = False,
    mirror: str | None = None,
) -> dict:
    """Train until a stop criterion (counted over the whole run, resumed or not); append to
    progress.jsonl, checkpoint every `checkpoint_every` iterations and at the end (and
    upload the run to `mirror`, a URI, after each). With `resume`, continue the run in
    `out_dir` from its last checkpoint. The stop criterion, cadence and mirror are kept in
    the run's run.json (see `run_settings`)."""
    out_dir = Path(local_path_or_uri(str(out_dir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"stop_iters": stop_iters, "stop_timesteps": stop_timesteps, "checkpoint_every": checkpoint_every}
    write_atomically(out_dir / RUN_SETTINGS, json.dumps({**settings, "mirror": mirror}, indent=1))
    if resume:
        from ray.rllib.algorithms.algorithm import Algorithm

        algo = Algorithm.from_checkpoint(str(last_checkpoint(out_dir)))
    else:
        algo = config.build_algo()
    checkpoint = out_dir / "checkpoint"
    rows = progress_until(out_dir, algo.iteration) if resume else []
    last: dict[str, Any] = dict(rows[-1]) if rows else {}
    time_offset = float(last.get("time_s") or 0.0)
    shown: float | None = None

    def done() -> bool:
        return (stop_iters is not None and algo.iteration >= stop_iters) or (
            stop_timesteps is not None and (last.get("env_steps") or 0) >= stop_timesteps
        )

    try:
        with open(out_dir / "progress.jsonl", "a") as log, InterruptLatch() as interrupt:
            while not done():
                result = algo.train()
                interrupt.check()  # a Ctrl-C that Python discarded: the iteration counts as interrupted
                last = summarize(result, time_offset, evaluated=evaluates(algo.config, algo.iteration))
                log.write(json.dumps(last, default=float) + "\n")
                log.flush()
                ret = last["team_return"]
                if ret is not None and ret == ret:  # not NaN: this iteration ended episodes
                    shown = round(float(ret), 2)
                if not quiet:
                    # Short iterations (off-policy) often end no episode: show the latest return.
                    print(progress_line(last, shown), flush=True)
                if checkpoint_every and last["iteration"] % checkpoint_every == 0 and not done():
                    save_checkpoint(algo, checkpoint)
                    write_curves(out_dir)
                    mirror_run(out_dir, mirror)
        save_checkpoint(algo, checkpoint)
        write_curves(out_dir)
        last["checkpoint"] = f"{mirror}/checkpoint" if mirror else str(checkpoint)
        with open(out_dir / "result.json", "w") as f:
            json.dump(last, f, default=float, indent=1)
        mirror_run(out_dir, mirror)
    finally:
        algo.stop()
    return last


def evaluates(config, iteration: int) -> bool:
    """Whether the iteration numbered `iteration` (from 1) ran an evaluation (RLlib's rule)."""
    interval = config.evaluation_interval
    return bool(interval) and iteration % interval == 0


def progress_line(row: dict[str, Any], shown_return: float | None) -> str:
    """The per-iteration line: env steps, the latest training return (and win rate), the
    evaluation's when this iteration evaluated, the run's time."""
    line = f"iter {row['iteration']:4d}  env steps {int(row['env_steps'] or 0):9d}  team return {shown_return}"
    if row.get("win_rate") is not None:
        line += f"  win rate {row['win_rate']:.2f}"
    if row.get("eval_team_return") is not None:
        line += f"  eval return {row['eval_team_return']:.2f}"
        if row.get("eval_win_rate") is not None:
            line += f"  eval win rate {row['eval_win_rate']:.2f}"
    return line + f"  time {row['time_s']:7.1f}s"


CURVES = "curves.png"


def write_curves(out_dir: Path) -> Path | None:
    """The run's learning curves as `curves.png` in its directory: training and evaluation
    team return against env steps, and the win rates when the env has them. Written beside
    and swapped in, so a reader never sees half a file. None when nothing is logged yet."""
    rows = read_progress(out_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(r["env_steps"], r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
        return [x for x, _ in pts], [y for _, y in pts]

    panels = [("return", "team_return", "eval_team_return")]
    if any(r.get("win_rate") is not None or r.get("eval_win_rate") is not None for r in rows):
        panels.append(("win rate", "win_rate", "eval_win_rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (label, train_key, eval_key) in zip(axes[0], panels, strict=True):
        ax.plot(*series(train_key), label="training episodes")
        x, y = series(eval_key)
        if x:
            ax.plot(x, y, "o-", label="evaluation (deterministic)")
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"team {label}" if label == "return" else label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(out_dir.name, fontsize=9)
    fig.tight_layout()
    path, tmp = out_dir / CURVES, out_dir / (CURVES + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def is_uri(path: str) -> bool:
    return "://" in path


def default_out_dir(storage_path: str, algo: str, env: str, task: str | None) -> tuple[Path, str | None]:
    """The run's directory, and for a cloud `storage_path` (``s3://…``, ``gs://…``, any URI
    pyarrow reads) the URI it is mirrored to: the run is written to a local staging copy
    (under $HARL_RLLIB_STAGING, default ~/.cache/harl_rllib/runs) and uploaded after every
    checkpoint."""
    name = f"{algo}_{env}_{task or 'default'}_{time.strftime('%Y%m%d-%H%M%S')}"
    if is_uri(storage_path):
        staging = Path(os.path.expanduser(os.environ.get("HARL_RLLIB_STAGING", "~/.cache/harl_rllib/runs")))
        return staging / name, f"{storage_path.rstrip('/')}/{name}"
    return Path(local_path_or_uri(storage_path)) / name, None


def mirror_run(out_dir: Path, uri: str | None) -> None:
    """Upload the run directory (progress, result, checkpoint) to `uri`."""
    if uri is None:
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    fs.create_dir(path, recursive=True)
    pyarrow.fs.copy_files(str(out_dir), path, destination_filesystem=fs)
