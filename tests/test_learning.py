"""Learning on real envs, with thresholds a broken update cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

from harl_rllib import HAA2CConfig, HAPPOConfig, HASACConfig, HATD3Config, HATRPOConfig, MAPPOConfig
from harl_rllib.envs.toy import random_team_reward

from conftest import train_steps


def _train(config, iters, metric: str | None = None):
    """Team returns per iteration (and the env metric `metric`, 0 before it is reported)."""
    algo = config.build_algo()
    try:
        results = [algo.train()["env_runners"] for _ in range(iters)]
    finally:
        algo.stop()
    returns = [r["team_episode_return_mean"] for r in results]
    return returns if metric is None else (returns, [r.get(metric, 0.0) for r in results])


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
@pytest.mark.parametrize(
    "cls, training, iters, gain",
    [
        (HAPPOConfig, {}, 16, 8),
        (HAA2CConfig, {}, 16, 8),
        # HATRPO with a larger trust region than HARL's tuned δ (0.005–0.01), which moves too
        # little for a CI-sized run; the same natural-gradient step, line search and factor.
        (HATRPOConfig, {"kl_threshold": 0.1}, 16, 8),
    ],
)
def test_improves_on_simple_spread(ray_session, cls, training, iters, gain):
    """MPE simple_spread (3 agents, discrete): the first iteration is the near-uniform
    initial policy (≈ −81 team return); after 64k env steps the team is clearly better (seed 0,
    2026-12-01: gains of 14.0, 14.5 and 14.1 for HAPPO, HAA2C and HATRPO at 64k; 9.6, 9.6 and
    11.5 at 48k; 14.9, 15.0 and 13.3 at 80k). Before time limits bootstrapped (RLlib's episodes
    read them as terminations), these gains were +5 to +10 at 120k–160k."""
    config = (
        cls()
        .environment("harl_mpe", env_config={"task": "simple_spread_v3"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(**training)
        .debugging(seed=0)
    )
    returns = _train(config, iters)
    start, end = np.mean(returns[:2]), np.mean(returns[-3:])
    # Iteration-to-iteration noise of these means is about ±2; a broken update stays near the start.
    assert end > start + gain, returns


@pytest.mark.slow
def test_happo_starts_winning_smax_3m(ray_session):
    """SMAX 3m vs the built-in heuristic enemy: a random team never wins (0 of ≈180
    battles in the first iteration); HAPPO wins some battles within 64k env steps."""
    config = (
        HAPPOConfig()
        .environment("harl_smax", env_config={"task": "3m"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=16)
        .training(train_batch_size_per_learner=3200)
        .debugging(seed=0)
    )
    returns, won = _train(config, 20, "battle_won")
    assert won[0] == 0.0, won
    assert max(won[-3:]) >= 0.05, won
    assert np.mean(returns[-3:]) > returns[0] + 0.4, returns


@pytest.mark.slow
def test_happo_improves_on_halfcheetah_2x3(ray_session):
    """MAMuJoCo HalfCheetah 2x3 with 200-step episodes and the reference's tuned HAPPO
    settings (clip 0.05, 15 epochs, [128,128,128]): the team return climbs from ≈ −30
    (random, ±10 between iterations) to above zero in 50k env steps."""
    config = (
        HAPPOConfig()
        .environment("harl_mamujoco", env_config={"task": "HalfCheetah-2x3", "max_episode_steps": 200})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(
            train_batch_size_per_learner=2000,
            clip_param=0.05,
            num_epochs=15,
            critic_epoch=15,
            actor_model={"hidden_sizes": [128, 128, 128]},
        )
        .debugging(seed=0)
    )
    returns = _train(config, 25)
    start, end = np.mean(returns[:3]), np.mean(returns[-3:])
    assert end > start + 20, returns


# ---- the off-policy family -----------------------------------------------------------


@pytest.mark.slow
def test_hatd3_improves_on_halfcheetah_2x3(ray_session):
    """MAMuJoCo HalfCheetah 2x3, 200-step episodes, 0.5 update per env step (batch 256). The
    warm-up and first episodes score about −70; after 20k env steps the team is far higher (seed 0,
    2026-12-01: −68 → +82 at 20k, +118 at 30k). Before seeded runs repeated (RLlib's agent order
    followed the hash seed) and before time limits bootstrapped, the outcome at 20k steps ranged
    from −36 to +41; the margin stays for that reason. A broken critic target or actor step stays
    within about ±15 of the start."""
    config = (
        HATD3Config()
        .environment("harl_mamujoco", env_config={"task": "HalfCheetah-2x3", "max_episode_steps": 200})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(warmup_steps=2000, train_interval=10, update_per_train=5, train_batch_size_per_learner=256)
        .debugging(seed=0)
    )
    returns = train_steps(config, 20_000)
    start, end = np.mean(returns[:2]), np.mean(returns[-3:])
    assert start < -20 and end > start + 40, returns


@pytest.mark.slow
def test_hatd3_improves_on_simple_spread_continuous(ray_session):
    """MPE simple_spread (3 agents, continuous forces) with HARL's HATD3 defaults (10k random
    warm-up steps, then 50 updates of batch 1000 per 500 env steps). The random warm-up scores
    about −77 per episode (team return), standing still −76; after 40k env steps the team is
    near −62 (seeds 0, 1, 2: −77.0 → −62.1, −76.5 → −62.0, −76.7 → −61.7; last 10 iterations).
    Before time limits bootstrapped, the same run stayed at −71…−74 for 140k steps; an
    update that does not learn stays at the random level."""
    config = (
        HATD3Config()
        .environment("harl_mpe", env_config={"task": "simple_spread_v3", "continuous_actions": True})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .debugging(seed=0)
    )
    returns = train_steps(config, 40_000)
    # The first iteration is the whole warm-up (400 random episodes); the last ten have 200.
    start, end = returns[0], np.mean(returns[-10:])
    assert start < -72 and end > -67 and end > start + 8, np.round(returns, 1).tolist()


@pytest.mark.slow
def test_hasac_learns_continuous_sum(ray_session):
    """The toy `continuous_sum` (2 agents, 5 steps, reward −|a¹ + a² − target|): random ≈ −2.7
    per episode, a coordinated team 0. HASAC (small nets) gets within −1.5 in 6k env steps."""
    config = (
        HASACConfig()
        .environment("harl_toy", env_config={"task": "continuous_sum"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(
            warmup_steps=1000,
            train_interval=10,
            update_per_train=2,
            train_batch_size_per_learner=256,
            actor_model={"hidden_sizes": [64, 64]},
            critic_hidden_sizes=[64, 64],
        )
        .debugging(seed=0)
    )
    returns = train_steps(config, 6000)
    assert returns[0] < -2.2, returns  # the random warm-up
    assert np.mean(returns[-5:]) > -1.5, returns
