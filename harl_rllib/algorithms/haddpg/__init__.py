from harl_rllib.algorithms.haddpg.haddpg import HADDPG, HADDPGConfig

__all__ = ["HADDPG", "HADDPGConfig"]
