"""HAA2C: the sequential update with the unclipped objective −mean(M · r · A) − entropy."""

from __future__ import annotations

from harl_rllib.core.algorithm import HAAlgorithm
from harl_rllib.core.config import HAConfig


class HAA2CConfig(HAConfig):
    """HARL's HAA2C defaults: as HAPPO (a2c_epoch 5 = `num_epochs`), no clipping."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HAA2C)

    def get_default_learner_class(self):
        from harl_rllib.algorithms.haa2c.torch.haa2c_torch_learner import HAA2CTorchLearner

        return HAA2CTorchLearner


class HAA2C(HAAlgorithm):
    @classmethod
    def get_default_config(cls) -> HAA2CConfig:
        return HAA2CConfig()
