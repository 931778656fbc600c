"""Learner connector: multi-agent episodes → one row-aligned team batch + joint GAE.

RLlib's episode path (`sampling="episodes"`, for envs outside the team contract) ends here;
team rollouts are batched in sampling/rollout.py. Replaces RLlib's default learner pipeline
(which batches per module and runs GAE per module with each module's own value head):

* every agent's rows are the same env steps in the same order, by construction: episodes are
  walked once, and for each episode all agents' arrays are cut from t = 0..T-1 into a
  `Fragment` (core/fragments.py); an agent that skipped a step is an error (envs/contract.py);
* the centralized critic (learner-only module) values every state, including the bootstrap
  state after the last step, in one forward pass;
* GAE(γ, λ) per fragment gives one joint advantage (EP) or one per agent (FP).

Output, keyed like a MultiAgentBatch but by *agent* id (the learner maps agents to modules):
for each agent {obs, actions, action_logp, alive, advantages, eps_index, env_t}; under
CRITIC_MODULE_ID {state, value_targets, values}; the recurrent layout is core/fragments.py's.

Actors' GRU states: the state the env runner fed the actor at each step is the module's
initial state at an episode's first step, else the previous step's recorded STATE_OUT (for a
fragment's first step, the one in the episode's lookback, i.e. the end of the previous
fragment). RLlib's own learner connectors (AddTimeDimToBatchAndZeroPad,
AddStatesFromEpisodesToBatch) build the same actor chunks, but per module; the team batch
needs every agent's rows aligned, the joint GAE and the critic's states, so it builds them
here. The modules' `max_seq_len` is set to the same chunk length, so both would agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tree
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.numpy import convert_to_numpy

from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.critic import CRITIC_MODULE_ID
from harl_rllib.core.fragments import ALIVE, ENV_T, EPS_INDEX, Fragment, RecurrentBatcher, feedforward_batch
from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY


def _stack(items: Sequence[Any]) -> Any:
    """Stack a list of (possibly dict) observations into arrays."""
    return tree.map_structure(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


def _as_list(x: Any, n: int) -> list:
    """An episode getter's output as a list of n per-step items."""
    if isinstance(x, dict):
        return [tree.map_structure(lambda a, i=i: a[i], x) for i in range(n)]
    return [x[i] for i in range(n)]


def agent_steps(episode, agents: Sequence[str]) -> tuple[int, dict[str, tuple]]:
    """T and, per agent, (single-agent episode, T + 1 observations, T + 1 infos, T alive flags).
    An agent that did not act at every step of the chunk is an error (see envs/contract.py)."""
    T = episode.env_steps()
    out = {}
    for aid in agents:
        sa = episode.agent_episodes.get(aid)
        if sa is None or len(sa) != T:
            raise ValueError(
                f"Agent {aid!r} did not act at every step of an episode ({0 if sa is None else len(sa)} "
                f"of {T} steps). harl_rllib needs every agent in every step (keep dead agents in "
                "the episode with info['alive']=False): see harl_rllib/envs/contract.py."
            )
        infos = list(sa.get_infos())
        alive = np.array([float(i.get(ALIVE_KEY, True)) if i else 1.0 for i in infos[:T]], np.float32)
        out[aid] = (sa, _as_list(sa.get_observations(), T + 1), infos, alive)
    return T, out


def team_terminated(episode) -> bool:
    """Whether the chunk ends in a terminal state (no bootstrap), as the env reported it.

    RLlib's `MultiAgentEpisode.add_env_step` sets `is_terminated = True` whenever every agent
    is done, truncated agents included, and hands that flag to every agent's episode, so a
    time-limit truncation (MPE's 25 steps, MAMuJoCo's 1000, SMAX/SMAC time limits) reads as a
    termination there. `is_truncated` keeps the env's `truncated["__all__"]`, and the team
    envs never report both (a terminal step is not a truncation): terminated = is_terminated
    and not is_truncated. HARL's `use_proper_time_limits` bootstraps at truncations."""
    return bool(episode.is_terminated and not episode.is_truncated)


