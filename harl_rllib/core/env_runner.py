"""An env runner that can hand RLlib an env's own batched vector env.

RLlib's `MultiAgentEnvRunner` vectorizes a MultiAgentEnv by stepping N copies one after
another in Python. For simulators that step a whole batch in one call (SMAX in JAX: one
jitted, vmapped call for all N envs instead of N calls at ~1 ms dispatch each), the env
class can offer ``make_vector_env(env_context, num_envs)`` returning a
`VectorMultiAgentEnv` with the same next-step auto-reset semantics; this runner then
uses it. Every other env goes through RLlib's own path unchanged.

It is also the env boundary's guard (core/env_checks.py): every reset and step is checked
for non-finite values and wrong shapes (`check_env_values`), and an env that keeps failing
is stopped after `max_env_failures_per_sample` failures in one `sample()` call, where
RLlib would rebuild it and restart the call without end.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner import ENV_STEP_FAILURE, NUM_ENV_STEP_FAILURES_LIFETIME
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import ENV_RESET_TIMER, ENV_STEP_TIMER
from ray.tune.registry import ENV_CREATOR, _global_registry

from harl_rllib.core.env_checks import EnvFailureError, EnvValueError, TeamValueChecker, describe_env

RNG = "harl_rng"
logger = logging.getLogger(__name__)


def env_class(env: Any) -> Any:
    """The class (or creator) behind a registered env name, or `env` itself."""
    if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
        return _global_registry.get(ENV_CREATOR, env)
    return env


def vector_env_factory(env: Any):
    """The env's ``make_vector_env`` (registered name or class), or None."""
    return getattr(env_class(env), "make_vector_env", None)


class HAEnvRunner(MultiAgentEnvRunner):
    """MultiAgentEnvRunner that uses an env's batched vector env when it has one, and whose
    checkpoint state holds the sampling RNGs (torch's, for exploration; numpy's; Python's;
    and each sub-env's when the env offers ``get_rng_state``/``set_rng_state``), so that a
    run resumed from a checkpoint samples what the uninterrupted run would have."""

    # The error that stopped this remote runner's `sample()`, for the driver to raise (see
    # HAAlgorithm.sample): raised in a remote runner, RLlib would restart it without end.
    fatal_error: Exception | None = None
    _env_failures = 0
    _checker: TeamValueChecker | None = None

    def sample(self, **kwargs):
        self._env_failures = 0
        self.fatal_error = None
        try:
            return super().sample(**kwargs)
        except (EnvFailureError, EnvValueError) as e:
            if self.worker_index == 0:
                raise  # the local runner: in the driver already
            self.fatal_error = type(e)(str(e))
            return []

    # ---- the env boundary ---------------------------------------------------------

    def _try_env_reset(self, *, seed: int | None = None, options: dict | None = None):
        while True:
            try:
                with self.metrics.log_time(ENV_RESET_TIMER):
                    obs, infos = self.env.reset(seed=seed, options=options)
                break
            except Exception as e:
                if not self.config.restart_failed_sub_environments:
                    raise
                self._env_failed(e, "reset")
                self.make_env()
        self._check_values(obs, infos, None)
        return obs, infos

    def _try_env_step(self, actions):
        if not self.config.restart_failed_sub_environments:
            results = super()._try_env_step(actions)  # raises on failure
        else:
            try:
                with self.metrics.log_time(ENV_STEP_TIMER):
                    results = self.env.step(actions)
            except Exception as e:
                self.metrics.log_value(NUM_ENV_STEP_FAILURES_LIFETIME, 1, reduce="lifetime_sum")
                self._env_failed(e, "step")
                self.make_env()
                return ENV_STEP_FAILURE  # RLlib drops the cut episodes and resets
            self._log_env_steps(metric=self._metrics_num_try_env_step, num_steps=1)
        obs, rewards, _, _, infos = results
        self._check_values(obs, infos, rewards)
        return results

    def _env_failed(self, error: Exception, call: str) -> None:
        """Survive an env failure (RLlib rebuilds the env), up to the configured bound."""
        self._env_failures += 1
        limit = self.config.max_env_failures_per_sample
        what = f"{call}() raised {type(error).__name__}: {error}"
        if self._env_failures > limit:
            raise EnvFailureError(
                f"Env {describe_env(self.config)} failed {self._env_failures} times in one sample() call of "
                f"env runner {self.worker_index} (max_env_failures_per_sample={limit}); the last failure: {what}"
            ) from error
        logger.warning(
            "Env %s failed (%d of at most %d in this sample call); rebuilding it. %s",
            describe_env(self.config),
            self._env_failures,
            limit,
            what,
        )

    @property
    def checker(self) -> TeamValueChecker:
        """The env-boundary check of this runner's envs (built once per env)."""
        if self._checker is None:
            env = self.env.envs[0].unwrapped
            spaces = {a: env.get_observation_space(a) for a in env.possible_agents}
            self._checker = TeamValueChecker(describe_env(self.config), spaces)
        return self._checker

    def _check_values(self, obs: list, infos: list, rewards: list | None) -> None:
        """Non-finite values and wrong shapes in one vector step (see core/env_checks.py)."""
        if not self.config.check_env_values:
            return
        episodes = getattr(self, "_ongoing_episodes", None) or [None] * len(obs)
        for i, (o, info) in enumerate(zip(obs, infos, strict=True)):
            step = "reset" if rewards is None else f"step {getattr(episodes[i], 'env_t', -1) + 1} of its episode"
            where = f"env runner {self.worker_index}, env {i}, {step}"
            self.checker.check(o, info, None if rewards is None else rewards[i], where=where)

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
        # synced from the local one) keeps its own streams, and so does an evaluation runner
        # (RLlib restores the checkpoint into it too; it reseeds its envs every evaluation).
        if rng is None or self.worker_index != 0 or self.config.in_evaluation:
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
        self._checker = None
        self.num_envs = self.env.num_envs
        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(env_runner=self, metrics_logger=self.metrics, env=self.env.unwrapped, env_context=ctx),
        )
