"""Learner connector: multi-agent episodes → one row-aligned team batch + joint GAE.

Replaces RLlib's default learner pipeline (which batches per module and runs GAE
per module with each module's own value head). Here:

* every agent's rows are the same env steps in the same order, by construction:
  episodes are walked once, and for each episode all agents' arrays are cut from
  t = 0..T-1; an agent that skipped a step is an error (see envs/contract.py);
* the centralized critic (learner-only module) values every state, including the
  bootstrap state after the last step, in one forward pass;
* GAE(γ, λ) per trajectory chunk gives one joint advantage (EP) or one per agent (FP).

Output, keyed like a MultiAgentBatch but by *agent* id (the learner maps agents to
modules): for each agent {obs, actions, action_logp, alive, advantages, eps_index,
env_t}; under CRITIC_MODULE_ID {state, value_targets, values}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tree
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

from harl_rllib.core.advantages import compute_gae
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY

ADVANTAGES = "advantages"
VALUE_TARGETS = "value_targets"
ALIVE = "alive"
EPS_INDEX = "eps_index"
ENV_T = "env_t"


def _stack(items: Sequence[Any]) -> Any:
    """Stack a list of (possibly dict) observations into arrays."""
    return tree.map_structure(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


def _as_list(x: Any, n: int) -> list:
    """An episode getter's output as a list of n per-step items."""
    if isinstance(x, dict):
        return [tree.map_structure(lambda a, i=i: a[i], x) for i in range(n)]
    return [x[i] for i in range(n)]


class TeamBatchBuilder(ConnectorV2):
    """Turns the iteration's episodes into the aligned team batch (see module doc)."""

    def __init__(
        self,
        input_observation_space=None,
        input_action_space=None,
        *,
        agents: Sequence[str],
        gamma: float,
        lambda_: float,
        state_type: str = "EP",
        has_state: bool = True,
        device: Any = "cpu",
        **kwargs,
    ) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.agents = list(agents)
        self.gamma, self.lambda_ = gamma, lambda_
        self.state_type, self.has_state = state_type, has_state
        self.device = device

    def _episode_arrays(self, episode, index: int) -> tuple[dict, np.ndarray, np.ndarray, bool]:
        """Per-agent arrays of one episode chunk, its states (T+1, k, S) and rewards (T, k)."""
        T = episode.env_steps()
        per_agent, infos_all, rewards = {}, {}, []
        for aid in self.agents:
            sa = episode.agent_episodes.get(aid)
            if sa is None or len(sa) != T:
                raise ValueError(
                    f"Agent {aid!r} did not act at every step of an episode ({0 if sa is None else len(sa)} "
                    f"of {T} steps). harl_rllib needs every agent in every step (keep dead agents in "
                    "the episode with info['alive']=False): see harl_rllib/envs/contract.py."
                )
            obs = _as_list(sa.get_observations(), T + 1)
            infos = list(sa.get_infos())
            infos_all[aid] = (obs, infos)
            alive = np.array([float(i.get(ALIVE_KEY, True)) if i else 1.0 for i in infos[:T]], np.float32)
            per_agent[aid] = {
                Columns.OBS: _stack(obs[:T]),
                Columns.ACTIONS: np.asarray(sa.get_actions()),
                Columns.ACTION_LOGP: np.asarray(sa.get_extra_model_outputs(Columns.ACTION_LOGP), np.float32),
                ALIVE: alive,
                EPS_INDEX: np.full(T, index, np.int64),
                ENV_T: np.arange(T, dtype=np.int64),
            }
            rewards.append(np.asarray(sa.get_rewards(), np.float32))
        rewards = np.stack(rewards, axis=1)  # (T, n)
        states = self._states(infos_all, T)
        if self.state_type == "EP":
            rewards = rewards.mean(axis=1, keepdims=True)
        return per_agent, states, rewards, bool(episode.is_terminated)

    def _states(self, infos_all: dict, T: int) -> np.ndarray:
        if self.has_state:
            if self.state_type == "EP":
                first = infos_all[self.agents[0]][1]
                return np.stack([np.asarray(first[t][STATE_KEY], np.float32) for t in range(T + 1)])[:, None]
            return np.stack(
                [
                    np.stack([np.asarray(infos_all[a][1][t][STATE_KEY], np.float32) for a in self.agents])
                    for t in range(T + 1)
                ]
            )
        # No env state: the concatenation of all agents' flat observations (EP).
        flat = []
        for t in range(T + 1):
            parts = []
            for a in self.agents:
                o = infos_all[a][0][t]
                o = o["obs"] if isinstance(o, dict) else o
                parts.append(np.asarray(o, np.float32).ravel())
            flat.append(np.concatenate(parts))
        return np.stack(flat)[:, None]

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        critic = rl_module[CRITIC_MODULE_ID].unwrapped()
        chunks = [self._episode_arrays(ep, i) for i, ep in enumerate(episodes) if ep.env_steps() > 0]
        # One critic forward over every state of every chunk (bootstrap states included).
        all_states = np.concatenate([c[1].reshape(-1, c[1].shape[-1]) for c in chunks])
        import torch

        with torch.no_grad():
            raw = critic.values(torch.as_tensor(all_states, device=self.device))
            denorm = critic.denormalize(raw)
        raw, denorm = raw.cpu().numpy(), denorm.cpu().numpy()

        out = {aid: [] for aid in self.agents}
        crit = {STATE: [], VALUE_TARGETS: [], VALUES: []}
        offset = 0
        for per_agent, states, rewards, terminated in chunks:
            T1, k = states.shape[0], states.shape[1]
            v = denorm[offset : offset + T1 * k].reshape(T1, k)
            v_raw = raw[offset : offset + T1 * k].reshape(T1, k)
            offset += T1 * k
            adv = np.empty((T1 - 1, k), np.float32)
            targets = np.empty((T1 - 1, k), np.float32)
            for j in range(k):
                adv[:, j], targets[:, j] = compute_gae(
                    rewards[:, j], v[:-1, j], v[-1, j], terminated=terminated, gamma=self.gamma, lambda_=self.lambda_
                )
            for i, aid in enumerate(self.agents):
                per_agent[aid][ADVANTAGES] = adv[:, 0] if k == 1 else adv[:, i]
                out[aid].append(per_agent[aid])
            crit[STATE].append(states[:-1].reshape(-1, states.shape[-1]))
            crit[VALUE_TARGETS].append(targets.reshape(-1))
            crit[VALUES].append(v_raw[:-1].reshape(-1))

        result = {aid: tree.map_structure(lambda *xs: np.concatenate(xs), *rows) for aid, rows in out.items()}
        result[CRITIC_MODULE_ID] = {key: np.concatenate(val) for key, val in crit.items()}
        return result
