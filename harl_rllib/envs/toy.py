"""Tiny cooperative tasks that each isolate one capability.

`distinct_actions` (the agents must act differently): n agents each pick one of n
actions every step; every agent sees the same observation (the one-hot step index, no
agent id). The team reward per step is
(#distinct actions − 1) / (n − 1): 1 when all actions differ, 0 when all agree.
A uniform random team earns n(1 − (1 − 1/n)ⁿ) distinct actions on average (about
0.56 of the maximum for n = 3). Identical policies cannot reach the maximum; agents
with their own actors can. Runs in microseconds, so it is the learning check that
fits in CI and the smallest ablation of heterogeneous vs shared actors.

`recall` (the agents must remember): each agent is shown its own random cue only at the
first step and is rewarded at every later step for repeating it. A feed-forward actor sees
no cue after step 0 and can only guess; a recurrent one can carry it (see `RecallEnv`).

`continuous_sum` (the agents must coordinate continuous actions): every step a target in
[−0.8 n, 0.8 n] is drawn and shown to all; each agent plays a ∈ [−1, 1] and the team reward
is −|Σ aᵢ − target|. Only the sum counts, so every agent's best action depends on the
others' (see `ContinuousSumEnv`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY

TOY_TASKS = ("distinct_actions", "recall", "continuous_sum")


def random_team_reward(n: int) -> float:
    """Expected per-step reward of a uniform random team."""
    return (n * (1 - (1 - 1 / n) ** n) - 1) / (n - 1)


def _advance(env, reward: float):
    """One step of a fixed-length toy episode: the team reward to all, done at `env.length`."""
    env.t += 1
    done = env.t >= env.length
    obs, infos = env._obs()
    agents = env.possible_agents
    terminateds = {a: done for a in agents} | {"__all__": done}
    truncateds = {a: False for a in agents} | {"__all__": False}
    return obs, {a: reward for a in agents}, terminateds, truncateds, infos


class DistinctActionsEnv(MultiAgentEnv):
    """env_config: ``n_agents`` (3), ``episode_length`` (5)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        task = config.get("task", "distinct_actions")
        if task != "distinct_actions":
            raise ValueError(f"DistinctActionsEnv runs the task 'distinct_actions', not {task!r}")
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
        return _advance(self, reward)


class RecallEnv(MultiAgentEnv):
    """A memory task. env_config: ``n_agents`` (2), ``n_cues`` (2), ``episode_length`` (4).

    At reset each agent draws a cue in [0, n_cues). Its observation is [one-hot cue at step
    0, zeros later; one-hot step index]. Actions are cue guesses; the team reward at every
    step after the first is the fraction of agents whose action equals their cue (0 at
    step 0). Best return: episode_length − 1; an actor that cannot remember the cue earns
    (episode_length − 1) / n_cues at best. The global state (critic only) holds every
    agent's cue at every step: only the actors need memory.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        if config.get("task", "recall") != "recall":
            raise ValueError(f"RecallEnv runs the task 'recall', not {config.get('task')!r}")
        self.n = int(config.get("n_agents", 2))
        self.n_cues = int(config.get("n_cues", 2))
        self.length = int(config.get("episode_length", 4))
        if self.length < 2 or self.n_cues < 2:
            raise ValueError("recall needs episode_length >= 2 and n_cues >= 2")
        self.possible_agents = [f"agent_{i}" for i in range(self.n)]
        self.agents = list(self.possible_agents)
        obs = gym.spaces.Box(0.0, 1.0, (self.n_cues + self.length,), np.float32)
        self.observation_spaces = {a: obs for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Discrete(self.n_cues) for a in self.possible_agents}
        self.state_space = gym.spaces.Box(0.0, 1.0, (self.n * self.n_cues + self.length,), np.float32)
        self.rng = np.random.default_rng(config.get("seed"))
        self.t = 0
        self.cues = np.zeros(self.n, np.int64)

    def max_return(self) -> float:
        return float(self.length - 1)

    def memoryless_return(self) -> float:
        """The best expected return without memory: a guess at every step after the first."""
        return (self.length - 1) / self.n_cues

    def _obs(self):
        step = np.zeros(self.length, np.float32)
        step[min(self.t, self.length - 1)] = 1.0
        cues = np.eye(self.n_cues, dtype=np.float32)[self.cues]  # (n, n_cues)
        state = np.concatenate([cues.ravel(), step])
        obs = {
            a: np.concatenate([cues[i] if self.t == 0 else np.zeros(self.n_cues, np.float32), step])
            for i, a in enumerate(self.possible_agents)
        }
        return obs, {a: {STATE_KEY: state, ALIVE_KEY: True} for a in self.possible_agents}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.cues = self.rng.integers(0, self.n_cues, self.n)
        return self._obs()

    def step(self, action_dict):
        hits = [int(action_dict[a]) == int(self.cues[i]) for i, a in enumerate(self.possible_agents)]
        reward = float(np.mean(hits)) if self.t > 0 else 0.0
        return _advance(self, reward)


class ContinuousSumEnv(MultiAgentEnv):
    """env_config: ``n_agents`` (2), ``episode_length`` (5), ``seed``.

    Random actions score about −0.8 per step for n = 2 (E|U₁ + U₂ − T|); the best team
    scores 0. The state is the target (all that matters to the critic).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        if config.get("task", "continuous_sum") != "continuous_sum":
            raise ValueError(f"ContinuousSumEnv runs the task 'continuous_sum', not {config.get('task')!r}")
        self.n = int(config.get("n_agents", 2))
        self.length = int(config.get("episode_length", 5))
        self.possible_agents = [f"agent_{i}" for i in range(self.n)]
        self.agents = list(self.possible_agents)
        obs = gym.spaces.Box(-self.n, self.n, (1,), np.float32)
        self.observation_spaces = {a: obs for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Box(-1.0, 1.0, (1,), np.float32) for a in self.possible_agents}
        self.state_space = obs
        self.rng = np.random.default_rng(config.get("seed"))
        self.t, self.target = 0, 0.0

    def _obs(self):
        self.target = float(self.rng.uniform(-0.8 * self.n, 0.8 * self.n))
        o = np.array([self.target], np.float32)
        return {a: o for a in self.possible_agents}, {a: {STATE_KEY: o, ALIVE_KEY: True} for a in self.possible_agents}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        return self._obs()

    def step(self, action_dict):
        total = sum(float(np.clip(action_dict[a], -1, 1)[0]) for a in self.possible_agents)
        return _advance(self, -abs(total - self.target))


def make_toy_env(config: dict[str, Any] | None = None) -> MultiAgentEnv:
    """The toy env of ``config["task"]`` (default `distinct_actions`)."""
    task = (config or {}).get("task", "distinct_actions")
    if task not in TOY_TASKS:
        raise ValueError(f"Unknown toy task {task!r}; known tasks: {', '.join(TOY_TASKS)}")
    return {"recall": RecallEnv, "continuous_sum": ContinuousSumEnv}.get(task, DistinctActionsEnv)(config)
