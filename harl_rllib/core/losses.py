"""The losses of the on-policy HA family, written once as plain torch functions.

Each reads like its equation in the HARL paper (arXiv 2304.09870); the learners only
feed them tensors.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over rows where `mask` is 1 (dead agents' rows count for nothing)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def happo_surrogate_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    factor: torch.Tensor,
    mask: torch.Tensor,
    clip_param: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HAPPO's clipped objective, negated: −mean(M · min(r·A, clip(r, 1±ε)·A)).

    `logp`/`old_logp` are joint log-probabilities of the agent's action (summed over
    action dimensions, i.e. HARL's `action_aggregation="prod"` of the ratios).
    `factor` is M, the detached product of the ratios of the agents updated earlier.
    Returns (loss, ratio).
    """
    ratio = torch.exp(logp - old_logp)
    surr1 = ratio * advantages
    surr2 = torch.clamp(ratio, 1.0 - clip_param, 1.0 + clip_param) * advantages
    loss = -masked_mean(factor.detach() * torch.min(surr1, surr2), mask)
    return loss, ratio


def a2c_surrogate_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    factor: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HAA2C's (and HATRPO's) unclipped objective, negated: −mean(M · r · A)."""
    ratio = torch.exp(logp - old_logp)
    loss = -masked_mean(factor.detach() * ratio * advantages, mask)
    return loss, ratio


def huber(error: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise Huber loss as HARL writes it: e²/2 inside |e| ≤ δ, δ(|e| − δ/2) out."""
    abs_e = error.abs()
    return torch.where(abs_e <= delta, 0.5 * error**2, delta * (abs_e - 0.5 * delta))


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_param: float,
    use_clipped_value_loss: bool = True,
    use_huber_loss: bool = True,
    huber_delta: float = 10.0,
) -> torch.Tensor:
    """The critic's loss: max(L(V), L(V_old + clip(V − V_old, ±ε))), mean over rows.

    All three of `values`, `old_values`, `targets` in the critic's output space (the
    normalized one when value normalization is on). L is Huber (δ) or e²/2.
    """
    clipped = old_values + (values - old_values).clamp(-clip_param, clip_param)
    err, err_clipped = targets - values, targets - clipped
    if use_huber_loss:
        loss, loss_clipped = huber(err, huber_delta), huber(err_clipped, huber_delta)
    else:
        loss, loss_clipped = 0.5 * err**2, 0.5 * err_clipped**2
    if use_clipped_value_loss:
        loss = torch.max(loss, loss_clipped)
    return masked_mean(loss, mask)
