"""Trajectory fragments and the recurrent team batch, shared by both sampling paths.

A fragment is T consecutive steps of one episode in one env, all agents' rows aligned:
RLlib's episode chunks (core/team_batch.py) and the episode pieces of a team rollout
(sampling/rollout.py) both come down to fragments, so the recurrent layout below (chunks of
L steps, the critic's GRU states carried from one fragment of an episode to the next) is
written once.

Recurrent layout (`chunk_length` L, i.e. `use_recurrent_policy`): every fragment of T steps is
cut into ⌈T/L⌉ sequences of L rows, the last one zero-padded; rows are laid out sequence after
sequence (n_seq · L rows), with two more columns: `loss_mask` (1 on real rows, 0 on padding;
padding rows also have alive = 0, eps_index = env_t = −1) and `state_in` (n_seq, layers, H), the
GRU state at each sequence's first step. Every agent gets the same sequences in the same order,
so the factor M stays row-aligned.

* Actors: `state_in` is the state the env runner fed the actor at that step (HARL stores rnn
  states per step and trains each chunk from its first).
* Critic: learner-only, so no env runner records its states. It is run here, in order, over
  each fragment's states (bootstrap state included): from its initial state at an episode's
  first step, else from the state it reached at the end of the episode's previous fragment,
  which the batcher keeps, keyed by (episode, env step), from one call to the next
  (fragments of one episode arriving in one call are run one after the other). Those states
  were computed with the critic of that time, as HARL's stored critic states are. A
  continuation without a kept state (e.g. right after restoring from a checkpoint) starts
  from the initial state and is counted in `missing_critic_states`. The critic's sequences
  are L rows of one state stream (EP: one per fragment; FP: one per agent), with their own
  `state_in` and `loss_mask`.
  With several learners, every learner's kept states are gathered onto every learner after each
  call (`gather`), so the next fragment of an episode finds its state on whichever learner it
  lands, and the first learner's checkpoint (RLlib saves that one) holds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.utils.numpy import convert_to_numpy

from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.advantages import compute_gae
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES

ADVANTAGES = "advantages"
VALUE_TARGETS = "value_targets"
ALIVE = "alive"
EPS_INDEX = "eps_index"
ENV_T = "env_t"
LOSS_MASK = Columns.LOSS_MASK
STATE_IN = Columns.STATE_IN
MISSING_CRITIC_STATES = "missing_critic_states"


@dataclass
class Fragment:
    """T steps of one episode in one env.

    rows[agent]: {obs, actions, action_logp, alive, eps_index, env_t}, T rows each;
    states: (T + 1, k, S), the global states of the T steps and the state after the last one
    (k = 1 EP, n FP); rewards: (T, k); terminated: the last step ended the episode in a terminal
    state (no bootstrap); done: the episode ended at the last step (terminated or truncated);
    episode, t0: the episode's id and the env step of the first row (the critic's carry key);
    actor_states: per agent, the actor's GRU state before each step (T, layers, H), or None.
    """

    rows: dict[str, dict[str, Any]]
    states: np.ndarray
    rewards: np.ndarray
    terminated: bool
    done: bool
    episode: Hashable
    t0: int
    actor_states: dict[str, np.ndarray] | None = None

    @property
    def T(self) -> int:
        return len(self.rewards)


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


def gae_of(fragment: Fragment, values: np.ndarray, gamma: float, lambda_: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, value targets), (T, k) each, from the fragment's denormalized values (T + 1, k)."""
    T, k = fragment.T, values.shape[1]
    adv, targets = np.empty((T, k), np.float32), np.empty((T, k), np.float32)
    for j in range(k):
        adv[:, j], targets[:, j] = compute_gae(
            fragment.rewards[:, j],
            values[:-1, j],
            values[-1, j],
            terminated=fragment.terminated,
            gamma=gamma,
            lambda_=lambda_,
        )
    return adv, targets


