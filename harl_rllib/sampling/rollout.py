"""A team rollout: T steps of B team envs as dense arrays, and the team batch built from it.

Every env that follows the team contract (envs/contract.py: every agent acts at every step)
gives dense data, so one env runner's `sample()` is a handful of (T, B, ...) arrays instead of
B × n per-agent episodes with per-step Python objects. The learner turns rollouts into the same
team batch the episode path builds (core/team_batch.py): one critic pass, GAE over (T, B) with
termination and truncation kept apart, every agent's rows the same env steps.

Rows of the team batch are env-major (env b's T steps, then env b+1's), as the episode path
lays out its chunks one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns

from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.core.fragments import ADVANTAGES, ALIVE, ENV_T, EPS_INDEX, VALUE_TARGETS, Fragment


@dataclass
class TeamRollout:
    """One env runner's sample: T steps of B envs.

    obs[agent]: (T, B, *shape), or {"obs": ..., "action_mask": ...} of such arrays;
    actions[agent]: (T, B, *action_shape); logp[agent], alive[agent]: (T, B);
    rewards: (T, B, n) in team order; terminated, truncated: (T, B) (an env never reports
    both); state: (T, B, k, S), the global state at each step (k = 1 EP, n FP);
    next_state: (T, B, k, S), the state after each step in the same episode (the final
    state where the episode ended, the bootstrap state at the rollout's last step);
    episode_id, env_t: (T, B) int64, each step's episode (unique across env runners) and its
    step in that episode; actor_states[agent]: (T, B, layers, H), a recurrent actor's GRU
    state before each step (empty for feed-forward actors); next_obs[agent]: like obs, the
    observation after each step in the same episode (the final one where the episode ended;
    recorded for the off-policy family's replay only, else empty).
    """

    agents: tuple[str, ...]
    obs: dict[str, Any]
    actions: dict[str, np.ndarray]
    logp: dict[str, np.ndarray]
    alive: dict[str, np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    state: np.ndarray
    next_state: np.ndarray
    episode_id: np.ndarray
    env_t: np.ndarray
    actor_states: dict[str, np.ndarray] = field(default_factory=dict)
    next_obs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(T, B)."""
        return self.terminated.shape

    def __len__(self) -> int:
        """Env steps (T · B), as RLlib counts an episode's length."""
        T, B = self.shape
        return T * B

    def env_steps(self) -> int:
        return len(self)

    def pieces(self) -> Iterator[tuple[int, int, int, bool]]:
        """(env b, first step, end step, the episode ended at its last step) for every episode
        piece of every env, env by env: a piece ends where an episode ended or at the rollout's end."""
        T, B = self.shape
        ended = self.terminated | self.truncated
        for b in range(B):
            bounds = [0, *(np.flatnonzero(ended[:-1, b]) + 1), T]
            for s, e in zip(bounds[:-1], bounds[1:], strict=True):
                yield b, int(s), int(e), bool(ended[e - 1, b])

    def envs(self, index: np.ndarray) -> TeamRollout:
        """The rollout of the envs in `index` (a shard for one of several learners)."""
        return self._map(lambda x: x[:, index])

    def steps(self, start: int, stop: int) -> TeamRollout:
        """Steps [start, stop) of every env: a cut trajectory bootstraps from its next state."""
        return self._map(lambda x: x[start:stop])

    def _map(self, pick) -> TeamRollout:
        return TeamRollout(
            agents=self.agents,
            obs={a: tree.map_structure(pick, o) for a, o in self.obs.items()},
            actions={a: pick(x) for a, x in self.actions.items()},
            logp={a: pick(x) for a, x in self.logp.items()},
            alive={a: pick(x) for a, x in self.alive.items()},
            rewards=pick(self.rewards),
            terminated=pick(self.terminated),
            truncated=pick(self.truncated),
            state=pick(self.state),
            next_state=pick(self.next_state),
            episode_id=pick(self.episode_id),
            env_t=pick(self.env_t),
            actor_states={a: pick(x) for a, x in self.actor_states.items()},
            next_obs={a: tree.map_structure(pick, o) for a, o in self.next_obs.items()},
        )


def env_streams(rollouts: Sequence[TeamRollout]) -> list[list[tuple[int, int]]]:
    """The (rollout, env) pairs of one iteration grouped by env stream, in order: a pair whose
    first step continues the episode another pair's last step left running (an env sampled by
    several `sample()` calls) joins that pair's stream."""
    streams: list[list[tuple[int, int]]] = []
    running: dict[int, list[tuple[int, int]]] = {}
    for i, r in enumerate(rollouts):
        for b in range(r.shape[1]):
            stream = running.pop(int(r.episode_id[0, b]), None) if r.env_t[0, b] > 0 else None
            if stream is None:
                stream = []
                streams.append(stream)
            stream.append((i, b))
            if not (r.terminated[-1, b] or r.truncated[-1, b]):
                running[int(r.episode_id[-1, b])] = stream
    return streams


def shard_rollouts(rollouts: Sequence[TeamRollout], num_shards: int) -> list[list[TeamRollout]]:
    """Split rollouts over `num_shards` learners: by env stream where there are at least as
    many streams as shards (each shard's GAE is the unsplit one, and a recurrent critic runs
    each stream on one learner), else each rollout by time into `num_shards` pieces (a piece
    ending mid-episode bootstraps there, as RLlib's episode sharding cuts episodes)."""
    streams = env_streams(rollouts)
    shards: list[list[TeamRollout]] = [[] for _ in range(num_shards)]
    if len(streams) < num_shards:
        for r in rollouts:
            bounds = np.linspace(0, r.shape[0], num_shards + 1).astype(int)
            for shard, start, stop in zip(shards, bounds[:-1], bounds[1:], strict=True):
                if stop > start:
                    shard.append(r.steps(start, stop))
        return shards
    for shard, part in zip(shards, np.array_split(np.arange(len(streams)), num_shards), strict=True):
        pairs = [pair for j in part for pair in streams[j]]
        for i in sorted({i for i, _ in pairs}):
            shard.append(rollouts[i].envs(np.array([b for r, b in pairs if r == i])))
    return shards


def vectorized_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(γ, λ) over (T, B, k) arrays: δ_t = r_t + γ·(1 − term_t)·V(s'_t) − V(s_t), and the
    sum stops where an episode ended (terminated or truncated) and at the rollout's end. A
    truncated step bootstraps from its final state's value, as `compute_gae` does per chunk.
    Returns (advantages, value targets), float32."""
    r, v, v_next = (np.asarray(x, np.float64) for x in (rewards, values, next_values))
    term = terminated[..., None].astype(np.float64)
    cont = 1.0 - (terminated | truncated)[..., None].astype(np.float64)
    deltas = r + gamma * (1.0 - term) * v_next - v
    adv = np.empty_like(deltas)
    gae = np.zeros_like(deltas[0])
    for t in range(len(deltas) - 1, -1, -1):
        gae = deltas[t] + gamma * lambda_ * cont[t] * gae
        adv[t] = gae
    return adv.astype(np.float32), (adv + v).astype(np.float32)


def _env_major(x: np.ndarray) -> np.ndarray:
    """(T, B, ...) → (B · T, ...), env b's steps in order, then env b + 1's."""
    return np.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def rollout_team_batch(
    rollouts: Sequence[TeamRollout],
    critic: Any,
    *,
    agents: Sequence[str],
    gamma: float,
    lambda_: float,
    state_type: str,
    device: Any = "cpu",
) -> dict[str, dict[str, np.ndarray]]:
    """The team batch of `core/team_batch.py`'s layout from rollouts (see module doc)."""
    agents = list(agents)
    states = [np.concatenate([r.state, r.next_state]) for r in rollouts]  # (2T, B, k, S) each
    flat = np.concatenate([s.reshape(-1, s.shape[-1]) for s in states])
    with torch.no_grad():
        raw = critic.values(torch.as_tensor(flat, dtype=torch.float32, device=device))
        denorm = critic.denormalize(raw).cpu().numpy()
    raw = raw.cpu().numpy()

    out: dict[str, list] = {a: [] for a in agents}
    crit: dict[str, list] = {STATE: [], VALUE_TARGETS: [], VALUES: []}
    offset, env_offset = 0, 0
    for rollout, s in zip(rollouts, states, strict=True):
        T, B = rollout.shape
        k = s.shape[2]
        n = s.shape[0] * B * k
        v_all, raw_all = denorm[offset : offset + n].reshape(2 * T, B, k), raw[offset : offset + n]
        offset += n
        rewards = rollout.rewards.mean(axis=2, keepdims=True) if state_type == "EP" else rollout.rewards
        adv, targets = vectorized_gae(
            rewards, v_all[:T], v_all[T:], rollout.terminated, rollout.truncated, gamma, lambda_
        )
        env_index = np.repeat(np.arange(env_offset, env_offset + B, dtype=np.int64), T)
        env_t = np.tile(np.arange(T, dtype=np.int64), B)
        env_offset += B
        for i, a in enumerate(agents):
            out[a].append(
                {
                    Columns.OBS: tree.map_structure(_env_major, rollout.obs[a]),
                    Columns.ACTIONS: _env_major(rollout.actions[a]),
                    Columns.ACTION_LOGP: _env_major(rollout.logp[a]),
                    ALIVE: _env_major(rollout.alive[a]),
                    ADVANTAGES: _env_major(adv[..., 0] if k == 1 else adv[..., i]),
                    EPS_INDEX: env_index,
                    ENV_T: env_t,
                }
            )
        crit[STATE].append(_env_major(rollout.state).reshape(-1, s.shape[-1]))
        crit[VALUE_TARGETS].append(_env_major(targets).reshape(-1))
        crit[VALUES].append(_env_major(raw_all.reshape(2 * T, B, k)[:T]).reshape(-1))
    result = {a: tree.map_structure(lambda *xs: np.concatenate(xs), *rows) for a, rows in out.items()}
    result[CRITIC_MODULE_ID] = {key: np.concatenate(val).astype(np.float32) for key, val in crit.items()}
    return result


def rollout_fragments(rollouts: Sequence[TeamRollout], *, agents: Sequence[str], state_type: str) -> list[Fragment]:
    """The episode pieces of rollouts as fragments (core/fragments.py), env by env: the recurrent
    layout cuts its chunks per episode and carries the critic's state from one piece of an
    episode to the next. A Python loop over episode pieces, not over steps."""
    fragments, index = [], 0
    for r in rollouts:
        rewards = r.rewards.mean(axis=2, keepdims=True) if state_type == "EP" else r.rewards
        for b, s, e, done in r.pieces():
            n = e - s
            rows = {
                a: {
                    Columns.OBS: tree.map_structure(lambda x: x[s:e, b], r.obs[a]),  # noqa: B023
                    Columns.ACTIONS: r.actions[a][s:e, b],
                    Columns.ACTION_LOGP: r.logp[a][s:e, b],
                    ALIVE: r.alive[a][s:e, b],
                    EPS_INDEX: np.full(n, index, np.int64),
                    ENV_T: np.arange(n, dtype=np.int64),
                }
                for a in agents
            }
            fragments.append(
                Fragment(
                    rows=rows,
                    states=np.concatenate([r.state[s:e, b], r.next_state[e - 1, b][None]]),
                    rewards=rewards[s:e, b],
                    terminated=bool(r.terminated[e - 1, b]),
                    done=done,
                    episode=int(r.episode_id[s, b]),
                    t0=int(r.env_t[s, b]),
                    actor_states={a: r.actor_states[a][s:e, b] for a in agents} if r.actor_states else None,
                )
            )
            index += 1
    return fragments
