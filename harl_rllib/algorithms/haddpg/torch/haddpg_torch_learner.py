"""HADDPG's actions: the deterministic actor for the actor update, the target actor for TD."""

from __future__ import annotations

from typing import Any

import torch

from harl_rllib.core.off_policy_learner import NEXT_OBS, HAOffPolicyTorchLearner


class HADDPGTorchLearner(HAOffPolicyTorchLearner):
    def actor_actions(self, aid: str, obs: Any) -> tuple[torch.Tensor, None]:
        return self.module_of(aid).actions(obs), None

    def next_actions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], None]:
        return {a: self.module_of(a).target_actions(batch[a][NEXT_OBS]) for a in self.agents}, None


__all__ = ["HADDPGTorchLearner"]
