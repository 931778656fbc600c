from harl_rllib.algorithms.maddpg.maddpg import MADDPG, MADDPGConfig

__all__ = ["MADDPG", "MADDPGConfig"]
