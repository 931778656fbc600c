"""MaMuJoCo (gymnasium_robotics) through harl_rllib's env contract and one short RLlib run."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from harl_rllib.envs.mamujoco import MAMUJOCO_TASKS, MAMuJoCoTeamEnv  # noqa: E402


def action_dims(env: MAMuJoCoTeamEnv) -> list[int]:
    return [env.action_spaces[a].shape[0] for a in env.possible_agents]


def random_actions(env: MAMuJoCoTeamEnv, rng: np.random.Generator, scale: float = 1.0) -> dict:
    return {a: rng.uniform(-scale, scale, s.shape).astype(np.float32) for a, s in env.action_spaces.items()}


@pytest.mark.parametrize(
    ("task", "dims"),
    [
        ("HalfCheetah-2x3", [3, 3]),
        ("HalfCheetah-6x1", [1] * 6),
        ("Ant-4x2", [2] * 4),
        ("Walker2d-2x3", [3, 3]),
        ("Walker2d-6x1", [1] * 6),  # HARL's partition, built here (gymnasium_robotics lacks it)
        ("Hopper-3x1", [1] * 3),
        ("Pusher-3p", [3, 1, 3]),  # unequal partitions: heterogeneous action spaces
    ],
)
def test_spaces(task, dims):
    env = MAMuJoCoTeamEnv({"task": task})
    assert task in MAMUJOCO_TASKS
    assert env.possible_agents == sorted(env.possible_agents) == [f"agent_{i}" for i in range(len(dims))]
    assert action_dims(env) == dims
    obs, infos = env.reset(seed=0)
    for a in env.possible_agents:
        assert env.observation_spaces[a].contains(obs[a]) and obs[a].dtype == np.float32
        assert env.state_space.contains(infos[a]["state"]) and infos[a]["alive"] is True
    env.close()


def test_scenario_and_agent_conf_and_17_agent_ids():
    env = MAMuJoCoTeamEnv({"scenario": "Humanoid", "agent_conf": "9|8"})
    assert action_dims(env) == [9, 8]
    many = MAMuJoCoTeamEnv({"task": "Humanoid-17x1"})
    assert many.possible_agents == sorted(many.possible_agents) and many.possible_agents[-1] == "agent_16"
    assert many.possible_agents[:2] == ["agent_00", "agent_01"]  # zero-padded: sorted order is index order


def test_state_types_and_observation_modes():
    ep = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3"})
    fp = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3", "state_type": "FP"})
    assert ep.state_space.shape == (17,)  # HalfCheetah-v5's observation
    assert fp.state_space.shape == (19,)  # + one-hot agent id
    _, ep_infos = ep.reset(seed=0)
    obs, fp_infos = fp.reset(seed=0)
    np.testing.assert_array_equal(ep_infos["agent_0"]["state"], ep_infos["agent_1"]["state"])
    np.testing.assert_array_equal(fp_infos["agent_1"]["state"][:17], ep_infos["agent_1"]["state"])
    np.testing.assert_array_equal(fp_infos["agent_1"]["state"][17:], [0.0, 1.0])
    # Default, HARL's setting: every agent sees the full state and its one-hot id.
    assert fp.observation_spaces["agent_0"].shape == (19,)
    np.testing.assert_array_equal(obs["agent_0"], fp_infos["agent_0"]["state"])

    k0 = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3", "fully_observable": False, "agent_obsk": 0})
    k1 = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3", "fully_observable": False, "agent_obsk": 1})
    d0, d1 = k0.observation_spaces["agent_0"].shape[0], k1.observation_spaces["agent_0"].shape[0]
    assert d0 < d1 < 17
    assert k1.reset(seed=0)[0]["agent_0"].shape == (d1,)


def test_team_reward_and_clipped_actions():
    """Every agent gets the robot's one reward; out-of-bounds actions act as their clipped values."""
    wild = MAMuJoCoTeamEnv({"task": "Ant-4x2", "fully_observable": False})
    tame = MAMuJoCoTeamEnv({"task": "Ant-4x2", "fully_observable": False})
    wild.reset(seed=1)
    tame.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(10):
        actions = random_actions(wild, rng, scale=3.0)
        obs_w, rew_w, *_ = wild.step(actions)
        obs_t, rew_t, *_ = tame.step({a: np.clip(x, -1.0, 1.0) for a, x in actions.items()})
        assert len(set(rew_w.values())) == 1
        assert rew_w == rew_t
        for a in wild.possible_agents:
            np.testing.assert_array_equal(obs_w[a], obs_t[a])


def test_truncation_at_max_episode_steps():
    env = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3", "max_episode_steps": 5})
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        _, _, term, trunc, _ = env.step(random_actions(env, rng))
        assert term["__all__"] is False
        assert trunc["__all__"] is (t == 5)
        assert all(trunc[a] is (t == 5) for a in env.possible_agents)


def test_termination_is_not_truncation():
    """Hopper falls under random play: a termination, never reported as a truncation."""
    env = MAMuJoCoTeamEnv({"task": "Hopper-3x1"})
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        _, _, term, trunc, _ = env.step(random_actions(env, rng))
        if term["__all__"] or trunc["__all__"]:
            break
    assert term["__all__"] is True and trunc["__all__"] is False


@pytest.mark.parametrize("task", ["HalfCheetah-4x2", "Foo-2x3", "HalfCheetah", "HalfCheetah-v2-2x3"])
def test_unknown_task(task):
    with pytest.raises(ValueError, match="known: HalfCheetah-2x3"):
        MAMuJoCoTeamEnv({"task": task})


def test_short_rllib_run(ray_session):
    from harl_rllib import HAPPOConfig

    config = (
        HAPPOConfig()
        .environment(MAMuJoCoTeamEnv, env_config={"task": "HalfCheetah-2x3", "max_episode_steps": 50})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=200)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
        assert np.isfinite(result["env_runners"]["team_episode_return_mean"])
    finally:
        algo.stop()
