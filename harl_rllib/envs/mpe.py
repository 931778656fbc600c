"""MPE (package `mpe2`) as a team `MultiAgentEnv` that follows harl_rllib's contract."""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY

MPE_TASKS = ("simple_spread_v3", "simple_speaker_listener_v4", "simple_reference_v3")


class MPETeamEnv(MultiAgentEnv):
    """An mpe2 scenario with a team reward and the global state.

    env_config: ``task`` (one of MPE_TASKS), ``continuous_actions`` (bool, actions in
    mpe2's [0, 1]), ``max_cycles`` (episode length, 25), ``render_mode`` (None; "rgb_array"
    for `render()` frames), and any further keyword the scenario takes (e.g. ``N`` for
    simple_spread). The team reward is the sum of the agents' rewards, given to every agent,
    as HARL does.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        task = config.pop("task", "simple_spread_v3")
        if task not in MPE_TASKS:
            raise ValueError(f"Unknown MPE task {task!r}; known tasks: {', '.join(MPE_TASKS)}")
        config.setdefault("max_cycles", 25)
        config.setdefault("continuous_actions", False)
        self._seed = config.pop("seed", None)
        self.render_mode = config.get("render_mode")
        if self.render_mode == "rgb_array":
            # mpe2 draws on an offscreen pygame surface; should anything start SDL's video
            # subsystem, the dummy driver keeps it from looking for a display (headless runs).
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        module = importlib.import_module(f"mpe2.{task}")
        self.env = module.parallel_env(**config)
        self.possible_agents = sorted(self.env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.env.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: self.env.action_space(a) for a in self.possible_agents}
        self.state_space = self.env.state_space
        self._pending_rng: dict | None = None

    def _infos(self, obs: dict[str, np.ndarray]) -> dict[str, dict]:
        """Every agent's info: the global state and alive flag. mpe2's `state()` is every agent's
        observation concatenated in the env's agent order; it is built here from the observations
        the step returned rather than by `state()`, which computes them all again (a third of an
        MPE step's time)."""
        state = np.concatenate([np.asarray(obs[a], np.float32).ravel() for a in self.env.possible_agents])
        return {a: {STATE_KEY: state, ALIVE_KEY: True} for a in self.possible_agents}

    def render(self) -> np.ndarray:
        """The current frame as an (H, W, 3) uint8 array (mpe2's 700x700 view, for recording episodes)."""
        if self.render_mode != "rgb_array":
            raise RuntimeError(
                f"MPETeamEnv.render() needs the env built with env_config render_mode='rgb_array' "
                f"(got render_mode={self.render_mode!r})."
            )
        return np.ascontiguousarray(self.env.render(), dtype=np.uint8)

    def get_rng_state(self) -> dict:
        return self.env.unwrapped.np_random.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Resume: the next reset continues from this RNG state (and ignores its seed)."""
        self._pending_rng = state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        if self._pending_rng is not None:
            if getattr(self.env.unwrapped, "np_random", None) is None:
                self.env.reset(seed=0)  # creates the generator; its state is replaced next
            self.env.unwrapped.np_random.bit_generator.state = self._pending_rng
            seed, self._pending_rng = None, None
        obs, _ = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return {a: obs[a] for a in self.possible_agents}, self._infos(obs)

    def step(self, action_dict: dict[str, Any]):
        obs, rew, term, trunc, _ = self.env.step(action_dict)
        team = float(sum(rew.values()))
        done_term = all(term.values())
        done_trunc = all(trunc.values())
        terminateds = {a: bool(term[a]) for a in self.possible_agents}
        truncateds = {a: bool(trunc[a]) for a in self.possible_agents}
        terminateds["__all__"], truncateds["__all__"] = done_term, done_trunc and not done_term
        if done_term or done_trunc:
            self.agents = []
        return (
            {a: obs[a] for a in self.possible_agents},
            {a: team for a in self.possible_agents},
            terminateds,
            truncateds,
            self._infos(obs),
        )
