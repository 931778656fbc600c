"""HAPPO's actor step: `num_epochs` × minibatches of the factor-weighted clipped loss."""

from __future__ import annotations

import functools

import torch

from harl_rllib.core.learner import HATorchLearner
from harl_rllib.core.losses import happo_surrogate_loss


class HAPPOTorchLearner(HATorchLearner):
    def actor_step(self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor) -> None:
        surrogate = functools.partial(happo_surrogate_loss, clip_param=self.config.clip_param)
        self.minibatch_actor_step(module_id, data, advantages, factor, surrogate)
