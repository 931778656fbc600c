"""Shared fixtures: a real local Ray with few CPUs, shut down after the session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def small_config(cls=None, *, task="simple_spread_v3", batch=200, **training):
    """A small, fast config on a real mpe2 env (no remote env runners)."""
    import harl_rllib  # noqa: F401
    from harl_rllib import HAPPOConfig

    cls = cls or HAPPOConfig
    config = (
        cls()
        .environment("harl_mpe", env_config={"task": task, **training.pop("env_config", {})})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=batch, **training)
    )
    return config
