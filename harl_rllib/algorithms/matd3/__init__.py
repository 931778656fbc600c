from harl_rllib.algorithms.matd3.matd3 import MATD3, MATD3Config

__all__ = ["MATD3", "MATD3Config"]
