from harl_rllib.algorithms.had3qn.had3qn import HAD3QN, HAD3QNConfig

__all__ = ["HAD3QN", "HAD3QNConfig"]
