"""HAPPO: heterogeneous-agent PPO (HARL paper, Algorithm "HAPPO").

Each iteration, agents are updated one after another in a random order; agent i_m
maximizes E[min(r·M·A, clip(r, 1±ε)·M·A)], where M is the product of the new/old
probability ratios of the agents updated before it.
"""

from __future__ import annotations

from harl_rllib.core.algorithm import HAAlgorithm
from harl_rllib.core.config import HAConfig


class HAPPOConfig(HAConfig):
    """HAPPO's config: `HAConfig` with HARL's HAPPO defaults (clip 0.2, 5 epochs)."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HAPPO)

    def get_default_learner_class(self):
        from harl_rllib.algorithms.happo.torch.happo_torch_learner import HAPPOTorchLearner

        return HAPPOTorchLearner


class HAPPO(HAAlgorithm):
    @classmethod
    def get_default_config(cls) -> HAPPOConfig:
        return HAPPOConfig()
