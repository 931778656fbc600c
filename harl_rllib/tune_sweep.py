"""Ray Tune sweeps from YAML: search spaces, ASHA or PBT, checkpoints, restarts, wandb.

A sweep is data (which algorithm, which fields, which ranges, when to stop), so it lives in a
file (see tune_configs/), is checked completely before Ray starts (unknown algo, env, task or
field, an invalid value anywhere in a range, a PBT run that could lose its checkpoints: all
raise a ValueError), and runs the same from Python and from ``train.py --tune FILE``.

YAML layout (only ``algo``, ``env`` and ``stop`` are required)::

    name: happo_mpe_lr      # experiment dir under storage_path (default: the file's stem)
    algo: happo             # happo | hatrpo | haa2c | mappo | hatd3 | ... (harl_rllib.run.ALGO_CONFIGS)
    env: mpe                # mpe | toy | smax | smac | smacv2 | mamujoco (harl_rllib.envs.registry)
    task: simple_spread_v3
    continuous_actions: false
    env_config: {}          # more env settings, merged over {task: ...} (e.g. max_episode_steps)
    config:                 # fixed values of any config field, as `train.py --config` takes them;
      num_epochs: 5         #   `seed` sets config.debugging(seed=...)
    resources:              # per-trial resources: the config fields in RESOURCE_FIELDS
      num_env_runners: 0
    search:                 # field -> space; the same field names as `config`
      lr: {grid: [1.0e-4, 5.0e-4]}         # grid: every value, crossed with the other grid fields
      entropy_coeff: {choice: [0.0, 0.01]} # choice, uniform [a, b], loguniform [a, b],
      num_epochs: {randint: [5, 16]}       #   randint [a, b) (upper bound excluded, as tune.randint)
      seed: {grid: [1, 2, 3]}              # a seed sweep
      actor_model: {choice: [{hidden_sizes: [64, 64]}]}  # dict fields: merged over the default
    num_samples: 1          # draws of the non-grid spaces per grid point (Tune's num_samples)
    max_concurrent_trials: 2           # default: as many as the cluster's CPUs allow
    time_budget_s: 3600                # optional wall-clock budget for the whole sweep
    metric: env_runners/team_episode_return_mean   # the default; nested result keys joined by "/"
    mode: max                          # the default
    scheduler: {type: asha, grace_period: 2, max_t: 50}   # or fifo / none (the default), or
      # {type: pbt, perturbation_interval: 2, hyperparam_mutations: {lr: [1.0e-4, 5.0e-4]}}
    stop: {num_env_steps_sampled_lifetime: 400000}        # or training_iteration, or any result key
    checkpoint: {frequency: 5, num_to_keep: 3, at_end: true}
    failure: {max_failures: 2}         # a failing trial restarts from its last checkpoint
    wandb: {project: harl_rllib, group: my_group, tags: [mpe], mode: offline}   # optional

Scheduler settings: ASHA takes time_attr (training_iteration), grace_period, max_t,
reduction_factor, brackets, stop_last_trials. PBT takes perturbation_interval,
hyperparam_mutations (field -> a list, which PBT walks one neighbour at a time, or a space as
above), quantile_fraction, resample_probability, perturbation_factors, burn_in_period,
time_attr (training_iteration here, not Tune's time_total_s), synch, log_config. ``metric`` and
``mode`` may sit in the scheduler section instead of at the top. PBT copies the best trials'
checkpoints into the worst ones, so it needs checkpoints kept: without a ``checkpoint``
section it gets {frequency: perturbation_interval, num_to_keep: 3}; a given one must keep at
least 2 (3 leaves room for a trial that restores late) and save at least every
perturbation_interval iterations.

After the sweep, ``sweep_curves.png`` in the experiment dir shows every trial's curve over env
steps, labelled by its searched values (`plot_sweep`; needs matplotlib).

YAML 1.1 reads ``1e-4`` as a string; `load_sweep` reads it as the float it means.
``prepare_sweep(load_sweep(path))`` checks a file completely without running anything.

wandb: results go to Weights & Biases through Ray's `WandbLoggerCallback`, one run per trial,
grouped by ``group`` (default: the sweep's name). Without WANDB_API_KEY and without a
`wandb login`, runs are written offline under ``dir`` (default: $WANDB_DIR, else the
experiment dir) as ``wandb/offline-run-*``; upload them later with ``wandb sync``. The key is
never read, passed or printed here: wandb finds it itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harl_rllib.run import apply_overrides, build_config, is_uri

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from ray.tune import ResultGrid

DEFAULT_METRIC = "env_runners/team_episode_return_mean"
EVAL_METRIC = "evaluation/env_runners/team_episode_return_mean"
WIN_METRIC = "env_runners/battle_won"
# The x axis of the sweep figure: env steps as the env runners count them, else Tune's counters.
STEP_KEYS = ("env_runners/num_env_steps_sampled_lifetime", "num_env_steps_sampled_lifetime", "training_iteration")
SWEEP_FIGURE = "sweep_curves.png"
SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
RESOURCE_FIELDS = (
    "num_env_runners",
    "num_envs_per_env_runner",
    "num_cpus_per_env_runner",
    "num_gpus_per_env_runner",
    "num_learners",
    "num_cpus_per_learner",
    "num_gpus_per_learner",
    "num_cpus_for_main_process",
)
TOP_KEYS = {
    "name",
    "algo",
    "env",
    "task",
    "continuous_actions",
    "env_config",
    "config",
    "resources",
    "search",
    "num_samples",
    "max_concurrent_trials",
    "time_budget_s",
    "metric",
    "mode",
    "scheduler",
    "stop",
    "checkpoint",
    "failure",
    "wandb",
}
ASHA_KEYS = {"time_attr", "grace_period", "max_t", "reduction_factor", "brackets", "stop_last_trials"}
PBT_KEYS = {
    "perturbation_interval",
    "hyperparam_mutations",
    "quantile_fraction",
    "resample_probability",
    "perturbation_factors",
    "burn_in_period",
    "time_attr",
    "synch",
    "log_config",
}
CHECKPOINT_KEYS = {"frequency", "num_to_keep", "at_end"}
FAILURE_KEYS = {"max_failures", "fail_fast"}
WANDB_KEYS = {"project", "group", "tags", "mode", "dir", "entity", "notes"}
# AlgorithmConfig.to_dict() renames a few fields (and keeps properties such as
# train_batch_size_per_learner under their private names); the param space uses its names.
_PARAM_KEY = {"lambda_": "lambda", "input_": "input", "framework_str": "framework", "callbacks_class": "callbacks"}


class _SweepLoader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-4 (no dot) as a float, as YAML 1.2 and people do."""


