"""harl_rllib: Heterogeneous-Agent RL (HARL, arXiv 2304.09870) on Ray RLlib's new API stack.

Importing the package registers every algorithm with Tune (`tune.Tuner("HAPPO", ...)`)
and the bundled envs (`config.environment("harl_mpe", env_config={...})`).
"""

from ray.tune.registry import register_trainable

from harl_rllib.algorithms.haa2c import HAA2C, HAA2CConfig
from harl_rllib.algorithms.happo import HAPPO, HAPPOConfig
from harl_rllib.algorithms.hatrpo import HATRPO, HATRPOConfig
from harl_rllib.algorithms.mappo import MAPPO, MAPPOConfig
from harl_rllib.envs.registry import register_envs

ALGORITHMS = {"HAPPO": HAPPO, "HATRPO": HATRPO, "HAA2C": HAA2C, "MAPPO": MAPPO}

for _name, _cls in ALGORITHMS.items():
    register_trainable(_name, _cls)
register_envs()

__version__ = "0.1.0"
__all__ = [
    "ALGORITHMS",
    "HAA2C",
    "HAA2CConfig",
    "HAPPO",
    "HAPPOConfig",
    "HATRPO",
    "HATRPOConfig",
    "MAPPO",
    "MAPPOConfig",
]
