"""GAE over team trajectories and masked advantage standardization.

One joint advantage for the whole team, computed from the centralized critic's
values (denormalized when value normalization is on).
"""

from __future__ import annotations

import numpy as np


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    bootstrap_value: float,
    *,
    terminated: bool,
    gamma: float,
    lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(γ, λ) for one trajectory chunk of length T.

    `values[t]` is V(s_t) for t < T and `bootstrap_value` is V(s_T), the value of the
    observation after the last step. A terminated chunk bootstraps with 0; a truncated
    or cut chunk with V(s_T).

    Differs from the reference on purpose: HARL auto-resets its vector envs and so
    loses s_T at a time-limit truncation; it then sets the last advantage to 0
    (`bad_masks`). RLlib's episodes keep s_T, so we bootstrap from it, as the paper's
    GAE does.

    Returns (advantages, value_targets), both of shape (T,), float32.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    T = len(rewards)
    next_values = np.empty(T, dtype=np.float64)
    next_values[:-1] = values[1:]
    next_values[-1] = 0.0 if terminated else bootstrap_value
    deltas = rewards + gamma * next_values - values
    advantages = np.empty(T, dtype=np.float64)
    gae = 0.0
    for t in range(T - 1, -1, -1):
        gae = deltas[t] + gamma * lambda_ * gae
        advantages[t] = gae
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


def standardize_masked(x: np.ndarray, mask: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(x - mean) / (std + eps), mean and std over rows where `mask` is 1.

    As HARL: statistics over active (alive) rows only, applied to every row.
    """
    active = x[mask > 0]
    if active.size == 0:
        return x.astype(np.float32)
    return ((x - active.mean()) / (active.std() + eps)).astype(np.float32)
