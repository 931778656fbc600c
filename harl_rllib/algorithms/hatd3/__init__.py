from harl_rllib.algorithms.hatd3.hatd3 import HATD3, HATD3Config

__all__ = ["HATD3", "HATD3Config"]
