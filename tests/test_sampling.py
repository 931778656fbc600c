"""Team rollouts (harl_rllib/sampling) against RLlib's episode path.

Why: the team path replaces RLlib's per-agent episodes with dense arrays and a vectorized
GAE; it must give the learner the same team batch. With the same seed both paths draw the
same actions (one forward per module over all envs, modules in sorted order) when every
env's episodes end together, so each case below samples the same transitions on both paths
and compares the two team batches row for row (rows sorted by their observation; the two
paths order rows differently).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.core.columns import Columns

from harl_rllib import HAPPOConfig, HASACConfig, HATD3Config
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.core.fragments import ADVANTAGES, ALIVE, LOSS_MASK, STATE_IN, VALUE_TARGETS
from harl_rllib.core.replay import NEXT_OBS, NEXT_STATE, REWARD, TERMINATED
from harl_rllib.envs.toy import DistinctActionsEnv
from harl_rllib.sampling import TeamRollout
from harl_rllib.sampling.rollout import shard_rollouts, vectorized_gae

from conftest import no_state_env_class, small_config


class SkipsAnAgentEnv(DistinctActionsEnv):
    """Breaks the contract: agent_1 has no observation from the second step on."""

    def step(self, action_dict):
        obs, rewards, terms, truncs, infos = super().step(action_dict)
        return {a: o for a, o in obs.items() if a != "agent_1"}, rewards, terms, truncs, infos


def _rows(columns: list[np.ndarray]) -> np.ndarray:
    """Rows of the given columns, sorted lexicographically (a canonical order)."""
    table = np.concatenate([np.asarray(c, np.float64).reshape(len(c), -1) for c in columns], axis=1)
    return table[np.lexsort(table.T[::-1])]


def _canonical(batch: dict, agents: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for a in agents:
        rows = batch[a]
        obs = rows[Columns.OBS]
        obs = [obs["obs"], obs["action_mask"]] if isinstance(obs, dict) else [obs]
        cols = [*obs, rows[Columns.ACTIONS], rows[Columns.ACTION_LOGP], rows[ALIVE], rows[ADVANTAGES]]
        out[a] = _rows(cols)
    crit = batch[CRITIC_MODULE_ID]
    out[CRITIC_MODULE_ID] = _rows([crit[STATE], crit[VALUE_TARGETS], crit[VALUES]])
    return out


def _sample_both(make_config, num_timesteps: int):
    batches, kinds = {}, {}
    for sampling in ("team", "episodes"):
        algo = make_config().env_runners(sampling=sampling).build_algo()
        try:
            samples = algo.env_runner.sample(num_timesteps=num_timesteps, random_actions=False)
            kinds[sampling] = type(samples[0])
            batches[sampling] = algo.learner_group._learner.build_team_batch(samples)
            agents = list(algo.config.get_team_spec().agents)
        finally:
            algo.stop()
    assert kinds["team"] is TeamRollout and kinds["episodes"] is not TeamRollout
    return batches, agents


def _mpe():
    return small_config(batch=120).env_runners(num_envs_per_env_runner=2)


def _toy():
    return small_config(batch=120).environment("harl_toy", env_config={"task": "distinct_actions"})


def _no_state():
    config = small_config(batch=60).environment(no_state_env_class())
    config.env_config = {}  # environment() merges env_config dicts: drop MPE's task
    return config


def _smac_fp():
    from standins.starcraft2_standin import StarCraft2EnvStandIn

    from harl_rllib.envs.smac import SMACTeamEnv

    env_config = {"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, "state_type": "FP"}
    # RLlib's env check steps the game once with unseeded random actions: skip it, so that both
    # paths play the same battles.
    config = small_config(batch=150).environment(SMACTeamEnv, disable_env_checking=True).training(state_type="FP")
    config.env_config = env_config
    return config


@pytest.mark.parametrize(
    "make_config, num_timesteps",
    [
        # 2 envs x 60 steps: two 25-step MPE episodes each (truncated: bootstrap) and a cut one.
        (_mpe, 120),
        # 5-step toy episodes end terminated (no bootstrap); 120 steps cut none.
        (_toy, 121),
        # No env state: the critic sees all agents' observations, concatenated.
        (_no_state, 58),
        # SMAC stand-in: FP states (one per agent), action masks, deaths, wins/losses.
        (_smac_fp, 150),
    ],
    ids=["mpe_truncated_and_cut", "toy_terminated", "no_state", "smac_standin_fp_masks_deaths"],
)
def test_team_rollout_gives_the_episode_paths_team_batch(ray_session, make_config, num_timesteps):
    batches, agents = _sample_both(make_config, num_timesteps)
    team, episodes = (_canonical(batches[k], agents) for k in ("team", "episodes"))
    for key in team:
        assert team[key].shape == episodes[key].shape, key
        np.testing.assert_allclose(team[key], episodes[key], rtol=1e-5, atol=1e-5, err_msg=key)


def _recurrent_canonical(batch: dict, agents: list[str]) -> dict[str, np.ndarray]:
    """Real rows (loss_mask 1) of every column, and the sequences' start states, each sorted."""
    out = {}
    for a in agents:
        rows, real = batch[a], batch[a][LOSS_MASK] > 0
        obs = rows[Columns.OBS]
        obs = [obs["obs"], obs["action_mask"]] if isinstance(obs, dict) else [obs]
        cols = [*obs, rows[Columns.ACTIONS], rows[Columns.ACTION_LOGP], rows[ALIVE], rows[ADVANTAGES]]
        out[a] = _rows([c[real] for c in cols])
        out[f"{a}/state_in"] = _rows([rows[STATE_IN].reshape(len(rows[STATE_IN]), -1)])
    crit = batch[CRITIC_MODULE_ID]
    real = crit[LOSS_MASK].reshape(-1) > 0
    cols = [crit[k].reshape(len(real), -1)[real] for k in (STATE, VALUE_TARGETS, VALUES)]
    out[CRITIC_MODULE_ID] = _rows(cols)
    out["critic/state_in"] = _rows([crit[STATE_IN].reshape(len(crit[STATE_IN]), -1)])
    return out


