"""HATRPO's actor step: one natural-gradient step with backtracking line search."""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from harl_rllib.core.learner import HATorchLearner
from harl_rllib.core.trpo import conjugate_gradient, fisher_vector_product, flat_grad, kl_from_dist_inputs

KL = "hatrpo_kl"
LS_STEP = "hatrpo_line_search_step"
REJECTED = "hatrpo_step_rejected"
EXPECTED_IMPROVE = "hatrpo_expected_improve"
IMPROVE = "hatrpo_improve"


class HATRPOTorchLearner(HATorchLearner):
    def actor_step(self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor) -> dict:
        """Maximize mean(M · r · A) s.t. mean KL(π_old ‖ π) ≤ δ (HARL's HATRPO `update`).

        Returns the step's statistics (also logged): KL reached, line-search step index
        (`ls_step` when rejected), whether it was rejected, expected and actual improvement.
        """
        cfg = self.config
        module = self.module[module_id].unwrapped()
        params = [p for p in module.parameters() if p.requires_grad]
        mask = self.policy_mask(data)
        continuous = module._continuous
        old_logp = data[Columns.ACTION_LOGP]
        stats = {KL: 0.0, LS_STEP: float(cfg.ls_step), REJECTED: 1.0, EXPECTED_IMPROVE: 0.0, IMPROVE: 0.0}
        # Means over the alive rows of all learners (one learner: `masked_mean`). Each learner
        # computes its share, Σ_own(x · mask) / rows; gradients, Fisher-vector products and the
        # line search's values are summed over learners, so every learner takes the same step.
        rows = self.all_sum(mask.sum().reshape(1))[0]
        if float(rows) == 0.0:  # dead in every row of every learner: no step (as HARL)
            self.log_actor_metrics(module_id, **stats)
            return stats

        def share(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / rows

        def total(x: torch.Tensor) -> float:
            return float(self.all_sum(x.detach().reshape(1))[0])

        def dist_inputs() -> torch.Tensor:
            # Whole sequences from their recorded states when the actor is recurrent.
            return self.dist_inputs(module_id, data)

        with torch.no_grad():
            old_inputs = dist_inputs()

        def surrogate() -> torch.Tensor:
            logp, _ = self.logp_entropy(module_id, data)
            return share(factor * torch.exp(logp - old_logp) * advantages)

        def mean_kl() -> torch.Tensor:
            # Over alive rows (the paper's expectation over the agent's own states); the
            # reference averages over all rows. Identical when every agent is alive.
            return share(kl_from_dist_inputs(old_inputs, dist_inputs(), continuous))

        loss = surrogate()
        grad = self.all_sum(flat_grad(loss, params))
        fvp = fisher_vector_product(dist_inputs, params, mask / rows, continuous, cfg.cg_damping, self.all_sum)
        step_dir = conjugate_gradient(fvp, grad, iters=cfg.cg_iters)
        shs = 0.5 * (step_dir @ fvp(step_dir))
        old_params = parameters_to_vector(params).detach().clone()
        if torch.isfinite(shs) and shs > 0:
            full_step = step_dir / torch.sqrt(shs / cfg.kl_threshold)  # sqrt(2δ / sᵀHs) · s
            expected = float(grad @ full_step)
            stats[EXPECTED_IMPROVE] = expected
            fraction = 1.0
            loss_value = total(loss)
            for i in range(cfg.ls_step):
                vector_to_parameters(old_params + fraction * full_step, params)
                with torch.no_grad():
                    improve = total(surrogate()) - loss_value
                    kl = total(mean_kl())
                if kl < cfg.kl_threshold and improve > 0 and improve / expected > cfg.accept_ratio:
                    stats.update({KL: kl, LS_STEP: float(i), REJECTED: 0.0, IMPROVE: improve})
                    break
                expected *= cfg.backtrack_coeff
                fraction *= cfg.backtrack_coeff
        if stats[REJECTED]:
            vector_to_parameters(old_params, params)
        self.log_actor_metrics(module_id, **stats)
        return stats
