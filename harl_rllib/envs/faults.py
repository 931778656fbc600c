"""Fault injection: a team env that crashes, or returns bad values, on purpose.

Why: fault tolerance that is never exercised tends not to work on the day a simulator
segfaults or a spot node disappears. `CrashOnStepEnv` wraps any registered team env and
raises at chosen steps, so tests (and users, before a long cluster run) can check that
training survives a broken env.

    register_fault_envs()
    config.environment("harl_crashing", env_config={
        "inner_env": "harl_mpe", "inner_config": {"task": "simple_spread_v3"},
        "crash_at_step": 60,                 # or "crash_probability": 0.001
        "events_file": "/tmp/events.jsonl",  # optional: one JSON line per crash / episode end
    })
    config.fault_tolerance(restart_failed_sub_environments=True)

env_config keys:
    inner_env: the wrapped env, a registered name (default "harl_mpe") or an env class.
    inner_config: the wrapped env's own env_config (default {}).
    crash_at_step: int or list of ints; crash when the process-wide step count of this
        crash schedule reaches it. The count lives in the process, not the env instance,
        so an env rebuilt after the crash does not crash again at the same step.
    crash_probability: float in [0, 1]; crash on any step with this probability.
    crash_seed: seeds the crash_probability draws (with the worker index).
    crash_worker_index: only envs of the EnvRunner with this worker index crash
        (0 is the local runner, 1.. the remote ones); default: every runner.
    events_file: a path; every crash and every episode end appends one JSON line
        ({"event": "crash" | "episode_end", "worker_index", "pid", "step"}) so a test can
        count what the env did across processes.
    fault: what happens at those steps: "crash" (default) raises `InjectedEnvCrash`, a
        RuntimeError, *before* stepping the wrapped env; the others step it and then spoil
        the first agent's data: "nan_reward", "nan_obs", "nan_state" (info["state"]),
        "obs_shape" (one entry too many), "obs_out_of_bounds" (above the space's high).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.tune.registry import ENV_CREATOR, _global_registry, register_env

CRASHING_ENV_ID = "harl_crashing"

# Per process and crash schedule (keyed by the env_config): steps taken and the RNG of the
# crash draws. Kept outside the env instance because RLlib rebuilds a failed env.
_PROCESS_STEPS: dict[str, int] = defaultdict(int)
_PROCESS_RNGS: dict[str, np.random.Generator] = {}


FAULTS = ("crash", "nan_reward", "nan_obs", "nan_state", "obs_shape", "obs_out_of_bounds")


class InjectedEnvCrash(RuntimeError):
    """The error `CrashOnStepEnv` raises (a RuntimeError, as a real simulator crash would be)."""


def _resolve_env(inner_env: str | Callable[..., Any]) -> Callable[..., Any]:
    """The creator of the wrapped env: a registered name or the class/callable itself."""
    if isinstance(inner_env, str):
        if not _global_registry.contains(ENV_CREATOR, inner_env):
            raise ValueError(f"CrashOnStepEnv: unknown inner_env {inner_env!r} (register it with register_env).")
        return _global_registry.get(ENV_CREATOR, inner_env)
    if callable(inner_env):
        return inner_env
    raise ValueError(f"CrashOnStepEnv: inner_env must be a registered name or an env class; got {inner_env!r}")


class CrashOnStepEnv(MultiAgentEnv):
    """Wraps a team env and raises `InjectedEnvCrash` at chosen steps (see module doc)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = config if config is not None else {}
        self._worker_index = int(getattr(config, "worker_index", 0) or 0)
        settings = dict(config)
        inner_config = dict(settings.get("inner_config") or {})
        if isinstance(config, EnvContext):
            inner_ctx = config.copy_with_overrides(env_config=inner_config)
        else:
            inner_ctx = EnvContext(inner_config, worker_index=self._worker_index)
        self.env = _resolve_env(settings.get("inner_env", "harl_mpe"))(inner_ctx)

        steps = settings.get("crash_at_step")
        if steps is None:
            self._crash_steps: frozenset[int] = frozenset()
        elif isinstance(steps, int) and not isinstance(steps, bool):
            self._crash_steps = frozenset([steps])
        else:
            self._crash_steps = frozenset(int(s) for s in steps)
        self._crash_probability = float(settings.get("crash_probability", 0.0))
        if not 0.0 <= self._crash_probability <= 1.0:
            raise ValueError(f"crash_probability must be in [0, 1]; got {self._crash_probability}")
        only = settings.get("crash_worker_index")
        self._armed = only is None or int(only) == self._worker_index
        self._events_file = settings.get("events_file")
        self._fault = settings.get("fault", "crash")
        if self._fault not in FAULTS:
            raise ValueError(f"CrashOnStepEnv: unknown fault {self._fault!r}; known: {', '.join(FAULTS)}")
        self._key = json.dumps(settings, sort_keys=True, default=repr)
        if self._key not in _PROCESS_RNGS:
            seed = settings.get("crash_seed")
            _PROCESS_RNGS[self._key] = np.random.default_rng(None if seed is None else [int(seed), self._worker_index])

        self.possible_agents = list(self.env.possible_agents)
        self.agents = list(getattr(self.env, "agents", self.possible_agents))
        self.observation_spaces = {a: self.env.get_observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: self.env.get_action_space(a) for a in self.possible_agents}
        if getattr(self.env, "state_space", None) is not None:
            self.state_space = self.env.state_space

    def __getattr__(self, name: str) -> Any:
        # Anything else the wrapped env offers (e.g. `state()`); only reached for missing names.
        inner = self.__dict__.get("env")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def _log(self, event: str, step: int) -> None:
        if not self._events_file:
            return
        line = json.dumps({"event": event, "worker_index": self._worker_index, "pid": os.getpid(), "step": step})
        with open(self._events_file, "a") as f:  # one short O_APPEND write: safe across processes
            f.write(line + "\n")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(getattr(self.env, "agents", self.possible_agents))
        return obs, infos

    def step(self, action_dict: dict[str, Any]):
        _PROCESS_STEPS[self._key] += 1
        step = _PROCESS_STEPS[self._key]
        if self._armed and (
            step in self._crash_steps
            or (self._crash_probability > 0.0 and _PROCESS_RNGS[self._key].random() < self._crash_probability)
        ):
            self._log("crash", step)
            if self._fault == "crash":
                raise InjectedEnvCrash(f"CrashOnStepEnv: injected crash at step {step} (worker {self._worker_index})")
            obs, rewards, terminateds, truncateds, infos = self.env.step(action_dict)
            self._spoil(obs, rewards, infos)
        else:
            obs, rewards, terminateds, truncateds, infos = self.env.step(action_dict)
        self.agents = list(getattr(self.env, "agents", self.possible_agents))
        if terminateds.get("__all__") or truncateds.get("__all__"):
            self._log("episode_end", step)
        return obs, rewards, terminateds, truncateds, infos

    def _spoil(self, obs: dict, rewards: dict, infos: dict) -> None:
        """The injected bad value, in the first agent's data."""
        agent = sorted(obs)[0]
        if self._fault == "nan_reward":
            rewards[agent] = float("nan")
        elif self._fault == "nan_state":
            infos[agent] = {**infos[agent], "state": np.full_like(infos[agent]["state"], np.nan)}
        else:
            x = np.array(obs[agent], dtype=np.float32)
            if self._fault == "nan_obs":
                x[0] = np.nan
            elif self._fault == "obs_shape":
                x = np.append(x, 0.0).astype(np.float32)
            else:  # obs_out_of_bounds
                x[0] = self.observation_spaces[agent].high[0] + 1.0
            obs[agent] = x

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()


def register_fault_envs() -> None:
    """Register `CrashOnStepEnv` with Tune as "harl_crashing"."""
    register_env(CRASHING_ENV_ID, CrashOnStepEnv)
