"""Evaluate a trained team from its checkpoint, as HARL reports it: episodes with deterministic
actions on the run's own env and task, the mean team return, the win rate where the env has
one, 95% confidence intervals; and, on request, an animation of the first episodes.

`evaluate.py` is the command. The policy is restored in this process, without Ray workers:
the run's config comes from the checkpoint (a pickle: only evaluate checkpoints you trust),
one env runner is built from it, and the actors' weights are loaded from the learner's copy.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.callbacks import RLlibCallback

from harl_rllib.envs.contract import EPISODE_STATS_KEY
from harl_rllib.run import WIN, last_checkpoint

# Inside a checkpoint written by `Algorithm.save_to_path` (train.py's `save_checkpoint`).
CHECKPOINT_MARKER = "rllib_checkpoint.json"
MODULES = Path("learner_group") / "learner" / "rl_module"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory: `path` itself, or a run directory's last checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if (p / CHECKPOINT_MARKER).is_file():
        return p.absolute()  # as `last_checkpoint`'s
    if p.is_dir():
        try:
            return last_checkpoint(p)
        except FileNotFoundError:
            pass
    raise ValueError(
        f"{path} is neither a checkpoint (a directory holding {CHECKPOINT_MARKER}) nor a run "
        "directory of train.py (holding checkpoint/)"
    )


def load_config(checkpoint: Path) -> AlgorithmConfig:
    """The run's AlgorithmConfig, as `Algorithm.from_checkpoint` rebuilds it (unpickled)."""
    with open(checkpoint / "class_and_ctor_args.pkl", "rb") as f:
        ctor = pickle.load(f)
    (state, *_), _ = ctor["ctor_args_and_kwargs"]
    return AlgorithmConfig.from_state(state)


class RecordFrames(RLlibCallback):
    """Keeps a frame after every reset and step of env 0, one list per episode, for the first
    `max_episodes` episodes (set on the class by `evaluate`: the env runner builds its own
    instance, in this process)."""

    episodes: list[list[np.ndarray]] = []
    max_episodes = 1

    def on_episode_start(self, *, env=None, env_index: int = 0, **kwargs) -> None:
        if env_index == 0 and len(RecordFrames.episodes) < RecordFrames.max_episodes:
            RecordFrames.episodes.append([render_frame(env, 0)])
        else:
            RecordFrames.episodes.append([])  # keeps the count; nothing recorded

    def on_episode_step(self, *, env=None, env_index: int = 0, **kwargs) -> None:
        if env_index == 0 and len(RecordFrames.episodes) <= RecordFrames.max_episodes:
            current = RecordFrames.episodes[-1]
            if current:
                current.append(render_frame(env, 0))


def render_frame(vector_env: Any, index: int) -> np.ndarray:
    """An RGB frame of sub-env `index`: an env's own batched vector env draws it (SMAX),
    else the sub-env itself (built with env_config render_mode="rgb_array")."""
    if hasattr(vector_env, "render_env"):
        return np.asarray(vector_env.render_env(index))
    return np.asarray(vector_env.envs[index].unwrapped.render())


def build_runner(
    checkpoint: Path,
    *,
    episodes: int,
    seed: int | None = None,
    num_envs: int | None = None,
    render: bool = False,
    render_episodes: int = 1,
) -> Any:
    """An evaluation env runner of the run in this process, with the checkpoint's actors.
    It is built from the run's evaluation config, so its envs are seeded as the run's
    evaluation runners' (RLlib: the seed + 1M), and by default as many: with the run's seed
    and as many episodes, it plays the battles the run's evaluations played."""
    run_config = load_config(checkpoint)
    if seed is not None:
        run_config.debugging(seed=seed)
    run_config.evaluation(evaluation_duration=episodes, evaluation_duration_unit="episodes")
    config = run_config.get_evaluation_config_object()
    config.env_runners(num_env_runners=0)
    if render:
        config.env_runners(num_envs_per_env_runner=1)  # one env to record
    elif num_envs is not None:
        config.env_runners(num_envs_per_env_runner=max(1, num_envs))
    if render:
        config.environment(env_config={**(config.env_config or {}), "render_mode": "rgb_array"})
        RecordFrames.episodes, RecordFrames.max_episodes = [], render_episodes
        config.callbacks([*_as_list(config.callbacks_class), RecordFrames])
    runner = config.env_runner_cls(config=config)
    modules = checkpoint / MODULES
    for mid in runner.module.keys():
        runner.module[mid].restore_from_path(modules / mid)
    connectors = checkpoint / "env_runner" / "env_to_module_connector"
    if connectors.is_dir():  # stateful connectors (e.g. observation filters), if any
        runner.restore_from_path(connectors, component="env_to_module_connector")
    return runner


