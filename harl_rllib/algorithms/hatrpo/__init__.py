from harl_rllib.algorithms.hatrpo.hatrpo import HATRPO, HATRPOConfig

__all__ = ["HATRPO", "HATRPOConfig"]
