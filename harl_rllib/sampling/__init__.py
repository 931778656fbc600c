"""Team-native sampling: env runners that write dense team rollouts (see rollout.py)."""

from harl_rllib.sampling.rollout import TeamRollout, rollout_team_batch

__all__ = ["TeamRollout", "rollout_team_batch"]