def team_states(steps: dict[str, tuple], agents: Sequence[str], T: int, state_type: str, has_state: bool) -> np.ndarray:
    """(T + 1, k, S) global states from `agent_steps` output: info['state'] of the first agent (EP,
    k = 1) or of every agent (FP, k = n); without an env state, all agents' flat observations
    concatenated (EP)."""
    if has_state:
        if state_type == "EP":
            first = steps[agents[0]][2]
            return np.stack([np.asarray(first[t][STATE_KEY], np.float32) for t in range(T + 1)])[:, None]
        return np.stack(
            [np.stack([np.asarray(steps[a][2][t][STATE_KEY], np.float32) for a in agents]) for t in range(T + 1)]
        )
    flat = []
    for t in range(T + 1):
        parts = []
        for a in agents:
            o = steps[a][1][t]
            o = o["obs"] if isinstance(o, dict) else o
            parts.append(np.asarray(o, np.float32).ravel())
        flat.append(np.concatenate(parts))
    return np.stack(flat)[:, None]


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
        chunk_length: int | None = None,
        agent_modules: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.agents = list(agents)
        self.gamma, self.lambda_ = gamma, lambda_
        self.state_type, self.has_state = state_type, has_state
        self.device = device
        # Recurrent layout (core/fragments.py) when set; `agent_modules` maps agents to actor modules.
        self.agent_modules = dict(agent_modules or {a: a for a in self.agents})
        self.recurrent = (
            RecurrentBatcher(agents=agents, gamma=gamma, lambda_=lambda_, chunk_length=chunk_length, device=device)
            if chunk_length is not None
            else None
        )

    def _fragment(self, episode, index: int, rl_module) -> Fragment:
        """One episode chunk as a fragment (core/fragments.py)."""
        T, steps = agent_steps(episode, self.agents)
        rows, rewards = {}, []
        for aid in self.agents:
            sa, obs, _, alive = steps[aid]
            rows[aid] = {
                Columns.OBS: _stack(obs[:T]),
                Columns.ACTIONS: np.asarray(sa.get_actions()),
                Columns.ACTION_LOGP: np.asarray(sa.get_extra_model_outputs(Columns.ACTION_LOGP), np.float32),
                ALIVE: alive,
                EPS_INDEX: np.full(T, index, np.int64),
                ENV_T: np.arange(T, dtype=np.int64),
            }
            rewards.append(np.asarray(sa.get_rewards(), np.float32))
        rewards = np.stack(rewards, axis=1)  # (T, n)
        if self.state_type == "EP":
            rewards = rewards.mean(axis=1, keepdims=True)
        return Fragment(
            rows=rows,
            states=team_states(steps, self.agents, T, self.state_type, self.has_state),
            rewards=rewards,
            terminated=team_terminated(episode),
            done=episode.is_done,
            episode=episode.id_,
            t0=episode.env_t_started,
            actor_states=(
                {aid: self._actor_states(steps[aid][0], T, rl_module, aid) for aid in self.agents}
                if self.recurrent is not None
                else None
            ),
        )

    def _actor_states(self, sa, T: int, rl_module, aid: str) -> np.ndarray:
        """The actor's GRU state before each step (T, layers, H): what the env runner fed it
        (see module doc)."""
        module = rl_module[self.agent_modules[aid]]
        initial = np.asarray(convert_to_numpy(module.get_initial_state())[HIDDEN], np.float32)
        if Columns.STATE_OUT not in sa.extra_model_outputs:
            raise ValueError(
                f"Agent {aid!r}: the episode has no recorded STATE_OUT; a recurrent actor's episodes must "
                "come from env runners that ran the same recurrent module."
            )
        outs = sa.get_extra_model_outputs(Columns.STATE_OUT)
        first = (
            initial
            if sa.t_started == 0
            else sa.get_extra_model_outputs(Columns.STATE_OUT, -1, neg_index_as_lookback=True)[HIDDEN]
        )
        return np.stack([np.asarray(first if t == 0 else outs[t - 1][HIDDEN], np.float32) for t in range(T)])

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        critic = rl_module[CRITIC_MODULE_ID].unwrapped()
        fragments = [self._fragment(ep, i, rl_module) for i, ep in enumerate(episodes) if ep.env_steps() > 0]
        if self.recurrent is not None:
            return self.recurrent(critic, fragments, metrics)
        return feedforward_batch(
            critic, fragments, agents=self.agents, gamma=self.gamma, lambda_=self.lambda_, device=self.device
        )
