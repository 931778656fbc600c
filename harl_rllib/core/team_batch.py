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

Recurrent layout (`chunk_length` L set, i.e. `use_recurrent_policy`): every episode
fragment of T steps is cut into ⌈T/L⌉ sequences of L rows, the last one zero-padded, and
the rows above are laid out sequence after sequence (n_seq · L rows), with two more columns:
`loss_mask` (1 on real rows, 0 on padding; padding rows also have alive = 0, eps_index =
env_t = −1) and `state_in` (n_seq, layers, H), the GRU state at each sequence's first step.
Every agent gets the same sequences in the same order, so the factor M stays row-aligned.

* Actors: `state_in` is the state the env runner fed the actor at that step (HARL stores
  rnn states per step and trains each chunk from its first): the module's initial state at
  an episode's first step, else the previous step's recorded STATE_OUT (for a fragment's
  first step, the one in the episode's lookback, i.e. the end of the previous fragment).
* Critic: learner-only, so no env runner records its states. It is run here, in order,
  over each fragment's states (bootstrap state included): from its initial state at an
  episode's first step, else from the state it reached at the end of the episode's
  previous fragment, which this connector keeps, keyed by (episode id, env step), from one
  call to the next (fragments of one episode arriving in one call are run one after the
  other). Those states were computed with the critic of that time, as HARL's stored critic
  states are. A continuation without a kept state (e.g. right after restoring from a
  checkpoint) starts from the initial state and is counted in `missing_critic_states`.
  The critic's sequences are L rows of one state stream (EP: one per fragment; FP: one per
  agent), with their own `state_in` and `loss_mask`.

RLlib's own learner connectors (AddTimeDimToBatchAndZeroPad, AddStatesFromEpisodesToBatch)
build the same actor chunks, but per module; the team batch needs every agent's rows aligned,
the joint GAE and the critic's states, so it builds them here. The modules' `max_seq_len` is
set to the same chunk length, so both would agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.numpy import convert_to_numpy

from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.advantages import compute_gae
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY

ADVANTAGES = "advantages"
VALUE_TARGETS = "value_targets"
ALIVE = "alive"
EPS_INDEX = "eps_index"
ENV_T = "env_t"
LOSS_MASK = Columns.LOSS_MASK
STATE_IN = Columns.STATE_IN
MISSING_CRITIC_STATES = "missing_critic_states"


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


