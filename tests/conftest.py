"""Shared fixtures: a real local Ray with few CPUs, shut down after the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def start_local_ray() -> ModuleType:
    """The tests' own local Ray (2 CPUs, never a cluster found on the machine), unless one is up."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        import harl_rllib

        harl_rllib.register()  # Tune's registry lives in the running Ray
    return ray


@pytest.fixture(scope="session")
def ray_session() -> Iterator[ModuleType]:
    """One local Ray for the session, shut down at its end.

    Session-scoped so that module- and session-scoped fixtures can use it. A test that needs
    another Ray (tests/test_cluster.py starts a multi-node cluster) shuts it down; the hook
    below starts it again for the next test that asks for it.
    """
    ray = start_local_ray()
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a test that uses `ray_session` (at any scope): bring Ray back up
    if an earlier test shut it down (the session fixture itself runs only once)."""
    if "ray_session" in getattr(item, "fixturenames", ()):
        start_local_ray()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The minute-long learning checks (`slow`) first, in their file order: with two test
    processes (pytest.ini), the longest work starting first leaves no long tail on one."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def train_steps(config, env_steps: int) -> list[float]:
    """Team returns of the iterations that finished episodes, until `env_steps` are sampled
    (off-policy iterations are short: many end no episode)."""
    import numpy as np

    algo = config.build_algo()
    returns: list[float] = []
    try:
        while True:
            er = algo.train()["env_runners"]
            ret = er.get("team_episode_return_mean")
            if ret is not None and not np.isnan(ret):
                returns.append(float(ret))
            if er["num_env_steps_sampled_lifetime"] >= env_steps:
                return returns
    finally:
        algo.stop()


def on_every_learner(algo, fn) -> list:
    """`fn(learner)` on every learner, in rank order: the values (RLlib hands back remote
    learners' results wrapped, a local learner's as they are)."""
    return [r.get() if hasattr(r, "get") else r for r in algo.learner_group.foreach_learner(fn)]


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


def no_state_env_class():
    """A user's contract-following MultiAgentEnv with no global state and no masks (the toy
    `distinct_actions` task without its state)."""
    from harl_rllib.envs.toy import DistinctActionsEnv

    class NoStateEnv(DistinctActionsEnv):
        def __init__(self, config=None):
            super().__init__(config)
            del self.state_space

        def _obs(self):
            obs, _ = super()._obs()
            return obs, {a: {} for a in self.possible_agents}

    return NoStateEnv


def check_team_batch(algo, episodes) -> int:
    """Run the learner's team-batch connector on sampled episodes; assert the agents' rows
    are the same env steps and each row's alive flag is the env's `info["alive"]` at that
    step (dead agents' rows carry no weight in the actor loss). Returns the dead rows."""
    import numpy as np
    import torch

    from harl_rllib.core.fragments import ALIVE, ENV_T, EPS_INDEX

    learner = algo.learner_group._learner
    batch = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes, shared_data={})
    agents = list(algo.config.get_team_spec().agents)
    for a in agents[1:]:
        np.testing.assert_array_equal(batch[a][EPS_INDEX], batch[agents[0]][EPS_INDEX])
        np.testing.assert_array_equal(batch[a][ENV_T], batch[agents[0]][ENV_T])
    dead = 0
    for a in agents:
        expected = np.concatenate(
            [[float(i.get("alive", True)) for i in ep.agent_episodes[a].get_infos()[: len(ep)]] for ep in episodes]
        )
        np.testing.assert_array_equal(np.asarray(batch[a][ALIVE], np.float32), expected)
        dead += int((expected == 0).sum())
        mask = learner.policy_mask({ALIVE: torch.as_tensor(batch[a][ALIVE])})
        assert float(mask.sum()) == float(expected.sum())
    return dead