@pytest.mark.parametrize(
    "make_config, num_timesteps",
    [
        # 2 envs x 60 steps: 25-step episodes, the third cut at step 10 and continued.
        (_mpe, 120),
        # One env, FP states, masks, deaths; battles of varying length, one cut per sample.
        (_smac_fp, 150),
    ],
    ids=["mpe_ep", "smac_standin_fp_masks_deaths"],
)
def test_recurrent_team_rollout_gives_the_episode_paths_team_batch(ray_session, make_config, num_timesteps):
    """GRU actors and critic, two samples in a row. The second continues the episode the first
    one cut (its actors' states come from the runner's carry, its critic's state from the
    learner's); chunks of 4 steps need padding."""
    batches = {}
    for sampling in ("team", "episodes"):
        config = make_config().training(use_recurrent_policy=True, data_chunk_length=4)
        algo = config.env_runners(sampling=sampling).build_algo()
        try:
            learner = algo.learner_group._learner
            for _ in range(2):
                samples = algo.env_runner.sample(num_timesteps=num_timesteps, random_actions=False)
                batches[sampling] = learner.build_team_batch(samples)
            agents = list(algo.config.get_team_spec().agents)
            if sampling == "team":
                assert samples[0].env_t[0].max() > 0  # the second sample continues a cut episode ...
                assert learner._recurrent_batcher.missing_critic_states == 0  # ... from the kept critic state
        finally:
            algo.stop()
        assert isinstance(samples[0], TeamRollout) == (sampling == "team")
    team, episodes = (_recurrent_canonical(batches[k], agents) for k in ("team", "episodes"))
    for key in team:
        assert team[key].shape == episodes[key].shape, key
        np.testing.assert_allclose(team[key], episodes[key], rtol=1e-5, atol=1e-5, err_msg=key)


def _replay_rows(buffer) -> np.ndarray:
    """Every stored transition with its n-step target (reward sum, γ^steps, terminated and the
    bootstrap state of the last row reached), in a canonical row order."""
    idx = np.arange(len(buffer))
    data = buffer._data
    ret, last, discount, term = buffer.nstep(idx)
    cols = []
    for a in sorted(k for k, v in data.items() if isinstance(v, dict)):
        cols += [data[a][k][idx] for k in (Columns.OBS, NEXT_OBS, Columns.ACTIONS, ALIVE)]
    cols += [data["state"][idx], data[NEXT_STATE][idx], data[REWARD][idx], data[TERMINATED][idx]]
    cols += [ret, discount, term, data[NEXT_STATE][last]]
    return _rows(cols)


