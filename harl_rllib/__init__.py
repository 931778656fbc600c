"""harl_rllib: Heterogeneous-Agent RL (HARL, arXiv 2304.09870) on Ray RLlib's new API stack.

Importing the package registers every algorithm with Tune (`tune.Tuner("HAPPO", ...)`)
and the bundled envs (`config.environment("harl_mpe", env_config={...})`). Tune keeps
registrations in the running Ray: after `ray.shutdown()` and a new `ray.init()` in the
same process, call `harl_rllib.register()` again.
"""

from ray.tune.registry import register_trainable

from harl_rllib.algorithms.haa2c import HAA2C, HAA2CConfig
from harl_rllib.algorithms.had3qn import HAD3QN, HAD3QNConfig
from harl_rllib.algorithms.haddpg import HADDPG, HADDPGConfig
from harl_rllib.algorithms.happo import HAPPO, HAPPOConfig
from harl_rllib.algorithms.hasac import HASAC, HASACConfig
from harl_rllib.algorithms.hatd3 import HATD3, HATD3Config
from harl_rllib.algorithms.hatrpo import HATRPO, HATRPOConfig
from harl_rllib.algorithms.maddpg import MADDPG, MADDPGConfig
from harl_rllib.algorithms.mappo import MAPPO, MAPPOConfig
from harl_rllib.algorithms.matd3 import MATD3, MATD3Config
from harl_rllib.envs.registry import register_envs

ALGORITHMS = {
    "HAPPO": HAPPO,
    "HATRPO": HATRPO,
    "HAA2C": HAA2C,
    "MAPPO": MAPPO,
    "HADDPG": HADDPG,
    "HATD3": HATD3,
    "HASAC": HASAC,
    "HAD3QN": HAD3QN,
    "MADDPG": MADDPG,
    "MATD3": MATD3,
}


def register() -> None:
    """Register the algorithms and envs with Tune (done on import)."""
    for name, cls in ALGORITHMS.items():
        register_trainable(name, cls)
    register_envs()


register()

__version__ = "0.1.0"
__all__ = [
    "ALGORITHMS",
    "HAA2C",
    "HAA2CConfig",
    "HAD3QN",
    "HAD3QNConfig",
    "HADDPG",
    "HADDPGConfig",
    "HAPPO",
    "HAPPOConfig",
    "HASAC",
    "HASACConfig",
    "HATD3",
    "HATD3Config",
    "HATRPO",
    "HATRPOConfig",
    "MAPPO",
    "MADDPG",
    "MADDPGConfig",
    "MAPPOConfig",
    "MATD3",
    "MATD3Config",
    "register",
]