_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep file into a dict (the name defaults to the file's stem); `prepare_sweep` checks it."""
    with open(path) as f:
        try:
            spec = yaml.load(f, Loader=_SweepLoader)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep file is a mapping (algo, env, task, config, search, ...)")
    spec.setdefault("name", Path(path).stem)
    return spec


@dataclass
class SweepPlan:
    """Everything a Tuner needs, built and checked without Ray (see `prepare_sweep`)."""

    name: str
    trainable: str
    config: Any  # the validated AlgorithmConfig with the fixed values
    param_space: dict[str, Any]
    searched: list[str]  # param-space keys whose values differ between trials
    metric: str
    mode: str
    scheduler: Any
    stop: dict[str, float]
    num_samples: int
    max_concurrent_trials: int | None
    time_budget_s: float | None
    checkpoint: dict[str, Any]
    failure: dict[str, Any]
    wandb: dict[str, Any] | None = field(default=None)


# ---- checking the spec ----------------------------------------------------------------


def _section(spec: dict, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"Sweep section {key!r} must be a mapping; got {value!r}")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"Unknown key(s) in sweep section {key!r}: {unknown}; allowed: {sorted(allowed)}")
    return dict(value)


def _number(where: str, value: Any, *, integer: bool = False, minimum: float | None = None) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where} must be {kind}{'' if minimum is None else f' >= {minimum}'}; got {value!r}")
    return int(value) if integer else value