class RecurrentBatcher:
    """Fragments → the recurrent team batch (see module doc); keeps the critic's carry."""

    def __init__(self, *, agents: Sequence[str], gamma: float, lambda_: float, chunk_length: int, device: Any) -> None:
        self.agents = list(agents)
        self.gamma, self.lambda_ = gamma, lambda_
        self.chunk_length = chunk_length
        self.device = device
        # (episode, env step) → the critic's GRU state before that step, (k, layers, H).
        self._critic_carry: dict[tuple[Hashable, int], np.ndarray] = {}
        self.missing_critic_states = 0
        # Set by a learner among several: this learner's kept states → every learner's.
        self.gather: Callable[[dict], list[dict]] | None = None

    # The kept states are part of the learner's checkpoint: a restored learner continues the
    # episodes its env runners kept from the states it had, not from zeros.
    def get_state(self) -> dict[str, Any]:
        return {"carry": [(ep, t, state) for (ep, t), state in self._critic_carry.items()]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._critic_carry = {(ep, int(t)): np.asarray(h, np.float32) for ep, t, h in state["carry"]}

    def critic_runs(self, critic, fragments: list[Fragment]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the critic's GRU over every fragment in episode order.

        Returns per fragment (raw values (T+1, k), states before each step (T, k, layers, H)).
        Fragments of one episode are run in rounds (the r-th fragment of every episode in round
        r), so each starts from the state its predecessor ended with."""
        initial = np.asarray(convert_to_numpy(critic.get_initial_state())[HIDDEN], np.float32)
        # By env step only (a stable sort keeps the arrival order otherwise): episode ids may be
        # random, and the rows of a GRU call should not depend on them.
        order = sorted(range(len(fragments)), key=lambda i: fragments[i].t0)
        rounds: list[list[int]] = []
        seen: dict[Hashable, int] = {}
        for i in order:
            r = seen[fragments[i].episode] = seen.get(fragments[i].episode, -1) + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(i)
        carry, used = dict(self._critic_carry), {}
        results: list = [None] * len(fragments)
        for members in rounds:
            h0 = []
            for i in members:
                f = fragments[i]
                k, key = f.states.shape[1], (f.episode, f.t0)
                if f.t0 == 0:
                    h0.append(np.broadcast_to(initial, (k, *initial.shape)))
                elif key in carry:
                    h0.append(used.setdefault(key, carry[key]))
                else:
                    self.missing_critic_states += 1
                    h0.append(np.broadcast_to(initial, (k, *initial.shape)))
            T1 = max(fragments[i].states.shape[0] for i in members)
            seqs = np.concatenate([np.swapaxes(pad_rows(fragments[i].states, T1), 0, 1) for i in members])
            with torch.no_grad():
                raw, states = critic.values_and_states(
                    torch.as_tensor(seqs, device=self.device),
                    torch.as_tensor(np.concatenate(h0), device=self.device),
                )
            raw, states = raw.cpu().numpy(), states.cpu().numpy()
            offset = 0
            for i, h in zip(members, h0, strict=True):
                f = fragments[i]
                T, k = f.T, f.states.shape[1]
                v = raw[offset : offset + k, : T + 1].T  # (T+1, k)
                st = np.swapaxes(states[offset : offset + k, :T], 0, 1)  # after each step, (T, k, layers, H)
                results[i] = (v, np.concatenate([np.asarray(h)[None], st[:-1]]))  # before each step
                if not f.done:
                    carry[(f.episode, f.t0 + T)] = st[-1]
                offset += k
        # Keep the states the next call can need: the ends of this call's fragments and the
        # starts it used (so that the same fragments can be batched again).
        ends = {(f.episode, f.t0 + f.T) for f in fragments if not f.done}
        self._critic_carry = {key: carry[key] for key in carry if key in ends or key in used}
        if self.gather is not None:
            self._critic_carry = {k: v for kept in self.gather(self._critic_carry) for k, v in kept.items()}
        return results

    def __call__(self, critic, fragments: list[Fragment], metrics=None) -> dict:
        L = self.chunk_length
        fragments = [f for f in fragments if f.T > 0]
        missing_before = self.missing_critic_states
        runs = self.critic_runs(critic, fragments)
        out: dict[str, list] = {aid: [] for aid in self.agents}
        crit: dict[str, list] = {STATE: [], VALUE_TARGETS: [], VALUES: [], LOSS_MASK: [], STATE_IN: []}
        for f, (v_raw, h_before) in zip(fragments, runs, strict=True):
            T, k = f.T, f.states.shape[1]
            with torch.no_grad():
                v = critic.denormalize(torch.as_tensor(v_raw, device=self.device)).cpu().numpy()
            adv, targets = gae_of(f, v, self.gamma, self.lambda_)
            n_seq, step = sequence_layout(T, L)
            n_rows, valid = n_seq * L, (step >= 0).astype(np.float32)
            for i, aid in enumerate(self.agents):
                rows = {**f.rows[aid], ADVANTAGES: adv[:, 0] if k == 1 else adv[:, i]}
                padded = {key: pad_rows(val, n_rows) for key, val in rows.items() if key not in (EPS_INDEX, ENV_T)}
                padded[EPS_INDEX] = pad_rows(rows[EPS_INDEX], n_rows, fill=-1)
                padded[ENV_T] = pad_rows(rows[ENV_T], n_rows, fill=-1)
                padded[LOSS_MASK] = valid
                padded[STATE_IN] = np.asarray(f.actor_states[aid][::L], np.float32)
                out[aid].append(padded)
            # Critic sequences: for each sequence start, one per state stream (EP 1, FP k).
            for p in range(n_seq):
                lo, hi = p * L, min((p + 1) * L, T)
                for j in range(k):
                    crit[STATE].append(pad_rows(f.states[lo:hi, j], L))
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


def feedforward_batch(critic, fragments: list[Fragment], *, agents: Sequence[str], gamma, lambda_, device) -> dict:
    """Fragments → the feed-forward team batch: one critic pass over every state (bootstrap
    states included), GAE per fragment, every agent's rows the fragments' steps in order."""
    fragments = [f for f in fragments if f.T > 0]
    all_states = np.concatenate([f.states.reshape(-1, f.states.shape[-1]) for f in fragments])
    with torch.no_grad():
        raw = critic.values(torch.as_tensor(all_states, device=device))
        denorm = critic.denormalize(raw)
    raw, denorm = raw.cpu().numpy(), denorm.cpu().numpy()
    out: dict[str, list] = {aid: [] for aid in agents}
    crit: dict[str, list] = {STATE: [], VALUE_TARGETS: [], VALUES: []}
    offset = 0
    for f in fragments:
        T1, k = f.states.shape[:2]
        v = denorm[offset : offset + T1 * k].reshape(T1, k)
        v_raw = raw[offset : offset + T1 * k].reshape(T1, k)
        offset += T1 * k
        adv, targets = gae_of(f, v, gamma, lambda_)
        for i, aid in enumerate(agents):
            out[aid].append({**f.rows[aid], ADVANTAGES: adv[:, 0] if k == 1 else adv[:, i]})
        crit[STATE].append(f.states[:-1].reshape(-1, f.states.shape[-1]))
        crit[VALUE_TARGETS].append(targets.reshape(-1))
        crit[VALUES].append(v_raw[:-1].reshape(-1))
    result = {aid: tree.map_structure(lambda *xs: np.concatenate(xs), *rows) for aid, rows in out.items()}
    result[CRITIC_MODULE_ID] = {key: np.concatenate(val) for key, val in crit.items()}
    return result
