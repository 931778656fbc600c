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
* **Reward.** The team reward, given to every agent (HARL's convention). The critic's
  reward is the mean over agents of their rewards, which is the team reward when the
  env follows this contract.
* **Episode stats.** ``info["episode_stats"]`` on the last step (e.g.
  ``{"battle_won": 1.0}``) is reported as custom metrics.
"""

from __future__ import annotations

STATE_KEY = "state"
ALIVE_KEY = "alive"
EPISODE_STATS_KEY = "episode_stats"


def agent_ids(n: int) -> list[str]:
    """agent_0 … agent_{n-1}, zero-padded when n > 10 (agent_00 …) so sorted order is index order."""
    width = len(str(n - 1))
    return [f"agent_{i:0{width}d}" for i in range(n)]
