"""What crosses the env boundary, checked: values, shapes and failures.

Why: a NaN reward from a buggy env turns every weight into NaN within one update, and a
wrong-shape observation surfaces deep in torch, naming neither env nor agent. Checking at
the boundary, where the env and the agent are still known, turns both into one clear
error. An env that fails over and over (RLlib rebuilds it and restarts the sample call,
with no bound) is stopped after `max_env_failures_per_sample` failures in one call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from harl_rllib.envs.contract import STATE_KEY

logger = logging.getLogger(__name__)


class EnvFailureError(RuntimeError):
    """An env failed more often than the restart policy allows."""


class EnvValueError(ValueError):
    """An env returned a non-finite value or an observation of the wrong shape."""


def describe_env(config: Any) -> str:
    """'harl_mpe (task simple_spread_v3)': how errors name the env of a config."""
    env = config.env
    name = env if isinstance(env, str) else getattr(env, "__name__", repr(env))
    task = (config.env_config or {}).get("task")
    return f"{name!r}" + (f" (task {task!r})" if task else "")


def _finite(x: np.ndarray) -> bool:
    # One reduction (in float64: no float32 overflow) is the cheap test, on every step; a
    # sum that overflows anyway is settled element by element.
    return math.isfinite(np.add.reduce(x, axis=None, dtype=np.float64)) or bool(np.isfinite(x).all())


class TeamValueChecker:
    """Checks one env step's dicts against the team's spaces (see envs/contract.py).

    Non-finite rewards, observations and states, and observations of the wrong shape, raise
    `EnvValueError`; observations outside a bounded Box warn once per agent. Costs about
    15 µs per step of a 3-agent MPE env."""

    def __init__(self, env_name: str, observation_spaces: Mapping[str, gym.Space]) -> None:
        self.env_name = env_name
        # Per agent: (key, space, bounded) for each Box part of its observation.
        self.parts = {
            a: [(k, b, bool(np.isfinite(b.low).any() or np.isfinite(b.high).any())) for k, b in _leaf_spaces(s).items()]
            for a, s in observation_spaces.items()
        }
        self.warned: set[tuple[str, str]] = set()

    def check(self, obs: dict, infos: dict, rewards: dict | None, *, where: str) -> None:
        """One env's dicts; `where` says which env and step (for the error)."""
        checked_state = None
        for agent, value in obs.items():
            for key, space, bounded in self.parts.get(agent, ()):
                x = value[key] if key else value
                if not isinstance(x, np.ndarray):
                    x = np.asarray(x)
                if x.shape != space.shape:
                    what = f"of shape {x.shape}; its space {space} has shape {space.shape}"
                    self._fail(f"an {_label(agent, key)} {what}", where)
                if x.dtype.kind == "f" and not _finite(x):
                    self._fail(f"a non-finite {_label(agent, key)}: {x}", where)
                if bounded and (agent, key) not in self.warned and not ((x >= space.low) & (x <= space.high)).all():
                    self.warned.add((agent, key))
                    logger.warning(
                        "Env %s gave an %s outside its space %s (%s); warned once per agent.",
                        *(self.env_name, _label(agent, key), space, where),
                    )
            state = (infos.get(agent) or {}).get(STATE_KEY)
            if state is not None and state is not checked_state:  # EP: one array shared by all agents
                checked_state = state
                if not _finite(np.asarray(state)):
                    self._fail(f"a non-finite global state (info['state']) for agent {agent!r}", where)
        for agent, r in (rewards or {}).items():
            if not math.isfinite(r):
                self._fail(f"a non-finite reward {r!r} for agent {agent!r}", where)

    def check_arrays(
        self, reward: np.ndarray, states: Sequence[np.ndarray], obs: Sequence[dict], agents: Sequence[str], *, where
    ) -> None:
        """One batched step of B envs (an env's own vector step, e.g. SMAX): team rewards (B,),
        global states (B, ...) and sets of the team's observations {key: (B, n, ...)} (agents in
        team order); `where(b)` says which env and step, for the error."""
        if not _finite(reward):
            self._fail("a non-finite team reward", where(int(np.flatnonzero(~np.isfinite(reward))[0])))
        for x in states:
            if not _finite(x):
                bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
                self._fail("a non-finite global state", where(int(np.flatnonzero(bad)[0])))
        for key, x in ((key, x) for team_obs in obs for key, x in team_obs.items()):
            if not _finite(x):
                b, i = np.argwhere(~np.isfinite(x).reshape(*x.shape[:2], -1).all(axis=2))[0]
                self._fail(f"a non-finite {_label(agents[i], key)}", where(int(b)))

    def _fail(self, what: str, where: str) -> None:
        raise EnvValueError(
            f"Env {self.env_name} returned {what} ({where}). Fix the env, or turn this check off with "
            "`config.environment(check_env_values=False)` once you trust it."
        )


def _label(agent: str, key: str) -> str:
    return f"observation{f'[{key!r}]' if key else ''} of agent {agent!r}"


def _leaf_spaces(space: gym.Space) -> dict[str, gym.spaces.Box]:
    """The Box parts of an observation space: {'': box} or {'obs': box, 'action_mask': box}."""
    if isinstance(space, gym.spaces.Box):
        return {"": space}
    if isinstance(space, gym.spaces.Dict):
        return {k: s for k, s in space.spaces.items() if isinstance(s, gym.spaces.Box)}
    return {}