def param_key(field_name: str, param_space: dict[str, Any]) -> str:
    key = _PARAM_KEY.get(field_name, field_name)
    if key not in param_space and f"_{key}" in param_space:  # a property over a private field
        key = f"_{key}"
    if key not in param_space:
        raise ValueError(f"Config field {field_name!r} cannot be searched (not in the algorithm's config dict)")
    return key


def _check_value(config, field_name: str, value: Any, where: str) -> None:
    """Validate the config with one candidate value, so a bad range fails now, not in a trial."""
    trial = config.copy(copy_frozen=False)
    try:
        apply_overrides(trial, {field_name: value})
        trial.validate()
    except ValueError as e:
        raise ValueError(f"{where}: value {value!r} is invalid: {e}") from e


def _space(config, field_name: str, spec: Any, where: str, *, allow_list: bool = False) -> Any:
    """A Tune search space from `{kind: values}`, each candidate value validated against the config."""
    from ray import tune

    if allow_list and isinstance(spec, list):
        spec = {"list": spec}
    if not isinstance(spec, dict) or len(spec) != 1:
        kinds = ", ".join(SPACE_KINDS)
        raise ValueError(f"{where} must be one of {{{kinds}}}: values (e.g. {{grid: [1, 2]}}); got {spec!r}")
    ((kind, values),) = spec.items()
    if kind not in SPACE_KINDS + (("list",) if allow_list else ()):
        raise ValueError(f"{where}: unknown space {kind!r}; known: {', '.join(SPACE_KINDS)}")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: {kind} needs a non-empty list; got {values!r}")
    base = getattr(config, field_name, None)
    if kind in ("grid", "choice", "list"):
        if isinstance(base, dict):  # e.g. actor_model: a partial dict means "these keys changed"
            values = [{**base, **v} if isinstance(v, dict) else v for v in values]
        for v in values:
            _check_value(config, field_name, v, where)
        return {"grid": tune.grid_search, "choice": tune.choice, "list": list}[kind](values)
    if len(values) != 2:
        raise ValueError(f"{where}: {kind} needs [low, high]; got {values!r}")
    low, high = (_number(f"{where} bound", v, integer=kind == "randint") for v in values)
    if not low < high:
        raise ValueError(f"{where}: {kind} needs low < high; got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}: loguniform needs low > 0; got {values!r}")
    for v in (low, high - 1) if kind == "randint" else (low, high):
        _check_value(config, field_name, v, where)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](low, high)


