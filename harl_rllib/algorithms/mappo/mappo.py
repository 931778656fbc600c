"""MAPPO, the paper's baseline: one shared actor, all agents updated at once (no factor).

The same machinery as HAPPO with `share_param=True, sequential_update=False`.
"""

from __future__ import annotations

from harl_rllib.algorithms.happo.happo import HAPPO, HAPPOConfig


class MAPPOConfig(HAPPOConfig):
    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or MAPPO)
        self.share_param = True
        self.sequential_update = False


class MAPPO(HAPPO):
    @classmethod
    def get_default_config(cls) -> MAPPOConfig:
        return MAPPOConfig()