def sequence_layout(T: int, L: int) -> tuple[int, np.ndarray]:
    """(n_seq, row → step index or −1): T steps in ⌈T/L⌉ sequences of L rows, padded at the end."""
    n_seq = -(-T // L)
    steps = np.arange(n_seq * L)
    return n_seq, np.where(steps < T, steps, -1)


def pad_rows(x: Any, n_rows: int, fill: float = 0) -> Any:
    """Append rows of `fill` to every array (of a possibly nested structure) up to n_rows."""

    def pad(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        out = np.full((n_rows, *a.shape[1:]), fill, dtype=a.dtype)
        out[: len(a)] = a
        return out

    return tree.map_structure(pad, x)


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
        # Recurrent layout (see module doc) when set; `agent_modules` maps agents to actor modules.
        self.chunk_length = chunk_length
        self.agent_modules = dict(agent_modules or {a: a for a in self.agents})
        # (episode id, env step) → the critic's GRU state before that step, (k, layers, H).
        self._critic_carry: dict[tuple[str, int], np.ndarray] = {}
        self.missing_critic_states = 0

    def _episode_arrays(self, episode, index: int) -> tuple[dict, np.ndarray, np.ndarray, bool]:
        """Per-agent arrays of one episode chunk, its states (T+1, k, S) and rewards (T, k)."""
        T, steps = agent_steps(episode, self.agents)
        per_agent, rewards = {}, []
        for aid in self.agents:
            sa, obs, _, alive = steps[aid]
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
        states = team_states(steps, self.agents, T, self.state_type, self.has_state)
        if self.state_type == "EP":
            rewards = rewards.mean(axis=1, keepdims=True)
        return per_agent, states, rewards, team_terminated(episode)

    def _actor_state_in(self, sa, T: int, rl_module, aid: str) -> np.ndarray:
        """The actor's GRU state at every sequence start (n_seq, layers, H): what the env runner
        fed the actor at those steps (see module doc)."""
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
        starts = range(0, T, self.chunk_length)
        return np.stack([np.asarray(first if t == 0 else outs[t - 1][HIDDEN], np.float32) for t in starts])

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        if self.chunk_length is not None:
            return self._recurrent_batch(rl_module, episodes, metrics)
        critic = rl_module[CRITIC_MODULE_ID].unwrapped()
        chunks = [self._episode_arrays(ep, i) for i, ep in enumerate(episodes) if ep.env_steps() > 0]
        # One critic forward over every state of every chunk (bootstrap states included).
        all_states = np.concatenate([c[1].reshape(-1, c[1].shape[-1]) for c in chunks])

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

    # ---- recurrent layout ---------------------------------------------------------------

    def _recurrent_critic(self, critic, episodes: list, chunks: list) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the critic's GRU over every fragment in episode order (see module doc).

        Returns per fragment (raw values (T+1, k), states before each step (T, k, layers, H)).
        Fragments of one episode are run in rounds (the r-th fragment of every episode in
        round r), so each starts from the state its predecessor ended with."""
        initial = np.asarray(convert_to_numpy(critic.get_initial_state())[HIDDEN], np.float32)
        order = sorted(range(len(chunks)), key=lambda i: (episodes[i].id_, episodes[i].env_t_started))
        rounds: list[list[int]] = []
        seen: dict[str, int] = {}
        for i in order:
            r = seen[episodes[i].id_] = seen.get(episodes[i].id_, -1) + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(i)
        carry, used = dict(self._critic_carry), {}
        results: list = [None] * len(chunks)
        for members in rounds:
            h0 = []
            for i in members:
                ep, k = episodes[i], chunks[i][1].shape[1]
                key = (ep.id_, ep.env_t_started)
                if ep.env_t_started == 0:
                    h0.append(np.broadcast_to(initial, (k, *initial.shape)))
                elif key in carry:
                    h0.append(used.setdefault(key, carry[key]))
                else:
                    self.missing_critic_states += 1
                    h0.append(np.broadcast_to(initial, (k, *initial.shape)))
            T1 = max(chunks[i][1].shape[0] for i in members)
            seqs = np.concatenate([np.swapaxes(pad_rows(chunks[i][1], T1), 0, 1) for i in members])  # (Σk, T1, S)
            with torch.no_grad():
                raw, states = critic.values_and_states(
                    torch.as_tensor(seqs, device=self.device),
                    torch.as_tensor(np.concatenate(h0), device=self.device),
                )
            raw, states = raw.cpu().numpy(), states.cpu().numpy()
            offset = 0
            for i, h in zip(members, h0, strict=True):
                ep, (T_plus_1, k) = episodes[i], chunks[i][1].shape[:2]
                T = T_plus_1 - 1
                v = raw[offset : offset + k, :T_plus_1].T  # (T+1, k)
                st = np.swapaxes(states[offset : offset + k, :T], 0, 1)  # after each step, (T, k, layers, H)
                before = np.concatenate([np.asarray(h)[None], st[:-1]])  # before each step
                results[i] = (v, before)
                if not ep.is_done:
                    carry[(ep.id_, ep.env_t_started + T)] = st[-1]
                offset += k
        # Keep the states the next call can need: the ends of this call's fragments and the
        # starts it used (so that the same episodes can be batched again).
        ends = {(ep.id_, ep.env_t_started + ep.env_steps()) for ep in episodes if not ep.is_done}
        self._critic_carry = {key: carry[key] for key in carry if key in ends or key in used}
        return results

    def _recurrent_batch(self, rl_module, episodes, metrics) -> dict:
        L = self.chunk_length
        critic = rl_module[CRITIC_MODULE_ID].unwrapped()
        indexed = [(i, ep) for i, ep in enumerate(episodes) if ep.env_steps() > 0]
        episodes = [ep for _, ep in indexed]
        chunks = [self._episode_arrays(ep, i) for i, ep in indexed]
        missing_before = self.missing_critic_states
        critic_runs = self._recurrent_critic(critic, episodes, chunks)
        out = {aid: [] for aid in self.agents}
        crit: dict[str, list] = {STATE: [], VALUE_TARGETS: [], VALUES: [], LOSS_MASK: [], STATE_IN: []}
        for ep, (per_agent, states, rewards, terminated), (v_raw, h_before) in zip(
            episodes, chunks, critic_runs, strict=True
        ):
            T, k = states.shape[0] - 1, states.shape[1]
            with torch.no_grad():
                v = critic.denormalize(torch.as_tensor(v_raw, device=self.device)).cpu().numpy()
            adv = np.empty((T, k), np.float32)
            targets = np.empty((T, k), np.float32)
            for j in range(k):
                adv[:, j], targets[:, j] = compute_gae(
                    rewards[:, j], v[:-1, j], v[-1, j], terminated=terminated, gamma=self.gamma, lambda_=self.lambda_
                )
            n_seq, step = sequence_layout(T, L)
            n_rows, valid = n_seq * L, (step >= 0).astype(np.float32)
            for i, aid in enumerate(self.agents):
                rows = per_agent[aid]
                rows[ADVANTAGES] = adv[:, 0] if k == 1 else adv[:, i]
                sa = ep.agent_episodes[aid]
                padded = {key: pad_rows(val, n_rows) for key, val in rows.items() if key not in (EPS_INDEX, ENV_T)}
                padded[EPS_INDEX] = pad_rows(rows[EPS_INDEX], n_rows, fill=-1)
                padded[ENV_T] = pad_rows(rows[ENV_T], n_rows, fill=-1)
                padded[LOSS_MASK] = valid
                padded[STATE_IN] = self._actor_state_in(sa, T, rl_module, aid)
                out[aid].append(padded)
            # Critic sequences: for each sequence start, one per state stream (EP 1, FP k).
            for p in range(n_seq):
                lo, hi = p * L, min((p + 1) * L, T)
                for j in range(k):
                    crit[STATE].append(pad_rows(states[lo:hi, j], L))
                    crit[VALUE_TARGETS].append(pad_rows(targets[lo:hi, j], L))
                    crit[VALUES].append(pad_rows(v_raw[lo:hi, j], L))
                    crit[LOSS_MASK].append(pad_rows(np.ones(hi - lo, np.float32), L))
                    crit[STATE_IN].append(h_before[lo, j][None])
        if metrics is not None:
            metrics.log_value(
                (CRITIC_MODULE_ID, MISSING_CRITIC_STATES), self.missing_critic_states - missing_before, reduce="sum"
            )
        result = {aid: tree.map_structure(lambda *xs: np.concatenate(xs), *rows) for aid, rows in out.items()}
        result[CRITIC_MODULE_ID] = {key: np.concatenate(val).astype(np.float32) for key, val in crit.items()}
        return result
