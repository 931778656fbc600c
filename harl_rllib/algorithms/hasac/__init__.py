from harl_rllib.algorithms.hasac.hasac import HASAC, HASACConfig

__all__ = ["HASAC", "HASACConfig"]
