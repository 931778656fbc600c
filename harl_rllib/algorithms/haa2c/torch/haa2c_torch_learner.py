"""HAA2C's actor step: epochs × minibatches of −mean(M · r · A) − entropy_coeff · H."""

from __future__ import annotations

import torch

from harl_rllib.core.learner import HATorchLearner
from harl_rllib.core.losses import a2c_surrogate_loss


class HAA2CTorchLearner(HATorchLearner):
    def actor_step(self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor) -> None:
        self.minibatch_actor_step(module_id, data, advantages, factor, a2c_surrogate_loss)