def _metric_mode(spec: dict, sched: dict) -> tuple[str, str]:
    metric, mode = spec.get("metric"), spec.get("mode")
    for key, top in (("metric", metric), ("mode", mode)):
        if key in sched:
            if top is not None and sched[key] != top:
                raise ValueError(f"Sweep {key!r} is {top!r} at the top but {sched[key]!r} in 'scheduler'")
    metric = sched.pop("metric", metric) or DEFAULT_METRIC
    mode = sched.pop("mode", mode) or "max"
    if not isinstance(metric, str):
        raise ValueError(f"Sweep 'metric' must be a result key such as {DEFAULT_METRIC!r}; got {metric!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"Sweep 'mode' must be 'max' or 'min'; got {mode!r}")
    return metric, mode


def _checkpoint(spec: dict, pbt_interval: float | None, pbt_time_attr: str | None) -> dict[str, Any]:
    if pbt_interval is not None and "checkpoint" not in spec:
        return {"frequency": int(math.ceil(pbt_interval)), "num_to_keep": 3, "at_end": True}
    ck = _section(spec, "checkpoint", CHECKPOINT_KEYS)
    frequency = _number("checkpoint.frequency", ck.get("frequency", 0), integer=True, minimum=0)
    keep = ck.get("num_to_keep")
    if keep is not None:
        keep = _number("checkpoint.num_to_keep", keep, integer=True, minimum=1)
    at_end = ck.get("at_end", True)
    if not isinstance(at_end, bool):
        raise ValueError(f"checkpoint.at_end must be true or false; got {at_end!r}")
    if pbt_interval is not None:
        if keep is not None and keep < 2:
            raise ValueError(
                f"PBT needs checkpoint.num_to_keep >= 2 (or unset: keep all); got {keep}. A trial that exploits "
                "another restores that trial's checkpoint, which must not be deleted by then."
            )
        if frequency < 1 or (pbt_time_attr == "training_iteration" and frequency > pbt_interval):
            raise ValueError(
                f"PBT needs checkpoint.frequency between 1 and perturbation_interval ({pbt_interval}); got "
                f"{frequency}. Set it to the perturbation_interval."
            )
    return {"frequency": frequency, "num_to_keep": keep, "at_end": at_end}


def _scheduler(spec: dict, config, param_space: dict) -> tuple[Any, str, str, list[str], float | None, str | None]:
    """(scheduler, metric, mode, keys PBT mutates, PBT interval, PBT time_attr)."""
    raw = spec.get("scheduler")
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "fifo")):
        raw = {"type": "fifo"}
    if not isinstance(raw, dict):
        raise ValueError(f"Sweep 'scheduler' must be a mapping with a 'type' (asha, pbt, fifo); got {raw!r}")
    sched = dict(raw)
    kind = str(sched.pop("type", "")).lower()
    metric, mode = _metric_mode(spec, sched)
    if kind in ("fifo", "none"):
        if sched:
            raise ValueError(f"The fifo scheduler takes no settings; got {sorted(sched)}")
        return None, metric, mode, [], None, None
    if kind == "asha":
        from ray.tune.schedulers import ASHAScheduler

        unknown = sorted(set(sched) - ASHA_KEYS)
        if unknown:
            raise ValueError(f"Unknown ASHA setting(s): {unknown}; allowed: {sorted(ASHA_KEYS)}")
        grace, max_t = sched.get("grace_period", 1), sched.get("max_t", 100)
        _number("scheduler.grace_period", grace, minimum=1)
        _number("scheduler.max_t", max_t, minimum=1)
        if grace > max_t:
            raise ValueError(f"ASHA needs grace_period <= max_t; got {grace} > {max_t}")
        return ASHAScheduler(**sched), metric, mode, [], None, None
    if kind == "pbt":
        from ray.tune.schedulers import PopulationBasedTraining

        unknown = sorted(set(sched) - PBT_KEYS)
        if unknown:
            raise ValueError(f"Unknown PBT setting(s): {unknown}; allowed: {sorted(PBT_KEYS)}")
        if "perturbation_interval" not in sched:
            raise ValueError("PBT needs scheduler.perturbation_interval (in time_attr units: training iterations)")
        interval = _number("scheduler.perturbation_interval", sched["perturbation_interval"], minimum=1)
        sched.setdefault("time_attr", "training_iteration")
        raw_mutations = sched.pop("hyperparam_mutations", None)
        if not isinstance(raw_mutations, dict) or not raw_mutations:
            raise ValueError("PBT needs scheduler.hyperparam_mutations: {field: [values] or {uniform: [a, b]}, ...}")
        mutations, keys = {}, []
        for name, values in raw_mutations.items():
            where = f"scheduler.hyperparam_mutations.{name}"
            if not hasattr(config, name) and name != "lambda":
                raise ValueError(f"{where}: unknown config field {name!r}")
            key = param_key(name, param_space)
            mutations[key] = _space(config, name, values, where, allow_list=True)
            keys.append(key)
        if "perturbation_factors" in sched:
            sched["perturbation_factors"] = tuple(sched["perturbation_factors"])
        scheduler = PopulationBasedTraining(hyperparam_mutations=mutations, **sched)
        return scheduler, metric, mode, keys, interval, sched["time_attr"]
    raise ValueError(f"Unknown scheduler type {kind!r}; known: asha, pbt, fifo (or none)")


