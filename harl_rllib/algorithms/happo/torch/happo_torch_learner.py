"""HAPPO's actor step: `num_epochs` × minibatches of the factor-weighted clipped loss."""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns

from harl_rllib.core.learner import HATorchLearner, index_rows, minibatch_indices
from harl_rllib.core.losses import happo_surrogate_loss, masked_mean


class HAPPOTorchLearner(HATorchLearner):
    def actor_step(self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor) -> None:
        cfg = self.config
        mask = self.policy_mask(data)
        n = len(advantages)
        for _ in range(cfg.num_epochs):
            for idx in minibatch_indices(n, cfg.minibatch_size, self._generator):
                mb = index_rows(data, idx)
                logp, entropy = self.logp_entropy(module_id, mb)
                policy_loss, ratio = happo_surrogate_loss(
                    logp, mb[Columns.ACTION_LOGP], advantages[idx], factor[idx], mask[idx], cfg.clip_param
                )
                mean_entropy = masked_mean(entropy, mask[idx])
                grad_norm = self.gradient_step(module_id, policy_loss - cfg.entropy_coeff * mean_entropy)
        self.log_actor_metrics(
            module_id,
            policy_loss=policy_loss.item(),
            entropy=mean_entropy.item(),
            actor_grad_norm=grad_norm,
            ratio=ratio.mean().item(),
        )
