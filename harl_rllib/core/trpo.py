"""Trust-region machinery for HATRPO: exact KL, Fisher-vector products, conjugate gradient."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def kl_from_dist_inputs(old: torch.Tensor, new: torch.Tensor, continuous: bool) -> torch.Tensor:
    """Per-row KL(π_old ‖ π_new) from action-distribution inputs.

    Categorical: exact, Σ p_old (log p_old − log p_new). The reference uses the
    approximation r − 1 − log r on logits for discrete actions; we follow the paper's
    KL and say so here. Gaussian ([mean, log_std] inputs): closed form, summed over
    action dimensions (as the reference).
    """
    if continuous:
        mu0, log_s0 = old.chunk(2, dim=-1)
        mu1, log_s1 = new.chunk(2, dim=-1)
        var0, var1 = torch.exp(2 * log_s0), torch.exp(2 * log_s1)
        return (log_s1 - log_s0 + (var0 + (mu0 - mu1) ** 2) / (2 * var1) - 0.5).sum(-1)
    logp_old = torch.log_softmax(old, dim=-1)
    logp_new = torch.log_softmax(new, dim=-1)
    return (logp_old.exp() * (logp_old - logp_new)).sum(-1)


def flat_grad(
    output: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False, retain_graph: bool | None = None
) -> torch.Tensor:
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    return torch.cat(flat)


def fisher_vector_product(
    mean_kl: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    damping: float,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ (∇²KL) v + damping · v, the Hessian of the mean KL at the current parameters.

    With several learners `mean_kl` is this learner's share of the mean over all learners'
    rows and `reduce` sums over learners: the Hessian of a sum is the sum of the Hessians.

    The parameters stay put while conjugate gradient runs, so ∇KL and its graph are built once
    here and differentiated again for each v (one backward pass per product instead of a
    forward and two backwards; the same numbers)."""
    grad_kl = flat_grad(mean_kl(), params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return reduce(flat_grad((grad_kl * v.detach()).sum(), params, retain_graph=True)) + damping * v

    return fvp


def conjugate_gradient(
    avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only x ↦ A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rdotr = r @ r
    for _ in range(iters):
        if rdotr < residual_tol:
            break
        ap = avp(p)
        alpha = rdotr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        new_rdotr = r @ r
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x