def _env_config(spec: dict, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The env_config build_config would make, plus the spec's env_config (None: nothing extra)."""
    extra = _section(spec, "env_config")
    if not extra:
        return None
    env_config: dict[str, Any] = {}
    if spec.get("continuous_actions"):
        env_config["continuous_actions"] = True
    if spec.get("task") is not None:
        env_config["task"] = spec["task"]
    if overrides.get("state_type") == "FP":
        env_config["state_type"] = "FP"
    return {**env_config, **extra}


def prepare_sweep(
    spec: dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
    wandb: bool | None = None,
) -> SweepPlan:
    """Check a sweep spec and build the param space and Tune objects; raises ValueError, starts no Ray.

    `overrides` (e.g. train.py's --config, --num-env-runners) win over the spec's config and
    resources. wandb: None logs to wandb when the spec has a ``wandb`` section and the package
    is installed (else says it skips it), True always (ImportError without the package), False never.
    """
    import harl_rllib

    if not isinstance(spec, dict):
        raise ValueError(f"A sweep spec is a mapping; got {type(spec).__name__}")
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise ValueError(f"Unknown sweep key(s): {unknown}; allowed: {sorted(TOP_KEYS)}")
    for key in ("algo", "env"):
        if not isinstance(spec.get(key), str):
            raise ValueError(f"Sweep needs {key!r} (a name, e.g. algo: happo, env: mpe)")
    fixed = _section(spec, "config")
    resources = _section(spec, "resources", set(RESOURCE_FIELDS))
    both = sorted(set(fixed) & set(resources))
    if both:
        raise ValueError(f"Field(s) {both} are set in both 'config' and 'resources'; keep one")
    search = _section(spec, "search")
    both = sorted((set(fixed) | set(overrides or {})) & set(search))
    if both:
        raise ValueError(f"Field(s) {both} are both fixed ('config' or overrides) and searched ('search'); keep one")
    config_overrides = {**fixed, **resources, **(overrides or {})}
    env_config = _env_config(spec, config_overrides)
    if env_config is not None:
        config_overrides["env_config"] = env_config
    seed = config_overrides.pop("seed", 1)
    config = build_config(
        algo=spec["algo"],
        env=spec["env"],
        task=spec.get("task"),
        seed=seed,
        continuous_actions=bool(spec.get("continuous_actions", False)),
        overrides=config_overrides,
    )
    param_space = config.to_dict()

    searched: list[str] = []
    for name_, space in search.items():
        if not hasattr(config, name_) and name_ != "lambda":
            raise ValueError(f"search.{name_}: unknown config field {name_!r}")
        key = param_key(name_, param_space)
        param_space[key] = _space(config, name_, space, f"search.{name_}")
        searched.append(key)

    scheduler, metric, mode, mutated, pbt_interval, pbt_time_attr = _scheduler(spec, config, param_space)
    searched += [k for k in mutated if k not in searched]
    checkpoint = _checkpoint(spec, pbt_interval, pbt_time_attr)

    stop = _section(spec, "stop")
    if not stop:
        raise ValueError("Sweep needs 'stop', e.g. {training_iteration: 100} or {num_env_steps_sampled_lifetime: 4e5}")
    for key, value in stop.items():
        _number(f"stop.{key}", value, minimum=0)
    failure = _section(spec, "failure", FAILURE_KEYS)
    if "max_failures" in failure:
        _number("failure.max_failures", failure["max_failures"], integer=True, minimum=-1)
    num_samples = _number("num_samples", spec.get("num_samples", 1), integer=True, minimum=1)
    concurrent = spec.get("max_concurrent_trials")
    if concurrent is not None:
        concurrent = _number("max_concurrent_trials", concurrent, integer=True, minimum=1)
    budget = spec.get("time_budget_s")
    if budget is not None:
        budget = _number("time_budget_s", budget, minimum=0)
    wandb_settings = _wandb_settings(spec, wandb)
    trainable = next(n for n, cls in harl_rllib.ALGORITHMS.items() if cls is config.algo_class)
    return SweepPlan(
        name=str(name or spec.get("name") or f"{spec['algo']}_{spec['env']}_{spec.get('task') or 'default'}"),
        trainable=trainable,
        config=config,
        param_space=param_space,
        searched=searched,
        metric=metric,
        mode=mode,
        scheduler=scheduler,
        stop=stop,
        num_samples=num_samples,
        max_concurrent_trials=concurrent,
        time_budget_s=budget,
        checkpoint=checkpoint,
        failure=failure,
        wandb=wandb_settings,
    )


# ---- wandb ----------------------------------------------------------------------------


def _wandb_settings(spec: dict, wanted: bool | None) -> dict[str, Any] | None:
    """The wandb section to log with, or None; see `prepare_sweep`."""
    if wanted is False or (wanted is None and spec.get("wandb") is None):
        return None
    settings = _section(spec, "wandb", WANDB_KEYS)
    if not isinstance(settings.get("tags", []), list):
        raise ValueError(f"wandb.tags must be a list; got {settings['tags']!r}")
    if importlib.util.find_spec("wandb") is None:
        if wanted:
            raise ImportError("wandb logging needs the wandb package: pip install wandb")
        print("wandb is not installed: this sweep logs to files only (pip install wandb to log it there)")
        return None
    return settings


def _wandb_has_credentials() -> bool:
    """Whether wandb can reach an account (a key in the env or a `wandb login`); never reads the key out."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(getattr(getattr(wandb, "api", None), "api_key", None))
    except Exception:  # wandb's own settings may be unreadable: treat as not logged in
        return False


def _wandb_callback(settings: dict[str, Any], default_group: str, default_dir: Path) -> tuple[Any, str | None, Path]:
    """Ray's WandbLoggerCallback, offline unless wandb has credentials; (callback, mode, dir)."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = settings.get("mode") or os.environ.get("WANDB_MODE") or (None if _wandb_has_credentials() else "offline")
    run_dir = Path(os.path.expanduser(str(settings.get("dir") or os.environ.get("WANDB_DIR") or default_dir)))
    run_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"dir": str(run_dir.resolve())}
    if mode:
        kwargs["mode"] = mode  # also in the logging actors, which do not see this process's later env changes
    for key in ("entity", "notes"):
        if settings.get(key):
            kwargs[key] = settings[key]
    callback = WandbLoggerCallback(
        project=settings.get("project") or "harl_rllib",
        group=settings.get("group") or default_group,
        tags=[str(t) for t in settings.get("tags") or []],
        **kwargs,
    )
    return callback, mode, run_dir


