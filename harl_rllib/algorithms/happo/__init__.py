from harl_rllib.algorithms.happo.happo import HAPPO, HAPPOConfig

__all__ = ["HAPPO", "HAPPOConfig"]
