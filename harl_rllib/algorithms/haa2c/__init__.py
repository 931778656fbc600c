from harl_rllib.algorithms.haa2c.haa2c import HAA2C, HAA2CConfig

__all__ = ["HAA2C", "HAA2CConfig"]