@contextlib.contextmanager
def _env_vars(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the sweep only."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- running --------------------------------------------------------------------------


def run_sweep(
    spec: dict[str, Any],
    *,
    storage_path: str | os.PathLike = "./results",
    wandb: bool | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    verbose: int = 1,
):
    """Run the sweep with `ray.tune.Tuner`; print and return the `ResultGrid`.

    wandb: None uses the spec's ``wandb`` section if it has one; True logs to wandb (with the
    section's settings or defaults); False never does. Ray is started by Tune if it is not
    running (train.py starts it itself, or joins RAY_ADDRESS).
    """
    from ray import tune

    plan = prepare_sweep(spec, overrides=overrides, name=name, wandb=wandb)
    from harl_rllib.run import local_path_or_uri

    storage = local_path_or_uri(str(storage_path))  # Tune reads URIs (s3://, gs://) itself
    callbacks = []
    env: dict[str, str] = {
        # Long episodes (MaMuJoCo: 1000 steps) finish no episode in the first iterations, so the
        # metric is absent from those results; Tune would stop the sweep over it.
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
        # Tune's newer console output prints every config field of the best trial (hundreds of
        # RLlib settings) at each status update; the classic reporter shows the searched ones.
        "RAY_AIR_NEW_OUTPUT": "0",
    }
    wandb_dir: Path | None = None
    if plan.wandb is not None:
        local = Path(storage) if "://" not in storage else Path("~/.cache/harl_rllib/wandb").expanduser()
        callback, mode, wandb_dir = _wandb_callback(plan.wandb, plan.name, local / plan.name)
        callbacks.append(callback)
        if mode:
            env["WANDB_MODE"] = mode  # Ray's driver-side key check is skipped offline
        print(f"wandb: project {callback.project!r}, mode {mode or 'online'}, files under {wandb_dir}", flush=True)

    tuner = tune.Tuner(
        plan.trainable,
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            metric=plan.metric,
            mode=plan.mode,
            scheduler=plan.scheduler,
            num_samples=plan.num_samples,
            max_concurrent_trials=plan.max_concurrent_trials,
            time_budget_s=plan.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=storage,
            stop=plan.stop,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=plan.checkpoint["frequency"],
                num_to_keep=plan.checkpoint["num_to_keep"],
                checkpoint_at_end=plan.checkpoint["at_end"],
            ),
            failure_config=tune.FailureConfig(**plan.failure),
            callbacks=callbacks,
            verbose=verbose,
            progress_reporter=tune.CLIReporter(
                parameter_columns=plan.searched,
                metric_columns={
                    plan.metric: plan.metric.rsplit("/", 1)[-1],
                    "training_iteration": "iter",
                    "num_env_steps_sampled_lifetime": "env steps",
                    "time_total_s": "time (s)",
                },
                max_report_frequency=30,
            ),
        ),
    )
    with _env_vars(env):
        results = tuner.fit()
    report_best(results, plan)
    try:
        plot_sweep(results, plan.searched, plan.metric)
    except ImportError as e:  # matplotlib is an optional dependency: the sweep itself succeeded
        print(f"no {SWEEP_FIGURE}: {e}")
    if wandb_dir is not None and env.get("WANDB_MODE") == "offline":
        print(f"wandb offline runs: {wandb_dir / 'wandb'}; upload with `wandb sync {wandb_dir}/wandb/offline-run-*`")
    return results


