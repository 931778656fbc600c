from harl_rllib.envs.mpe import MPETeamEnv
from harl_rllib.envs.registry import ENVS, check_env, env_id, register_envs

__all__ = ["ENVS", "MPETeamEnv", "check_env", "env_id", "register_envs"]
