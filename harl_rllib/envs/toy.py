"""A tiny cooperative task where the agents must act differently.

n agents each pick one of n actions every step; every agent sees the same observation
(the one-hot step index, no agent id). The team reward per step is
(#distinct actions − 1) / (n − 1): 1 when all actions differ, 0 when all agree.
A uniform random team earns n(1 − (1 − 1/n)ⁿ) distinct actions on average (about
0.56 of the maximum for n = 3). Identical policies cannot reach the maximum; agents
with their own actors can. Runs in microseconds, so it is the learning check that
fits in CI and the smallest ablation of heterogeneous vs shared actors.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY

TOY_TASKS = ("distinct_actions",)


def random_team_reward(n: int) -> float:
    """Expected per-step reward of a uniform random team."""
    return (n * (1 - (1 - 1 / n) ** n) - 1) / (n - 1)


class DistinctActionsEnv(MultiAgentEnv):
    """env_config: ``n_agents`` (3), ``episode_length`` (5)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        task = config.get("task", "distinct_actions")
        if task not in TOY_TASKS:
            raise ValueError(f"Unknown toy task {task!r}; known tasks: {', '.join(TOY_TASKS)}")
        self.n = int(config.get("n_agents", 3))
        self.length = int(config.get("episode_length", 5))
        if self.n < 2:
            raise ValueError("n_agents must be at least 2")
        self.possible_agents = [f"agent_{i}" for i in range(self.n)]
        self.agents = list(self.possible_agents)
        box = gym.spaces.Box(0.0, 1.0, (self.length,), np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Discrete(self.n) for a in self.possible_agents}
        self.state_space = box
        self.t = 0

    def _obs(self):
        o = np.zeros(self.length, np.float32)
        o[min(self.t, self.length - 1)] = 1.0
        return {a: o for a in self.possible_agents}, {a: {STATE_KEY: o, ALIVE_KEY: True} for a in self.possible_agents}

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs()

    def step(self, action_dict):
        distinct = len({int(action_dict[a]) for a in self.possible_agents})
        reward = (distinct - 1) / (self.n - 1)
        self.t += 1
        done = self.t >= self.length
        obs, infos = self._obs()
        rewards = {a: reward for a in self.possible_agents}
        terminateds = {a: done for a in self.possible_agents} | {"__all__": done}
        truncateds = {a: False for a in self.possible_agents} | {"__all__": False}
        return obs, rewards, terminateds, truncateds, infos
