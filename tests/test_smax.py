"""SMAX (jaxmarl) through harl_rllib's env contract, its batched vector env and RLlib."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from conftest import check_team_batch, small_config

pytest.importorskip("jaxmarl")

from harl_rllib.core.env_runner import HAEnvRunner  # noqa: E402
from harl_rllib.envs.smax import SMAXTeamEnv, SMAXVectorEnv  # noqa: E402

STOP = 4  # SMAX's "stop" action: the only one a dead unit has


def random_masked(obs: dict, rng: np.random.Generator) -> dict:
    return {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}


@pytest.fixture(scope="module")
def env3m():
    return SMAXTeamEnv({"task": "3m", "max_steps": 40})


def test_spaces_and_state_shapes(env3m):
    assert env3m.possible_agents == ["agent_0", "agent_1", "agent_2"]
    space = env3m.observation_spaces["agent_0"]
    assert space["action_mask"].shape == (8,)  # 5 moves/stop + 3 enemies, no no-op in SMAX
    assert env3m.action_spaces["agent_2"].n == 8
    obs, infos = env3m.reset(seed=0)
    assert set(obs) == set(env3m.possible_agents)
    assert obs["agent_0"]["obs"].shape == space["obs"].shape
    assert infos["agent_1"]["state"].shape == env3m.state_space.shape
    np.testing.assert_array_equal(infos["agent_0"]["state"], infos["agent_2"]["state"])  # EP: one state

    fp = SMAXTeamEnv({"task": "3m", "state_type": "FP"})
    obs_fp, infos_fp = fp.reset(seed=0)
    ws, od = env3m.state_space.shape[0], space["obs"].shape[0]
    assert fp.state_space.shape == (ws + od + 3,)
    s1 = infos_fp["agent_1"]["state"]
    assert s1.shape == fp.state_space.shape
    np.testing.assert_array_equal(s1[ws : ws + od], obs_fp["agent_1"]["obs"])
    np.testing.assert_array_equal(s1[-3:], [0.0, 1.0, 0.0])


def test_observations_with_and_without_the_agent_id(env3m):
    """SMAX's own observations by default (as jaxmarl); `obs_agent_id=True` appends each agent's
    one-hot id, in the per-env dicts and in the batched team view alike."""
    with_id = SMAXTeamEnv({"task": "3m", "max_steps": 40, "obs_agent_id": True})
    od = env3m.observation_spaces["agent_0"]["obs"].shape[0]
    assert with_id.observation_spaces["agent_0"]["obs"].shape == (od + 3,)
    plain, _ = SMAXTeamEnv({"task": "3m", "max_steps": 40}).reset(seed=0)  # fresh: env3m's state is shared
    obs, _ = with_id.reset(seed=0)
    for k, a in enumerate(with_id.possible_agents):
        np.testing.assert_array_equal(obs[a]["obs"][:od], plain[a]["obs"])
        np.testing.assert_array_equal(obs[a]["obs"][od:], np.eye(3)[k])
    view = SMAXVectorEnv(with_id).team_reset(0)["obs"]["obs"]  # the team path's (B, n, d) arrays
    assert view.shape == (1, 3, od + 3)
    np.testing.assert_array_equal(view[0, :, od:], np.eye(3))


def test_episodes_deaths_and_stats(env3m):
    """Random masked play: dead allies stay with alive=False and only 'stop'; stats at the end."""
    rng = np.random.default_rng(0)
    obs, infos = env3m.reset(seed=1)
    seen_dead = ends = truncations = 0
    for _ in range(400):
        obs, rew, term, trunc, infos = env3m.step(random_masked(obs, rng))
        assert set(obs) == set(env3m.possible_agents)
        assert len(set(rew.values())) == 1  # the team reward, to everyone
        for a in env3m.possible_agents:
            if not infos[a]["alive"]:
                seen_dead += 1
                mask = obs[a]["action_mask"]
                assert mask[STOP] == 1 and mask.sum() == 1
        if term["__all__"] or trunc["__all__"]:
            assert not (term["__all__"] and trunc["__all__"])
            stats = infos["agent_0"]["episode_stats"]
            assert set(stats) == {"battle_won", "dead_allies", "dead_enemies"}
            assert stats["battle_won"] in (0.0, 1.0)
            if term["__all__"]:  # a battle ends when one side is dead
                assert stats["dead_allies"] == 3 or stats["dead_enemies"] == 3
            ends += 1
            truncations += trunc["__all__"]
            obs, infos = env3m.reset()
        else:
            assert "episode_stats" not in infos["agent_0"]
    assert seen_dead > 0 and ends > 3
    assert truncations < ends  # most random battles end by death here, some by the time limit


def test_vector_env_through_rllib_respects_masks_and_alignment(ray_session):
    """HAEnvRunner steps SMAX in one batched call; RLlib never takes a masked action;
    the team batch keeps rows aligned and dead agents' rows carry alive = 0."""
    import harl_rllib  # noqa: F401

    config = (
        small_config(batch=240)
        .environment("harl_smax", env_config={"task": "3m", "max_steps": 30})
        .env_runners(num_envs_per_env_runner=4, sampling="episodes")
    )
    config.validate()
    runner = HAEnvRunner(config=config)
    assert isinstance(runner.env, SMAXVectorEnv) and runner.num_envs == 4
    episodes = runner.sample(num_timesteps=240, random_actions=False)
    for ep in episodes:
        for aid, sa in ep.agent_episodes.items():
            masks = np.asarray([o["action_mask"] for o in sa.get_observations()])[:-1]
            actions = np.asarray(sa.get_actions())
            assert np.all(masks[np.arange(len(actions)), actions] == 1), f"{aid} took a masked action"
    finished = [ep for ep in episodes if ep.is_done]
    assert finished, "expected finished battles in 240 steps with max_steps=30"

    algo = config.build_algo()
    try:
        assert check_team_batch(algo, episodes) > 0  # some allies died and their rows are masked
        result = algo.train()
        assert "battle_won" in result["env_runners"]
    finally:
        algo.stop()
        runner.stop()


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_team_path_steps_smax_as_arrays(ray_session, state_type):
    """The default (team) path: one jitted call per step for all envs, ended battles restarted
    in the same call; no masked action, dead allies' rows alive = 0 with only "stop" available,
    time-outs truncated (bootstrapped), the win rate reported."""
    config = (
        small_config(batch=240, num_epochs=1, critic_epoch=1, state_type=state_type)
        .environment("harl_smax", env_config={"task": "3m", "max_steps": 12, "state_type": state_type})
        .env_runners(num_envs_per_env_runner=4)
    )
    assert config.sampling_path() == "team"
    algo = config.build_algo()
    try:
        (rollout,) = algo.env_runner.sample(num_timesteps=240, random_actions=False)
        assert rollout.shape == (60, 4)
        assert rollout.state.shape[2] == (1 if state_type == "EP" else 3)
        dead = 0
        for a in rollout.agents:
            masks, actions = rollout.obs[a]["action_mask"], rollout.actions[a].astype(np.int64)
            assert np.all(np.take_along_axis(masks, actions[..., None], -1) == 1), f"{a} took a masked action"
            rows = rollout.alive[a] == 0
            dead += int(rows.sum())
            assert np.all(masks[rows][:, STOP] == 1) and np.all(masks[rows].sum(-1) == 1)
        assert dead > 0
        assert rollout.truncated.any() and not (rollout.truncated & rollout.terminated).any()
        result = algo.train()
        assert result["sampling"] == "team"
        assert 0.0 <= result["env_runners"]["battle_won"] <= 1.0
        assert np.isfinite(result["env_runners"]["team_episode_return_mean"])
    finally:
        algo.stop()


def test_errors():
    with pytest.raises(ValueError, match="Unknown SMAX task '4m'"):
        SMAXTeamEnv({"task": "4m"})
    with pytest.raises(ValueError, match="state_type"):
        SMAXTeamEnv({"task": "3m", "state_type": "XP"})


def test_missing_jaxmarl_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_jaxmarl(name, *args, **kwargs):
        if name.startswith("jaxmarl"):
            raise ImportError("No module named 'jaxmarl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jaxmarl)
    with pytest.raises(ImportError, match=r"pip install 'harl_rllib\[smax\]'"):
        SMAXTeamEnv({"task": "3m"})