def _as_list(callbacks: Any) -> list:
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def episode_results(episodes: Sequence[Any]) -> tuple[list[float], list[int], list[float]]:
    """Per finished episode: the team return (the agents' mean, as the training metric), the
    length in env steps and, where the env reports it, whether the battle was won."""
    returns, lengths, wins = [], [], []
    for ep in episodes:
        agents = list(ep.agent_episodes.values())
        returns.append(float(np.mean([sa.get_return() for sa in agents])))
        lengths.append(int(ep.env_steps()))
        info = agents[0].get_infos(-1)
        stats = info.get(EPISODE_STATS_KEY) if isinstance(info, dict) else None
        if stats and WIN in stats:
            wins.append(float(stats[WIN]))
    return returns, lengths, wins


def interval95(values: Sequence[float]) -> tuple[float, list[float] | None]:
    """Mean and its 95% confidence interval (Student's t); no interval (None) for one value, so
    that `--json` stays valid JSON (no NaN) and the summary says so instead of printing [nan, nan]."""
    from scipy import stats

    x = np.asarray(values, float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None
    if float(x.std()) == 0.0:
        return mean, [mean, mean]
    low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=stats.sem(x))
    return mean, [float(low), float(high)]


def format_interval(ci: list[float] | None, digits: int) -> str:
    return "no 95% CI (one episode)" if ci is None else f"95% CI [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def evaluate(
    path: str | Path,
    *,
    episodes: int = 100,
    explore: bool = False,
    seed: int | None = None,
    num_envs: int | None = None,
    render: str | Path | None = None,
    render_episodes: int = 1,
    fps: int = 10,
    render_scale: float = 1.0,
) -> dict[str, Any]:
    """Run `episodes` episodes of the checkpoint's policy (deterministic unless `explore`)
    and summarize them; with `render`, also write the first `render_episodes` as an animation
    (GIF, or MP4 with imageio-ffmpeg installed). Envs are seeded from `seed`: the same seed
    plays the same episodes (default: the run's seed, as its evaluations)."""
    if episodes <= 0:
        raise ValueError(f"--episodes must be a positive number; got {episodes}")
    if not 0 < render_scale <= 4:
        raise ValueError(f"--render-scale must be in (0, 4]; got {render_scale}")
    if render is not None:
        check_animation_path(render)
    checkpoint = resolve_checkpoint(path)
    runner = build_runner(
        checkpoint,
        episodes=episodes,
        seed=seed,
        num_envs=num_envs,
        render=render is not None,
        render_episodes=render_episodes,
    )
    try:
        done = runner.sample(num_episodes=episodes, explore=explore)
        returns, lengths, wins = episode_results(done[:episodes])
        config, seed = runner.config, runner.config.seed
    finally:
        runner.stop()
    mean, ci = interval95(returns)
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "env": str(config.env).removeprefix("harl_"),
        "task": (config.env_config or {}).get("task"),
        "algorithm": type(config).__name__.removesuffix("Config"),
        "episodes": len(returns),
        "deterministic": not explore,
        "seed": seed,
        "team_return_mean": mean,
        "team_return_ci95": ci,
        "team_return_std": float(np.std(returns)),
        "team_returns": returns,
        "episode_lengths": lengths,
    }
    if wins:
        w, wci = interval95(wins)
        out |= {"win_rate": w, "win_rate_ci95": None if wci is None else [max(0.0, wci[0]), min(1.0, wci[1])]}
    if render is not None:
        frames = [f for ep in RecordFrames.episodes[:render_episodes] for f in ep]
        out["render"] = str(write_animation(render, frames, fps, render_scale))
        out["frames"] = len(frames)
    return out


def check_animation_path(path: str | Path) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"--render writes .gif or .mp4; got {path}")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(
                "--render .mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); .gif needs nothing"
            ) from None


def write_animation(path: str | Path, frames: Sequence[np.ndarray], fps: int, scale: float = 1.0) -> Path:
    """Frames (equal-shaped H×W×3 uint8) as a looping GIF or an MP4, by imageio; `scale`
    resizes them (Pillow) first, e.g. 0.5 for a GIF a quarter the size."""
    import imageio.v3 as iio
    from PIL import Image

    if not frames:
        raise RuntimeError("no frames were recorded")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [np.asarray(f, np.uint8)[..., :3] for f in frames]
    if scale != 1.0:
        h, w = images[0].shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        images = [np.asarray(Image.fromarray(im).resize(size, Image.Resampling.LANCZOS)) for im in images]
    stack = np.stack(images)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, stack, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, stack, fps=fps, codec="libx264", plugin="FFMPEG")
    return path


def format_summary(result: dict[str, Any]) -> str:
    mode = "deterministic" if result["deterministic"] else "sampled"
    lines = [
        f"{result['algorithm']} on {result['env']} {result['task'] or ''}: {result['episodes']} {mode} episodes "
        f"(seed {result['seed']})",
        f"team return  {result['team_return_mean']:.2f}  {format_interval(result['team_return_ci95'], 2)}  "
        f"std {result['team_return_std']:.2f}",
    ]
    if "win_rate" in result:
        lines.append(f"win rate     {result['win_rate']:.3f}  {format_interval(result['win_rate_ci95'], 3)}")
    if "render" in result:
        lines.append(f"animation    {result['render']} ({result['frames']} frames)")
    return "\n".join(lines)
