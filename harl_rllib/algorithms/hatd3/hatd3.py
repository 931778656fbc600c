"""HATD3: HADDPG with TD3's fixes (HARL paper; its strongest MAMuJoCo results).

Twin Q networks (targets use their minimum), target policy smoothing (noise
N(0, 0.2²) clipped to ±0.5, in the normalized action space) and delayed actor and target
updates (every `policy_freq` = 2 critic updates); the sequential actor update of HADDPG.
"""

from __future__ import annotations

from harl_rllib.core.off_policy_algorithm import HAOffPolicyAlgorithm
from harl_rllib.core.off_policy_config import HAOffPolicyConfig


class HATD3Config(HAOffPolicyConfig):
    """HARL's hatd3.yaml (the base config's defaults)."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HATD3)

    def get_default_learner_class(self):
        from harl_rllib.algorithms.hatd3.torch.hatd3_torch_learner import HATD3TorchLearner

        return HATD3TorchLearner


class HATD3(HAOffPolicyAlgorithm):
    @classmethod
    def get_default_config(cls) -> HATD3Config:
        return HATD3Config()
