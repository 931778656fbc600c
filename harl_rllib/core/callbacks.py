"""Episode metrics every HA algorithm reports: the team return and env episode stats."""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback

from harl_rllib.envs.contract import EPISODE_STATS_KEY

TEAM_RETURN = "team_episode_return_mean"


def episode_window(config) -> int:
    """Episodes a mean is taken over. Training: RLlib's smoothing window (100). Evaluation:
    one evaluation's episodes (HARL's eval_episodes), so that each evaluation reports its own
    episodes, not a mix with the previous evaluations'."""
    if (
        getattr(config, "in_evaluation", False)
        and config.evaluation_duration_unit == "episodes"
        and isinstance(config.evaluation_duration, int)
    ):
        return config.evaluation_duration
    return config.metrics_num_episodes_for_smoothing


def log_team_episode(metrics_logger, team_return: float, stats: dict | None, window: int) -> None:
    """One finished episode's team return and env stats (`episode_stats`, e.g. battle_won),
    on both sampling paths."""
    metrics_logger.log_value(TEAM_RETURN, team_return, reduce="mean", window=window)
    for key, value in (stats or {}).items():
        metrics_logger.log_value(key, float(value), reduce="mean", window=window)


class TeamMetricsCallback(RLlibCallback):
    """Logs `team_episode_return_mean` (HARL's "average episode reward") and env stats.

    RLlib's `episode_return_mean` sums all agents' rewards, i.e. n × the team return
    when every agent gets the team reward; HARL reports the team return itself.
    """

    def on_episode_end(
        self, *, episode, prev_episode_chunks=None, env_runner=None, metrics_logger=None, **kwargs
    ) -> None:
        """An episode longer than a rollout fragment arrives in chunks: `episode` is the last
        one and RLlib hands the earlier ones as `prev_episode_chunks`; the return sums them all."""
        if metrics_logger is None:
            return
        returns = [sa.get_return() for sa in episode.agent_episodes.values()]
        if not returns:
            return
        team = sum(returns) / len(returns)
        for chunk in prev_episode_chunks or []:
            earlier = [sa.get_return() for sa in chunk.agent_episodes.values()]
            team += sum(earlier) / len(earlier) if earlier else 0.0
        info = next(iter(episode.agent_episodes.values())).get_infos(-1)
        stats = info.get(EPISODE_STATS_KEY) if isinstance(info, dict) else None
        log_team_episode(metrics_logger, team, stats, episode_window(env_runner.config))
