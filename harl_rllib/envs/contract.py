"""What a team environment gives harl_rllib, written down once.

Any RLlib `MultiAgentEnv` works. The more of this contract it follows, the more of
HARL it gets:

* **Agents.** `possible_agents`: the team, in a fixed order (sorted here). Every
  agent is in every step's observation dict, dead ones included (see alive masks):
  this is what makes the rows of different agents the same env step by construction.
  harl_rllib checks it and raises if an agent skips a step.
* **Spaces.** `observation_spaces[agent]` is a Box, or a Dict with keys ``"obs"`` (a
  Box) and ``"action_mask"`` (a Box of 0/1, one entry per discrete action).
  `action_spaces[agent]` is Discrete or Box. Agents may differ (heterogeneous).
* **Global state.** `state_space` (a Box) and, in every step's info of every agent,
  ``info["state"]``: the global state at that observation (EP: the same array for
  all agents; FP: agent-specific). Without it, the critic sees the concatenation of
  all agents' flattened observations.
* **Action masks.** ``obs["action_mask"]`` as above; sampled actions never take a
  masked action, and the log-probabilities in training use the same mask.
* **Alive masks.** ``info["alive"]`` (bool, default True): a dead agent keeps being
  stepped (with a no-op) and its rows carry no weight in its actor's loss.
* **Reward.** The team reward, given to every agent (HARL's convention). One rule for an
  env that gives agents different rewards: the team reward is the mean over agents of
  their rewards, in the critic's targets (EP; FP keeps each agent's own), the replay
  buffer and the reported `team_episode_return_mean` alike. (The reference takes the
  first agent's reward; for an env that follows this contract the two are the same.)
* **Ends.** ``terminateds["__all__"]`` for a terminal state (no bootstrap),
  ``truncateds["__all__"]`` for a time limit (the critic bootstraps, HARL's
  `use_proper_time_limits`); never both at once. RLlib's `MultiAgentEpisode` marks an
  episode terminated whenever all agents are done, so harl_rllib reads a team termination
  as "terminated and not truncated" (`core.team_batch.team_terminated`).
* **Episode stats.** ``info["episode_stats"]`` on the last step (e.g.
  ``{"battle_won": 1.0}``) is reported as custom metrics.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

STATE_KEY = "state"
ALIVE_KEY = "alive"
EPISODE_STATS_KEY = "episode_stats"


def agent_ids(n: int) -> list[str]:
    """agent_0 … agent_{n-1}, zero-padded when n > 10 (agent_00 …) so sorted order is index order."""
    width = len(str(n - 1))
    return [f"agent_{i:0{width}d}" for i in range(n)]


class MaskedTeamSpaces:
    """Spaces and states of a StarCraft-like team (SMAC, SMACv2, SMAX): n agents with
    Dict(obs, action_mask) observations, Discrete actions, and an EP state (the env's) or an
    FP state (the env's state ⊕ the agent's own observation ⊕ its one-hot id).

    With `obs_agent_id` each agent's observation ends with its one-hot id (HARL's StarCraft
    env's ``obs_agent_id``, on by default there): what lets one shared actor (MAPPO) act
    differently per agent. The FP state holds the observation without it (the id follows)."""

    def __init__(
        self, n: int, obs_dim: int, n_actions: int, env_state_dim: int, state_type: str, obs_agent_id: bool = False
    ) -> None:
        if state_type not in ("EP", "FP"):
            raise ValueError(f"state_type must be 'EP' or 'FP'; got {state_type!r}")
        self.state_type = state_type
        self.obs_agent_id = bool(obs_agent_id)
        self.agents = agent_ids(n)
        obs_space = gym.spaces.Dict(
            {
                "obs": gym.spaces.Box(-np.inf, np.inf, (obs_dim + (n if obs_agent_id else 0),), np.float32),
                "action_mask": gym.spaces.Box(0.0, 1.0, (n_actions,), np.float32),
            }
        )
        self.observation_spaces = {a: obs_space for a in self.agents}
        self.action_spaces = {a: gym.spaces.Discrete(n_actions) for a in self.agents}
        state_dim = env_state_dim + (obs_dim + n if state_type == "FP" else 0)
        self.state_space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        self._ids = np.eye(n, dtype=np.float32)

    def obs(self, obs: np.ndarray, k: int) -> np.ndarray:
        """Agent k's observation (the env's, with its one-hot id appended if `obs_agent_id`)."""
        return np.concatenate([obs, self._ids[k]]) if self.obs_agent_id else obs

    def team_obs(self, obs: np.ndarray) -> np.ndarray:
        """`obs` for a batch of teams at once: (B, n, d) → (B, n, d [+ n])."""
        if not self.obs_agent_id:
            return obs
        ids = np.broadcast_to(self._ids, (obs.shape[0], *self._ids.shape))
        return np.concatenate([obs, ids], axis=-1)

    def state(self, env_state: np.ndarray, obs: np.ndarray, k: int) -> np.ndarray:
        """Agent k's state (EP: the env state itself, shared)."""
        return env_state if self.state_type == "EP" else np.concatenate([env_state, obs, self._ids[k]])

    def apply(self, env) -> None:
        """Set the env's contract attributes."""
        env.possible_agents = list(self.agents)
        env.agents = list(self.agents)
        env.observation_spaces = self.observation_spaces
        env.action_spaces = self.action_spaces
        env.state_space = self.state_space