@pytest.mark.parametrize("cls", [HATD3Config, HASACConfig])
def test_team_rollout_fills_the_replay_buffer_as_episodes_do(ray_session, cls):
    """The off-policy family's replay from team rollouts holds the episode path's transitions
    and 3-step targets: warm-up (uniform random actions) and exploring actors, 25-step episodes
    truncated (bootstrap) and cut between sample() calls (linked across them)."""
    rows = {}
    for sampling in ("team", "episodes"):
        config = (
            cls()
            .environment("harl_mpe", env_config={"task": "simple_spread_v3", "continuous_actions": True})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=2, sampling=sampling)
            .debugging(seed=0)
            .training(warmup_steps=40, n_step=3, buffer_size=1000, train_batch_size_per_learner=16)
        )
        algo = config.build_algo()
        try:
            learner = algo.learner_group._learner
            for _ in range(3):  # 40 warm-up steps, then 2 × 40 with the actors
                samples = algo.env_runner.sample(num_timesteps=40, random_actions=False)
                assert isinstance(samples[0], TeamRollout) == (sampling == "team")
                learner.update(episodes=samples, num_updates=0)
            rows[sampling] = _replay_rows(learner.buffer)
        finally:
            algo.stop()
    assert len(rows["team"]) == 120
    np.testing.assert_allclose(rows["team"], rows["episodes"], rtol=1e-5, atol=1e-5)


def test_vectorized_gae_against_a_naive_walk():
    """Fixed numbers: one env truncated at t=1 (bootstraps from its final state's value),
    one terminated at t=2 (no bootstrap), both cut at the end (bootstrap)."""
    gamma, lam = 0.9, 0.8
    r = np.array([[1.0, 0.5], [2.0, 0.0], [0.0, 1.0], [1.0, 2.0]])[..., None]
    v = np.array([[0.3, 0.1], [0.2, 0.4], [0.5, 0.6], [0.7, 0.8]])[..., None]
    v_next = np.array([[0.2, 0.4], [9.0, 0.6], [0.7, 5.0], [0.6, 0.9]])[..., None]
    term = np.array([[0, 0], [0, 0], [0, 1], [0, 0]], bool)
    trunc = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)
    adv, targets = vectorized_gae(r, v, v_next, term, trunc, gamma, lam)
    for b in range(2):
        want, gae = np.zeros(4), 0.0
        for t in range(3, -1, -1):
            end = term[t, b] or trunc[t, b] or t == 3
            nxt = 0.0 if term[t, b] else v_next[t, b, 0]
            delta = r[t, b, 0] + gamma * nxt - v[t, b, 0]
            gae = delta + (0.0 if end else gamma * lam * gae)
            want[t] = gae
        np.testing.assert_allclose(adv[:, b, 0], want, rtol=1e-6)
        np.testing.assert_allclose(targets[:, b, 0], want + v[:, b, 0], rtol=1e-6)


def test_sampling_choice_is_validated_and_reported(ray_session):
    assert small_config().sampling_path() == "team"
    assert small_config(use_recurrent_policy=True).sampling_path() == "team"
    assert HATD3Config().environment("harl_mpe", env_config={"task": "simple_spread_v3"}).sampling_path() == "team"

    class OwnVectorEnv(DistinctActionsEnv):
        """Steps its own vector env, but not through the team-step interface."""

        @classmethod
        def make_vector_env(cls, env_context, num_envs):
            raise AssertionError("never built here")

    own = small_config().environment(OwnVectorEnv)
    own.env_config = {}
    assert own.sampling_path() == "episodes"
    with pytest.raises(ValueError, match="sampling='team' is not available.*without the team-step interface"):
        own.env_runners(sampling="team").validate()
    with pytest.raises(ValueError, match="`sampling` must be"):
        small_config().env_runners(sampling="fast").validate()
    algo = small_config(batch=100, num_epochs=1, critic_epoch=1).build_algo()
    try:
        result = algo.train()
        assert result["sampling"] == "team"
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 100
        assert result["env_runners"]["num_episodes_lifetime"] == 4  # 25-step MPE episodes
    finally:
        algo.stop()


