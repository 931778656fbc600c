"""HATD3's target actions: the target actor plus clipped Gaussian smoothing noise."""

from __future__ import annotations

from typing import Any

import torch

from harl_rllib.algorithms.haddpg.torch.haddpg_torch_learner import HADDPGTorchLearner
from harl_rllib.core.off_policy_learner import NEXT_OBS


def smoothed_target_actions(
    target: torch.Tensor, policy_noise: float, noise_clip: float, unit_noise: torch.Tensor
) -> torch.Tensor:
    """clip(μ'(o') + clip(σε, −c, c), −1, 1), ε ~ N(0, 1) given (HARL's `get_target_actions`)."""
    noise = (unit_noise * policy_noise).clamp(-noise_clip, noise_clip)
    return (target + noise).clamp(-1.0, 1.0)


class HATD3TorchLearner(HADDPGTorchLearner):
    def next_actions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], None]:
        cfg = self.config
        actions = {}
        for a in self.agents:
            target = self.module_of(a).target_actions(batch[a][NEXT_OBS])
            actions[a] = smoothed_target_actions(target, cfg.policy_noise, cfg.noise_clip, self.row_noise(target))
        return actions, None
