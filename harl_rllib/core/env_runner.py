"""An env runner that can hand RLlib an env's own batched vector env.

RLlib's `MultiAgentEnvRunner` vectorizes a MultiAgentEnv by stepping N copies one after
another in Python. For simulators that step a whole batch in one call (SMAX in JAX: one
jitted, vmapped call for all N envs instead of N calls at ~1 ms dispatch each), the env
class can offer ``make_vector_env(env_context, num_envs)`` returning a
`VectorMultiAgentEnv` with the same next-step auto-reset semantics; this runner then
uses it. Every other env goes through RLlib's own path unchanged.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.tune.registry import ENV_CREATOR, _global_registry

RNG = "harl_rng"


def vector_env_factory(env: Any):
    """The env's ``make_vector_env`` (registered name or class), or None."""
    if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
        env = _global_registry.get(ENV_CREATOR, env)
    return getattr(env, "make_vector_env", None)


class HAEnvRunner(MultiAgentEnvRunner):
    """MultiAgentEnvRunner that uses an env's batched vector env when it has one, and whose
    checkpoint state holds the sampling RNGs (torch's, for exploration; numpy's; Python's;
    and each sub-env's when the env offers ``get_rng_state``/``set_rng_state``), so that a
    run resumed from a checkpoint samples what the uninterrupted run would have."""

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(RNG, components, not_components):
            envs = [getattr(e, "unwrapped", e) for e in (getattr(self.env, "envs", None) or [])]
            state[RNG] = {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "envs": [e.get_rng_state() if hasattr(e, "get_rng_state") else None for e in envs],
            }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        rng = state.get(RNG)
        # Only the local runner's RNGs are checkpointed; a remote runner (restarted, or
        # synced from the local one) keeps its own streams.
        if rng is None or self.worker_index != 0:
            return
        torch.set_rng_state(torch.as_tensor(rng["torch"], dtype=torch.uint8))
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        envs = [getattr(e, "unwrapped", e) for e in (getattr(self.env, "envs", None) or [])]
        if len(envs) == len(rng["envs"]):
            for env, env_state in zip(envs, rng["envs"], strict=True):
                if env_state is not None and hasattr(env, "set_rng_state"):
                    env.set_rng_state(env_state)

    def make_env(self) -> None:
        factory = vector_env_factory(self.config.env)
        if factory is None:
            return super().make_env()
        if self.env is not None:
            self.env.close()
            self.env = None
        ctx = self.config.env_config
        if not isinstance(ctx, EnvContext):
            ctx = EnvContext(ctx, worker_index=self.worker_index, num_workers=self.config.num_env_runners)
        self.env = factory(ctx, self.config.num_envs_per_env_runner)
        self.num_envs = self.env.num_envs
        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(env_runner=self, metrics_logger=self.metrics, env=self.env.unwrapped, env_context=ctx),
        )