def report_best(results, plan: SweepPlan) -> dict[str, Any] | None:
    """Print the best trial's metric and searched values (None when no trial reported the metric)."""
    print(f"sweep {plan.name}: {len(results)} trial(s), {len(results.errors)} failed; in {results.experiment_path}")
    try:
        best = results.get_best_result(metric=plan.metric, mode=plan.mode, scope="last", filter_nan_and_inf=True)
    except RuntimeError:
        print(f"no trial reported {plan.metric!r}")
        return None
    value = _lookup(best.metrics or {}, plan.metric)
    if value is None:
        print(f"no trial reported {plan.metric!r}")
        return None
    chosen = {k: best.config.get(k) for k in plan.searched}
    print(f"best trial: {plan.metric} = {value}  {chosen}  ({best.path})", flush=True)
    return {"metric": value, "config": chosen, "path": best.path}


def _lookup(metrics: dict[str, Any], key: str) -> Any:
    """A result value by its flattened "a/b" key."""
    if key in metrics:
        return metrics[key]
    node: Any = metrics
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# ---- the sweep figure -----------------------------------------------------------------


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_labels(configs: Sequence[Mapping[str, Any]], searched: Sequence[str]) -> list[str]:
    """One legend label per trial from its searched values ("lr=0.0005, seed=2"): dict fields
    (e.g. actor_model, merged over the defaults) show only the keys that differ between trials,
    and labels that would repeat (equal draws) get the trial's number. PBT trials show the
    values they ended with."""
    parts: list[list[str]] = [[] for _ in configs]
    for key in searched:
        values = [c.get(key) for c in configs]
        name = key.lstrip("_")  # a property's private field: the name people set
        if all(isinstance(v, dict) for v in values):
            varying = [
                k for k in dict.fromkeys(k for v in values for k in v) if len({repr(v.get(k)) for v in values}) > 1
            ]
            for part, v in zip(parts, values, strict=True):
                part += [f"{name}.{k}={_short(v.get(k))}" for k in varying]
        else:
            for part, v in zip(parts, values, strict=True):
                part.append(f"{name}={_short(v)}")
    labels = [", ".join(p) or f"trial {i}" for i, p in enumerate(parts)]
    counts = {label: labels.count(label) for label in labels}
    return [f"{label} #{i}" if counts[label] > 1 else label for i, label in enumerate(labels)]


