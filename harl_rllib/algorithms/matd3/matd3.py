"""MATD3, the paper's off-policy baseline: HATD3's code without the sequential
substitution (every agent trains against the others' actions from before the update)."""

from __future__ import annotations

from harl_rllib.algorithms.hatd3.hatd3 import HATD3, HATD3Config


class MATD3Config(HATD3Config):
    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or MATD3)
        self.sequential_update = False


class MATD3(HATD3):
    @classmethod
    def get_default_config(cls) -> MATD3Config:
        return MATD3Config()
