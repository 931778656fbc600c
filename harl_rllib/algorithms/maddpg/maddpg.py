"""MADDPG, the paper's off-policy baseline: HADDPG's code without the sequential
substitution (every agent trains against the others' actions from before the update)."""

from __future__ import annotations

from harl_rllib.algorithms.haddpg.haddpg import HADDPG, HADDPGConfig


class MADDPGConfig(HADDPGConfig):
    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or MADDPG)
        self.sequential_update = False


class MADDPG(HADDPG):
    @classmethod
    def get_default_config(cls) -> MADDPGConfig:
        return MADDPGConfig()