def test_env_that_breaks_the_contract_gets_a_clear_error(ray_session):
    config = HAPPOConfig().environment(SkipsAnAgentEnv).env_runners(num_envs_per_env_runner=1)
    algo = config.training(train_batch_size_per_learner=20, num_epochs=1, critic_epoch=1).build_algo()
    try:
        with pytest.raises(ValueError, match="gave no observation for agent 'agent_1'.*sampling='episodes'"):
            algo.train()
    finally:
        algo.stop()


def test_deterministic_actions_when_not_exploring(ray_session):
    algo = small_config(batch=40).environment("harl_toy", env_config={"task": "distinct_actions"}).build_algo()
    try:
        runner = algo.env_runner
        (rollout,) = runner.sample(num_timesteps=40, explore=False)
        module = runner.module["agent_0"]
        obs = rollout.obs["agent_0"].reshape(-1, *rollout.obs["agent_0"].shape[2:])
        import torch

        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: torch.as_tensor(obs)})[Columns.ACTION_DIST_INPUTS]
        np.testing.assert_array_equal(rollout.actions["agent_0"].reshape(-1), logits.argmax(-1).numpy())
        assert isinstance(runner.env.envs[0].unwrapped.get_action_space("agent_0"), gym.spaces.Discrete)
    finally:
        algo.stop()


def test_shard_rollouts_by_env_and_by_time(ray_session):
    """Several learners: a rollout splits by env (whole streams), or by time when there are
    fewer envs than learners; nothing is lost or repeated."""
    algo = small_config(batch=60).env_runners(num_envs_per_env_runner=3).build_algo()
    try:
        (rollout,) = algo.env_runner.sample(num_timesteps=60, random_actions=False)
    finally:
        algo.stop()
    by_env = shard_rollouts([rollout], 2)
    assert [[r.shape for r in shard] for shard in by_env] == [[(20, 2)], [(20, 1)]]
    np.testing.assert_array_equal(np.concatenate([s[0].state for s in by_env], axis=1), rollout.state)
    np.testing.assert_array_equal(
        np.concatenate([s[0].actions["agent_1"] for s in by_env], axis=1), rollout.actions["agent_1"]
    )
    by_time = shard_rollouts([rollout], 4)
    assert [[r.shape for r in shard] for shard in by_time] == [[(5, 3)]] * 4
    np.testing.assert_array_equal(np.concatenate([s[0].next_state for s in by_time]), rollout.next_state)
    np.testing.assert_array_equal(np.concatenate([s[0].obs["agent_0"] for s in by_time]), rollout.obs["agent_0"])


class IndividualRewardsEnv(DistinctActionsEnv):
    """A user env that breaks the team-reward convention: agent_0 gets 1 and agent_1 gets 3 at
    every step; every episode terminates after 4 steps."""

    def step(self, action_dict):
        obs, _, terms, truncs, infos = super().step(action_dict)
        done = self.t >= 4
        terms = {**dict.fromkeys(self.possible_agents, done), "__all__": done}
        truncs = {**dict.fromkeys(self.possible_agents, False), "__all__": False}
        return obs, {"agent_0": 1.0, "agent_1": 3.0}, terms, truncs, infos


@pytest.mark.parametrize("sampling", ["team", "episodes"])
def test_individual_rewards_make_one_team_reward(ray_session, sampling):
    """The one rule (envs/contract.py): the team reward is the agents' mean reward (2 here), in
    the critic's targets and in the reported team return alike. (The reference takes the first
    agent's; for every env we ship, which gives all agents the team reward, the two agree.)"""
    config = (
        HAPPOConfig()
        .environment(IndividualRewardsEnv, env_config={"n_agents": 2, "episode_length": 4})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, sampling=sampling)
        .training(train_batch_size_per_learner=40, gamma=1.0, lambda_=1.0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        team = learner.build_team_batch(algo.env_runner.sample(num_timesteps=40, random_actions=False))
        # γ = λ = 1 and terminal ends: a value target is the rest of its episode's team rewards.
        targets = np.asarray(team[CRITIC_MODULE_ID][VALUE_TARGETS], np.float64)
        assert sorted(set(np.round(targets, 4))) == [2.0, 4.0, 6.0, 8.0]
        result = algo.train()["env_runners"]
        assert result["team_episode_return_mean"] == pytest.approx(8.0)
        assert result["episode_return_mean"] == pytest.approx(16.0)  # RLlib's: every agent's sum
    finally:
        algo.stop()
