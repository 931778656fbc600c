"""Env names for `train.py` and Tune: name → (class, known tasks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.registry import register_env

from harl_rllib.envs.mamujoco import MAMuJoCoTeamEnv
from harl_rllib.envs.mpe import MPE_TASKS, MPETeamEnv
from harl_rllib.envs.smac import SMAC_MAPS, SMACV2_TASKS, SMACTeamEnv, SMACv2TeamEnv
from harl_rllib.envs.smax import SMAX_TASKS, SMAXTeamEnv
from harl_rllib.envs.toy import TOY_TASKS, make_toy_env

# name → (env class, tasks or None when any task name is accepted by the class)
ENVS: dict[str, tuple[Callable[[dict], Any], tuple[str, ...] | None]] = {
    "mpe": (MPETeamEnv, MPE_TASKS),
    "toy": (make_toy_env, TOY_TASKS),
    "smac": (SMACTeamEnv, SMAC_MAPS),
    "smacv2": (SMACv2TeamEnv, SMACV2_TASKS),
    "smax": (SMAXTeamEnv, SMAX_TASKS),
    # Any "Scenario-agentconf" gymnasium_robotics knows (see MAMUJOCO_TASKS); checked by the env.
    "mamujoco": (MAMuJoCoTeamEnv, None),
}


def env_id(name: str) -> str:
    """The name under which an env is registered with Tune (`config.environment(...)`)."""
    return f"harl_{name}"


def check_env(name: str, task: str | None) -> None:
    """Raise a clear ValueError for an unknown env or task, before anything starts."""
    if name not in ENVS:
        raise ValueError(f"Unknown env {name!r}; known envs: {', '.join(sorted(ENVS))}")
    tasks = ENVS[name][1]
    if task is not None and tasks is not None and task not in tasks:
        raise ValueError(f"Unknown {name} task {task!r}; known tasks: {', '.join(tasks)}")


def register_envs() -> None:
    from harl_rllib.envs.faults import register_fault_envs

    for name, (cls, _) in ENVS.items():
        register_env(env_id(name), cls)
    register_fault_envs()  # "harl_crashing": crash injection for fault-tolerance drills
