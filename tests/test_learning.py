"""Learning on real envs, with thresholds a broken update cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

from harl_rllib import HAA2CConfig, HAPPOConfig, HATRPOConfig, MAPPOConfig
from harl_rllib.envs.toy import random_team_reward


def _train(config, iters):
    algo = config.build_algo()
    try:
        returns = [algo.train()["env_runners"]["team_episode_return_mean"] for _ in range(iters)]
    finally:
        algo.stop()
    return returns


def _toy(cls, **training):
    return (
        cls()
        .environment("harl_toy", env_config={"task": "distinct_actions"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=500, lr=0.005, **training)
    )


def test_happo_learns_to_act_differently(ray_session):
    """3 agents, same observation, reward 1 only when all actions differ (max 5/episode).
    Random: ≈2.78; HAPPO's per-agent actors reach ≥4.5; a shared actor without agent ids
    (MAPPO) cannot break the symmetry and stays near random."""
    happo = _train(_toy(HAPPOConfig), 12)
    assert happo[-1] >= 4.5, happo
    mappo = _train(_toy(MAPPOConfig), 12)
    assert mappo[-1] < 4.0, mappo
    assert random_team_reward(3) * 5 == pytest.approx(2.78, abs=0.01)


@pytest.mark.parametrize("cls, training", [(HATRPOConfig, {"kl_threshold": 0.05}), (HAA2CConfig, {})])
def test_hatrpo_and_haa2c_learn_to_act_differently(ray_session, cls, training):
    returns = _train(_toy(cls, **training), 12)
    assert returns[-1] >= 4.5, returns


@pytest.mark.slow
# HATRPO (δ = 0.01) is left out: its gain at 120k steps was +6 to +10, too close to the noise for a
# reliable threshold; its learning is checked on the toy task (tests above).
@pytest.mark.parametrize("cls", [HAPPOConfig, HAA2CConfig])
def test_improves_on_simple_spread(ray_session, cls):
    """MPE simple_spread (3 agents, discrete): the first iteration is the near-uniform
    initial policy (≈ −80 team return); after 120k env steps the team is clearly better."""
    config = (
        cls()
        .environment("harl_mpe", env_config={"task": "simple_spread_v3"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .debugging(seed=0)
    )
    returns = _train(config, 30)
    start, end = np.mean(returns[:2]), np.mean(returns[-3:])
    # Episode-to-episode noise of these means is about ±2; a broken update stays near the start.
    assert end > start + 6, returns