def plot_trial_curves(
    trials: Sequence[tuple[str, pd.DataFrame]], out_png: str | os.PathLike, metric: str = DEFAULT_METRIC
) -> str:
    """Every trial's curve over env steps, one line per trial (`(label, history)`, a history
    being Tune's `metrics_dataframe`: one row per result, "/"-joined columns).

    Panels: `metric`, and the evaluation return and the win rate when any trial reports them,
    so a sweep's trials can be compared on all three without opening Tune's files. `out_png`
    may be a URI (the sweep's storage, e.g. s3://…). Returns where it was written."""
    from harl_rllib.results import _new_figure

    panels = [metric] + [m for m in (EVAL_METRIC, WIN_METRIC) if m != metric]
    panels = [m for m in panels if m == metric or any(_has(df, m) for _, df in trials)]
    fig, axes = _new_figure(len(panels))
    colors = _colors(len(trials))
    x_names = set()
    for (label, df), color in zip(trials, colors, strict=True):
        x_key = next((k for k in STEP_KEYS if _has(df, k)), None)
        if x_key is None:
            continue
        x_names.add(x_key)
        for ax, key in zip(axes[0], panels, strict=True):
            if _has(df, key):
                rows = df[[x_key, key]].dropna()
                ax.plot(rows[x_key], rows[key], color=color, label=label, marker="." if len(rows) < 20 else None)
    x_label = "env steps" if x_names <= set(STEP_KEYS[:2]) else " / ".join(sorted(x_names))
    for ax, key in zip(axes[0], panels, strict=True):
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    legend: dict[str, Any] = {}  # label -> line, over all panels (a trial may lack one metric)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        lines = [legend[label] for label, _ in trials if label in legend]
        names = [label for label, _ in trials if label in legend]
        fig.legend(lines, names, loc="outside right upper", fontsize="small", ncols=1 + len(lines) // 30)
    fig.suptitle(f"{len(trials)} trial(s)", fontsize="medium")
    return _save_figure(fig, str(out_png))


def plot_sweep(
    results: ResultGrid,
    searched: Sequence[str] = (),
    metric: str = DEFAULT_METRIC,
    out_png: str | os.PathLike | None = None,
) -> str | None:
    """`plot_trial_curves` for a Tune `ResultGrid` (also one restored with `Tuner.restore`), into
    the experiment directory as sweep_curves.png unless `out_png` says otherwise; prints the
    path. Failed trials are drawn up to their failure and say so; None when no trial reported."""
    trials = []
    configs = [r.config or {} for r in results]
    for result, label in zip(results, trial_labels(configs, searched), strict=True):
        df = result.metrics_dataframe
        if df is not None and len(df):
            trials.append((label + (" (failed)" if result.error else ""), df))
    if not trials:
        print(f"no trial reported a result: no {SWEEP_FIGURE}")
        return None
    out = str(out_png) if out_png is not None else _join(str(results.experiment_path), SWEEP_FIGURE)
    path = plot_trial_curves(trials, out, metric)
    print(f"sweep curves: {path}", flush=True)
    return path


def _has(df: pd.DataFrame, key: str) -> bool:
    return key in df.columns and bool(df[key].notna().any())


def _colors(n: int) -> list[Any]:
    """Distinct colours for up to 20 trials; a colormap's sweep beyond that."""
    from matplotlib import colormaps

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    cmap = colormaps["tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / (n - 1)) for i in range(n)]


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if is_uri(directory) else str(Path(directory) / name)


def _save_figure(fig: Figure, out: str) -> str:
    """Save as PNG to a local path or, through pyarrow (as Tune stores it), to a URI."""
    if not is_uri(out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        return out
    import io

    import pyarrow.fs

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    fs, path = pyarrow.fs.FileSystem.from_uri(out)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # a no-op on object stores, needed on disks
    with fs.open_output_stream(path) as f:
        f.write(buffer.getvalue())
    return out
