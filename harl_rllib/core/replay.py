"""Replay of team transitions for the off-policy family, with n-step returns.

`episode_transitions` cuts a multi-agent episode chunk into row-aligned team
transitions: every agent's obs, action, next obs and alive flag at the same env step,
the global state before and after it (the env's, or all observations concatenated), the
team reward, and `terminated`, kept apart from truncation: only a terminal step stops the
bootstrap (HARL's `use_proper_time_limits`). EP: one state and the agents' mean reward per
row, as the on-policy team batch. FP (HARL's `OffPolicyBufferFP`): each agent's own state
(n, S) and its own reward (n,) per row.

`TeamReplayBuffer` is a ring buffer over those rows. Rows of one episode are linked
(each row knows the next row of its episode, even across sample() calls), and n-step
targets are made when sampling, as HARL's `OffPolicyBuffer.sample`: from row t, sum
γᵏ r_{t+k} for k < n while no row on the way ended its episode (terminated or truncated)
or is the newest row of an episode still running; bootstrap from the next state of the
last row reached, with discount γ^(steps) and (1 − terminated) of that row.

RLlib's `EpisodeReplayBuffer` family stores per-agent episodes and samples per module;
the centralized critic needs every agent's row of the same step together, so the team's
rows are stored here instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tree
from ray.rllib.core.columns import Columns

from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.team_batch import _stack, agent_steps, team_states, team_terminated

NEXT_OBS = "next_obs"
NEXT_STATE = "next_state"
REWARD = "reward"
TERMINATED = "terminated"
DISCOUNT = "discount"  # γ^(steps summed) for the bootstrap of an n-step target
NSTEP_LAST = "nstep_last"  # buffer index of the row an n-step target bootstraps from


def episode_transitions(
    episode, agents: Sequence[str], has_state: bool, state_type: str = "EP"
) -> dict[str, Any] | None:
    """The chunk's T transitions as {agent: {obs, actions, next_obs, alive}, state,
    next_state, reward, terminated} (see module doc); None for an empty chunk."""
    if episode.env_steps() == 0:
        return None
    T, steps = agent_steps(episode, agents)
    out: dict[str, Any] = {}
    rewards = []
    for aid in agents:
        sa, obs, _, alive = steps[aid]
        out[aid] = {
            Columns.OBS: _stack(obs[:T]),
            NEXT_OBS: _stack(obs[1 : T + 1]),
            Columns.ACTIONS: np.asarray(sa.get_actions()),
            ALIVE: alive,
        }
        rewards.append(np.asarray(sa.get_rewards(), np.float32))
    states = team_states(steps, agents, T, state_type, has_state)
    if state_type == "EP":
        states = states[:, 0]
    out["state"], out[NEXT_STATE] = states[:T], states[1:]
    out[REWARD] = team_reward(np.stack(rewards, axis=1), state_type)
    term = np.zeros(T, np.float32)
    term[-1] = float(team_terminated(episode))
    out[TERMINATED] = term
    return out


def team_reward(rewards: np.ndarray, state_type: str) -> np.ndarray:
    """(..., n) agents' rewards → the stored reward: EP their mean, FP each agent's own."""
    return rewards.mean(axis=-1) if state_type == "EP" else rewards


def rollout_transitions(rollout, state_type: str = "EP") -> Iterator[tuple[dict[str, Any], int, bool]]:
    """A team rollout's transitions as `episode_transitions` gives them, one (rows, episode id,
    episode ended) per episode piece of each env (a Python loop over pieces, not steps)."""
    reward = team_reward(rollout.rewards, state_type)
    k = 0 if state_type == "EP" else slice(None)  # the rollout's states are (T, B, k, S)
    for b, s, e, done in rollout.pieces():
        rows: dict[str, Any] = {
            a: {
                Columns.OBS: tree.map_structure(lambda x: x[s:e, b], rollout.obs[a]),  # noqa: B023
                NEXT_OBS: tree.map_structure(lambda x: x[s:e, b], rollout.next_obs[a]),  # noqa: B023
                Columns.ACTIONS: rollout.actions[a][s:e, b],
                ALIVE: rollout.alive[a][s:e, b],
            }
            for a in rollout.agents
        }
        rows["state"], rows[NEXT_STATE] = rollout.state[s:e, b, k], rollout.next_state[s:e, b, k]
        rows[REWARD] = reward[s:e, b]
        rows[TERMINATED] = rollout.terminated[s:e, b].astype(np.float32)
        yield rows, int(rollout.episode_id[s, b]), done


class TeamReplayBuffer:
    """FIFO ring buffer of team transitions with n-step sampling (see module doc)."""

    def __init__(self, capacity: int, n_step: int = 1, gamma: float = 0.99, seed: int | None = None) -> None:
        self.capacity, self.n_step, self.gamma = int(capacity), int(n_step), float(gamma)
        self.rng = np.random.default_rng(seed)
        self._data: Any = None
        self._next = np.full(self.capacity, -1, np.int64)  # next row of the same episode, -1: none yet
        self._ended = np.zeros(self.capacity, bool)  # the episode ended at this row (term. or trunc.)
        self._owner = np.full(self.capacity, -1, np.int64)  # which episode wrote the row
        self._open: dict[str, tuple[int, int]] = {}  # running episode id → (owner id, its newest row)
        self._owners = 0
        self._pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, rows: dict[str, Any], episode_id: str, done: bool) -> None:
        """Append one episode chunk's T rows; link them to the episode's previous rows."""
        T = len(rows[REWARD])
        if T > self.capacity:
            raise ValueError(f"An episode chunk of {T} steps does not fit a buffer of {self.capacity}")
        if self._data is None:
            self._data = tree.map_structure(lambda x: np.zeros((self.capacity, *x.shape[1:]), x.dtype), rows)
        idx = (self._pos + np.arange(T)) % self.capacity
        owner, prev = self._open.pop(episode_id, (None, -1))
        # The episode's newest row must still be its own and not among the rows overwritten now.
        if owner is None or self._owner[prev] != owner or np.isin(prev, idx):
            owner, prev = self._owners, -1
            self._owners += 1
        self._next[idx] = -1
        tree.map_structure(lambda store, x: store.__setitem__(idx, x), self._data, rows)
        if prev >= 0:
            self._next[prev] = idx[0]
        self._next[idx[:-1]] = idx[1:]
        self._owner[idx] = owner
        self._ended[idx] = False
        self._ended[idx[-1]] = bool(done)
        if not done:
            self._open[episode_id] = (owner, int(idx[-1]))
        self._pos = int((self._pos + T) % self.capacity)
        self.size = min(self.size + T, self.capacity)

    def forget(self, keep_episode_ids: set[str]) -> None:
        """Drop the links of running episodes not in `keep_episode_ids` (e.g. env restarts)."""
        for eid in list(self._open):
            if eid not in keep_episode_ids:
                del self._open[eid]

    def nstep(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n-step reward sum, index of the last row reached, γ^steps, terminated at that row)."""
        rewards = self._data[REWARD]  # (size,) EP, (size, n) FP
        ret = np.zeros((len(idx), *rewards.shape[1:]), np.float64)
        cur = idx.copy()
        running = np.ones(len(idx), bool)
        steps = np.zeros(len(idx), np.int64)
        for k in range(self.n_step):
            if k > 0:  # step on unless the row reached ended its episode or is its newest
                running &= ~(self._ended[cur] | (self._next[cur] < 0))
                cur = np.where(running, self._next[cur], cur)
            ret += np.where(running.reshape(-1, *[1] * (rewards.ndim - 1)), self.gamma**k * rewards[cur], 0.0)
            steps += running
        return ret.astype(np.float32), cur, (self.gamma**steps).astype(np.float32), self._data[TERMINATED][cur]

    def sample(self, batch_size: int) -> dict[str, Any]:
        """`batch_size` rows drawn uniformly without replacement (HARL: randperm), with the
        n-step reward, next state/obs of the last row reached, its terminated flag and γ^steps."""
        if self.size == 0:
            raise ValueError("The replay buffer is empty.")
        idx = self.rng.choice(self.size, size=min(batch_size, self.size), replace=False)
        batch = tree.map_structure(lambda x: x[idx], self._data)
        if self.n_step > 1:
            ret, last, discount, term = self.nstep(idx)
            batch[REWARD], batch[TERMINATED] = ret, term
            batch[NEXT_STATE] = self._data[NEXT_STATE][last]
            for key, val in self._data.items():
                if isinstance(val, dict) and NEXT_OBS in val:
                    batch[key][NEXT_OBS] = tree.map_structure(lambda x: x[last], val[NEXT_OBS])
        else:
            discount = np.full(len(idx), self.gamma, np.float32)
            last = idx
        batch[DISCOUNT] = discount
        batch[NSTEP_LAST] = last
        return batch

    def get_state(self) -> dict[str, Any]:
        return {
            "data": self._data,
            "next": self._next,
            "ended": self._ended,
            "owner": self._owner,
            "open": dict(self._open),
            "owners": self._owners,
            "pos": self._pos,
            "size": self.size,
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        # Copies: a state that came through Ray's object store (a remote learner's restore) is
        # read-only, zero-copy memory.
        state = tree.map_structure(lambda x: np.array(x) if isinstance(x, np.ndarray) else x, state)
        self._data, self._next, self._ended = state["data"], state["next"], state["ended"]
        self._owner, self._open, self._owners = state["owner"], dict(state["open"]), state["owners"]
        self._pos, self.size = state["pos"], state["size"]
        self.rng.bit_generator.state = state["rng"]
