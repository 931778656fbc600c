"""The off-policy family's math on fixed tensors: replay and n-step returns, TD3's targets,
the sequential substitution, HASAC's log-probabilities and temperatures, and input checks.

Every expectation is computed here independently (plain loops, torch.distributions), not
through the code under test."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

import harl_rllib  # noqa: F401
from harl_rllib import HADDPGConfig, HASACConfig, HATD3Config, MADDPGConfig, MATD3Config
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE
from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.off_policy_modules import SoftActorTorchRLModule, discrete_target_entropy, encode_actions
from harl_rllib.core.replay import DISCOUNT, NEXT_OBS, NEXT_STATE, REWARD, TERMINATED, TeamReplayBuffer

GAMMA = 0.9


# ---- replay and n-step returns -------------------------------------------------------


def _rows(ep: int, t0: int, T: int, terminal: bool = False, fp: bool = False) -> dict:
    """T rows of episode `ep` from step t0; every value encodes (ep, t) so that a sampled
    row can be traced back. Reward of (ep, t) = ep + t / 10; FP: two agents' rewards, the
    second agent's twice the first's."""
    t = np.arange(t0, t0 + T)
    code = (ep * 100 + t).astype(np.float32)
    term = np.zeros(T, np.float32)
    term[-1] = float(terminal)
    reward = (ep + t / 10).astype(np.float32)
    return {
        "a": {Columns.OBS: code[:, None], NEXT_OBS: code[:, None] + 0.5},
        "state": code[:, None],
        NEXT_STATE: code[:, None] + 0.5,
        REWARD: np.stack([reward, 2 * reward], axis=1) if fp else reward,
        TERMINATED: term,
    }


def _naive_nstep(episodes: dict, ep: int, t: int, n: int) -> tuple[float, float, float, float]:
    """Walk the episode's stored steps: (return, γ^k, next state code, terminated)."""
    steps, end_kind = episodes[ep]  # steps stored so far; "term", "trunc" or "running"
    ret, k = 0.0, 0
    while k < n and t + k < steps:
        ret += GAMMA**k * (ep + (t + k) / 10)
        last = t + k
        k += 1
        if last == steps - 1:  # the last stored step: episode ended, or nothing newer yet
            break
    terminated = 1.0 if (end_kind == "term" and last == steps - 1) else 0.0
    return ret, GAMMA**k, ep * 100 + last + 0.5, terminated


@pytest.mark.parametrize("fp", [False, True])
@pytest.mark.parametrize("n_step", [1, 3, 20])
def test_nstep_returns_match_a_naive_walk(n_step, fp):
    """EP: one team reward per row; FP: each agent's own (HARL's OffPolicyBufferFP), summed alike."""
    buf = TeamReplayBuffer(capacity=1000, n_step=n_step, gamma=GAMMA, seed=0)
    # Episode 1: 4 + 3 steps over two sample() calls, terminated. Episode 2: 5 steps,
    # truncated (done, not terminated). Episode 3: 2 + 4 steps, still running.
    buf.add(_rows(1, 0, 4, fp=fp), "e1", done=False)
    buf.add(_rows(3, 0, 2, fp=fp), "e3", done=False)
    buf.add(_rows(2, 0, 5, fp=fp), "e2", done=True)
    buf.add(_rows(1, 4, 3, terminal=True, fp=fp), "e1", done=True)
    buf.add(_rows(3, 2, 4, fp=fp), "e3", done=False)
    episodes = {1: (7, "term"), 2: (5, "trunc"), 3: (6, "running")}
    batch = buf.sample(len(buf))
    assert len(batch[REWARD]) == 18
    for i, code in enumerate(batch["state"][:, 0]):
        ep, t = divmod(int(code), 100)
        ret, discount, nxt, term = _naive_nstep(episodes, ep, t, n_step)
        assert batch[REWARD][i] == pytest.approx([ret, 2 * ret] if fp else ret, rel=1e-5)
        assert batch[DISCOUNT][i] == pytest.approx(discount, rel=1e-6)
        assert batch[NEXT_STATE][i, 0] == pytest.approx(nxt)
        assert batch["a"][NEXT_OBS][i, 0] == pytest.approx(nxt)
        assert batch[TERMINATED][i] == term
        assert batch["a"][Columns.OBS][i, 0] == code  # the start row's own columns


def test_ring_buffer_overwrites_oldest_and_never_links_into_overwritten_rows():
    buf = TeamReplayBuffer(capacity=8, n_step=5, gamma=GAMMA, seed=0)
    buf.add(_rows(1, 0, 6), "e1", done=False)  # rows 0-5
    buf.add(_rows(2, 0, 6), "e2", done=False)  # rows 6, 7, 0-3: e1's steps 0-3 are gone
    assert len(buf) == 8
    # e1 goes on (still running) into rows 4, 5, overwriting its own newest steps 4, 5:
    # the new rows must form a fresh chain, not link back into themselves.
    buf.add(_rows(1, 6, 2), "e1", done=False)
    batch = buf.sample(8)
    assert sorted(int(c) for c in batch["state"][:, 0]) == [106, 107, 200, 201, 202, 203, 204, 205]
    by_code = {int(c): i for i, c in enumerate(batch["state"][:, 0])}
    i = by_code[106]  # 106 → 107, then 107 is e1's newest row: stop there
    assert batch[NEXT_STATE][i, 0] == 107.5
    assert batch[REWARD][i] == pytest.approx(1 + 0.6 + GAMMA * (1 + 0.7))
    assert batch[DISCOUNT][i] == pytest.approx(GAMMA**2)
    i = by_code[200]  # e2's chain is intact: 5 steps
    assert batch[NEXT_STATE][i, 0] == 204.5 and batch[DISCOUNT][i] == pytest.approx(GAMMA**5)
    for i, code in enumerate(batch["state"][:, 0]):
        assert int(batch[NEXT_STATE][i, 0]) // 100 == int(code) // 100  # never another episode's row


# ---- learners on fixed tensors -------------------------------------------------------


def _learner(cls, **training):
    config = (
        cls()
        .environment("harl_toy", env_config={"task": "continuous_sum", "n_agents": 3})
        .debugging(seed=0)
        .training(warmup_steps=0, train_batch_size_per_learner=16, **training)
    )
    return config.build_learner()


def _batch(learner, B: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for a in learner.agents:
        batch[a] = {
            Columns.OBS: torch.randn(B, 1, generator=g),
            NEXT_OBS: torch.randn(B, 1, generator=g),
            Columns.ACTIONS: torch.rand(B, 1, generator=g) * 2 - 1,
            ALIVE: torch.ones(B),
        }
    batch[STATE] = torch.randn(B, 1, generator=g)
    batch[NEXT_STATE] = torch.randn(B, 1, generator=g)
    batch[REWARD] = torch.randn(B, generator=g)
    batch[TERMINATED] = (torch.arange(B) % 3 == 0).float()  # some terminal rows, the rest truncated/running
    batch[DISCOUNT] = torch.full((B,), GAMMA)
    return batch


def test_td3_target_is_clipped_smoothed_twin_min_and_stops_only_at_termination():
    learner = _learner(HATD3Config, gamma=GAMMA)
    batch = _batch(learner)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    replay = torch.Generator().set_state(learner._generator.get_state())
    got = learner.td_targets(batch)

    # Independently: the same noise draws (the learner's generator, in team order), clipped at ±0.5.
    joint = []
    for a in learner.agents:
        mu = learner.module[a].unwrapped().target_pi(batch[a][NEXT_OBS])
        noise = torch.randn(mu.shape, generator=replay) * 0.2
        noise = torch.maximum(torch.minimum(noise, torch.tensor(0.5)), torch.tensor(-0.5))
        joint.append(torch.maximum(torch.minimum(mu + noise, torch.tensor(1.0)), torch.tensor(-1.0)))
    x = torch.cat([batch[NEXT_STATE], *joint], dim=-1)
    q1, q2 = (net(x).squeeze(-1) for net in critic.target_qs)
    expected = batch[REWARD] + GAMMA * (1 - batch[TERMINATED]) * torch.where(q1 < q2, q1, q2)
    torch.testing.assert_close(got, expected.detach())
    # Terminal rows: the reward alone; non-terminal (truncated) rows bootstrap.
    term = batch[TERMINATED] == 1
    torch.testing.assert_close(got[term], batch[REWARD][term])
    assert not torch.allclose(got[~term], batch[REWARD][~term])


def test_td3_smoothing_noise_is_clipped():
    from harl_rllib.algorithms.hatd3.torch.hatd3_torch_learner import smoothed_target_actions

    torch.manual_seed(0)
    zeros = torch.zeros(100_000, 1)
    out = smoothed_target_actions(zeros, policy_noise=0.2, noise_clip=0.5, unit_noise=torch.randn_like(zeros))
    assert float(out.abs().max()) == pytest.approx(0.5)
    assert float(out.std()) == pytest.approx(0.2, abs=0.01)  # barely clipped at 2.5 σ
    edge = torch.full((1000, 1), 0.9)
    assert float(smoothed_target_actions(edge, 0.2, 0.5, torch.randn_like(edge)).max()) == 1.0  # into the box


def test_ddpg_target_uses_the_single_target_q_and_target_actors():
    learner = _learner(HADDPGConfig, gamma=GAMMA)
    batch = _batch(learner)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    assert len(critic.qs) == 1
    joint = [learner.module[a].unwrapped().target_pi(batch[a][NEXT_OBS]) for a in learner.agents]
    q = critic.target_qs[0](torch.cat([batch[NEXT_STATE], *joint], -1)).squeeze(-1)
    expected = batch[REWARD] + GAMMA * (1 - batch[TERMINATED]) * q
    torch.testing.assert_close(learner.td_targets(batch), expected.detach())


def test_fp_critic_learns_each_agents_state_and_reward_with_the_joint_action():
    """FP (HARL's OffPolicyBufferFP): the TD targets are one per (agent stream, row), agent-major:
    agent j's own next state with the joint target action, its own reward; the actor's Q is the
    mean over the agents' streams (HARL's mean over its tiled rows). Checked on MAMuJoCo's FP
    states against a loop over agents."""
    config = (
        HADDPGConfig()
        .environment("harl_mamujoco", env_config={"task": "HalfCheetah-2x3", "state_type": "FP"})
        .debugging(seed=0)
        .training(state_type="FP", warmup_steps=0, train_batch_size_per_learner=8, gamma=GAMMA, policy_freq=1)
    )
    learner = config.build_learner()
    n, B = len(learner.agents), 8
    assert learner.num_streams == n == 2
    S = config.get_team_spec().state_space.shape[0]
    g = torch.Generator().manual_seed(0)
    batch = {
        a: {
            Columns.OBS: torch.randn(B, *config.get_team_spec().observation_spaces[a].shape, generator=g),
            NEXT_OBS: torch.randn(B, *config.get_team_spec().observation_spaces[a].shape, generator=g),
            Columns.ACTIONS: torch.rand(B, 3, generator=g) * 2 - 1,
            ALIVE: torch.ones(B),
        }
        for a in learner.agents
    }
    batch[STATE], batch[NEXT_STATE] = torch.randn(B, n, S, generator=g), torch.randn(B, n, S, generator=g)
    batch[REWARD] = torch.randn(B, n, generator=g)
    batch[TERMINATED] = (torch.arange(B) % 3 == 0).float()
    batch[DISCOUNT] = torch.full((B,), GAMMA)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    got = learner.td_targets(batch)
    assert got.shape == (n * B,)
    nxt = torch.cat([learner.module[a].unwrapped().target_pi(batch[a][NEXT_OBS]) for a in learner.agents], -1)
    for j in range(n):
        q = critic.denormalize(critic.target_qs[0](torch.cat([batch[NEXT_STATE][:, j], nxt], -1)).squeeze(-1))
        expected = batch[REWARD][:, j] + GAMMA * (1 - batch[TERMINATED]) * q
        torch.testing.assert_close(got[j * B : (j + 1) * B], expected.detach())
    # The critic step and the actors' steps run on these shapes and move every network.
    before = {m: copy.deepcopy(learner.module[m].unwrapped().state_dict()) for m in learner.module.keys()}
    learner.update_once(batch, list(learner.agents))
    for m, state in before.items():
        after = learner.module[m].unwrapped().state_dict()
        assert all(torch.isfinite(v).all() for v in after.values())
        assert any(not torch.equal(v, after[k]) for k, v in state.items()), m


def _actor_outputs(learner, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {a: learner.module[a].unwrapped().pi(batch[a][Columns.OBS]) for a in learner.agents}


@pytest.mark.parametrize("cls, sequential", [(HADDPGConfig, True), (MADDPGConfig, False)])
def test_sequential_substitution_of_updated_actions(cls, sequential):
    """Agent k's loss sees the updated actions of the agents before it and the old
    actions of those after it (HA); every other agent's action from the replay buffer (MA,
    as the reference's OffPolicyMARunner and the original MADDPG)."""
    learner = _learner(cls, lr=1e-2)
    batch = _batch(learner)
    old = _actor_outputs(learner, batch)
    order = ["agent_2", "agent_0", "agent_1"]
    learner.train_actors(batch, order)
    new = _actor_outputs(learner, batch)
    for a in learner.agents:
        assert (new[a] - old[a]).abs().max() > 1e-3  # every actor moved
    col = {a: i for i, a in enumerate(learner.agents)}  # 1-D actions: one column each
    for k, aid in enumerate(order):
        joint = learner.last_joint_actions[aid]
        for j, other in enumerate(order):
            seen = joint[:, col[other]]
            if other == aid:
                want = old[aid]  # its own action before its step (the one it differentiates)
            elif not sequential:
                want = batch[other][Columns.ACTIONS]
            elif j < k:
                want = new[other]
            else:
                want = old[other]
            torch.testing.assert_close(seen, want[:, 0], msg=f"{aid} sees {other}")


def test_actor_step_leaves_the_critic_untouched_and_targets_move_by_tau():
    learner = _learner(HATD3Config, policy_freq=1, tau=0.25)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    batch = _batch(learner)
    learner.critic_step(batch)
    before_q = [p.clone() for p in critic.qs.parameters()]
    before_tq = [p.clone() for p in critic.target_qs.parameters()]
    learner.train_actors(batch, list(learner.agents))
    for p, b in zip(critic.qs.parameters(), before_q, strict=True):
        torch.testing.assert_close(p, b)
    learner.update_targets()
    for pt, bt, p in zip(critic.target_qs.parameters(), before_tq, critic.qs.parameters(), strict=True):
        torch.testing.assert_close(pt, 0.75 * bt + 0.25 * p)


def test_td3_delays_actor_updates():
    learner = _learner(MATD3Config)  # policy_freq 2
    batch = _batch(learner)
    old = _actor_outputs(learner, batch)
    learner.update_once(batch, list(learner.agents))  # total_it 1: critic only
    torch.testing.assert_close(_actor_outputs(learner, batch)["agent_0"], old["agent_0"])
    learner.update_once(batch, list(learner.agents))  # total_it 2: actors too
    assert (_actor_outputs(learner, batch)["agent_0"] - old["agent_0"]).abs().max() > 0


# ---- HASAC --------------------------------------------------------------------------


def _soft_actor(action_space) -> SoftActorTorchRLModule:
    return SoftActorTorchRLModule(
        observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
        action_space=action_space,
        model_config={"hidden_sizes": [16, 16]},
    )


def test_squashed_gaussian_logp_matches_a_tanh_transformed_normal():
    torch.manual_seed(0)
    actor = _soft_actor(gym.spaces.Box(-1, 1, (3,), np.float32))
    obs = torch.randn(64, 4)
    torch.manual_seed(1)
    a, logp = actor.sample_with_logp(obs)
    mu, log_std = actor._head(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, log_std.exp()), [torch.distributions.transforms.TanhTransform()]
    )
    a_safe = a.clamp(-1 + 1e-6, 1 - 1e-6)
    torch.testing.assert_close(logp, dist.log_prob(a_safe).sum(-1), atol=2e-3, rtol=1e-4)
    assert a.abs().max() < 1


def test_categorical_soft_actor_logp_and_masks():
    torch.manual_seed(0)
    actor = SoftActorTorchRLModule(
        observation_space=gym.spaces.Dict(
            {"obs": gym.spaces.Box(-1, 1, (4,), np.float32), "action_mask": gym.spaces.Box(0, 1, (5,), np.float32)}
        ),
        action_space=gym.spaces.Discrete(5),
        model_config={"hidden_sizes": [16]},
    )
    mask = torch.tensor([[1, 0, 1, 0, 1]] * 256, dtype=torch.float32)
    obs = {"obs": torch.randn(256, 4), "action_mask": mask}
    onehot, logp = actor.sample_with_logp(obs)
    (logits,) = actor._head(obs)
    idx = onehot.argmax(-1)
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1).gather(1, idx[:, None])[:, 0])
    assert set(idx.tolist()) <= {0, 2, 4}
    explore = actor.forward_exploration({Columns.OBS: obs}, t=10**9)[Columns.ACTIONS]
    assert set(explore.tolist()) <= {0, 2, 4}
    torch.testing.assert_close(encode_actions(idx, gym.spaces.Discrete(5)), onehot.detach())
    # Straight-through Gumbel-softmax: forward the one-hot argmax of logits + g, backward the
    # gradient of softmax(logits + g) (what torch's F.gumbel_softmax(hard=True) computes).
    g = -torch.empty(256, 5).exponential_(generator=torch.Generator().manual_seed(3)).log()
    onehot, _ = actor.sample_with_logp(obs, noise=lambda like, kind: g)
    (logits,) = actor._head(obs)
    assert torch.equal(onehot.detach(), torch.nn.functional.one_hot((logits + g).argmax(-1), 5).float())
    weights = torch.randn(256, 5)
    (grad,) = torch.autograd.grad((onehot * weights).sum(), actor.logits_layer.weight)
    (expected,) = torch.autograd.grad((torch.softmax(logits + g, -1) * weights).sum(), actor.logits_layer.weight)
    torch.testing.assert_close(grad, expected)


def test_discrete_target_entropy_is_positive():
    assert discrete_target_entropy(5) == pytest.approx(0.98 * math.log(5))
    from harl_rllib.algorithms.hasac.torch.hasac_torch_learner import target_entropy

    assert target_entropy(gym.spaces.Box(-1, 1, (6,))) == -6.0
    assert target_entropy(gym.spaces.Discrete(5)) > 1.5


def test_hasac_soft_target_and_actor_loss():
    learner = _learner(HASACConfig, gamma=GAMMA, use_valuenorm=False, alpha=0.3)
    batch = _batch(learner)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    # The learner draws its noise from its own generator (one stream for every learner's rows):
    # replay that stream here, agent after agent.
    replay = torch.Generator().set_state(learner._generator.get_state())
    got = learner.td_targets(batch)
    joint, logps = [], []
    for a in learner.agents:
        noise = lambda like, kind: torch.randn(like.shape, generator=replay)  # noqa: E731
        act, logp = learner.module[a].unwrapped().sample_with_logp(batch[a][NEXT_OBS], noise=noise)
        joint.append(act)
        logps.append(logp)
    x = torch.cat([batch[NEXT_STATE], *joint], -1)
    q = torch.minimum(*(net(x).squeeze(-1) for net in critic.target_qs))
    soft = q - 0.3 * sum(logps)
    expected = batch[REWARD] + GAMMA * (1 - batch[TERMINATED]) * soft
    torch.testing.assert_close(got, expected.detach())


def test_hasac_auto_alpha_moves_towards_target_entropy():
    learner = _learner(HASACConfig, auto_alpha=True, alpha_lr=0.1)
    batch = _batch(learner)
    logp = torch.full((16,), 5.0)  # entropy −5, far below the target −1: α must grow
    learner._alpha_step("agent_0", logp, learner.target_entropy["agent_0"])
    assert float(learner.alpha("agent_0")) > 1.0
    learner._alpha_step("agent_1", torch.full((16,), -5.0), learner.target_entropy["agent_1"])
    assert float(learner.alpha("agent_1")) < 1.0
    learner.train_actors(batch, list(learner.agents))
    assert float(learner.alpha("__team__")) != 1.0


# ---- configs: bad input fails before any worker -------------------------------------


def test_bad_off_policy_settings_fail_in_validate():
    base = HATD3Config().environment("harl_toy", env_config={"task": "continuous_sum"})
    with pytest.raises(ValueError, match="tau"):
        base.copy().training(tau=0.0).validate()
    with pytest.raises(ValueError, match="n_step"):
        base.copy().training(n_step=0).validate()
    with pytest.raises(ValueError, match="normalize_actions"):
        base.copy().environment(normalize_actions=False).validate()
    with pytest.raises(ValueError, match="continuous"):
        HATD3Config().environment("harl_toy", env_config={"task": "distinct_actions"}).validate()
    # HASAC takes discrete actions.
    HASACConfig().environment("harl_toy", env_config={"task": "distinct_actions"}).validate()


# ---- episode ends as RLlib's episodes report them ----------------------------------------


def _run_episode(env, seed: int = 0):
    """One whole episode of random play recorded into RLlib's MultiAgentEpisode, as the env
    runner records it."""
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    obs, infos = env.reset(seed=seed)
    ep = MultiAgentEpisode(observation_space=env.observation_spaces, action_space=env.action_spaces)
    ep.add_env_reset(observations=obs, infos=infos)
    while not ep.is_done:
        acts = {a: env.action_spaces[a].sample() for a in env.possible_agents}
        obs, rew, term, trunc, infos = env.step(acts)
        logp = {a: {Columns.ACTION_LOGP: np.float32(0.0)} for a in acts}
        ep.add_env_step(obs, acts, rew, infos=infos, terminateds=term, truncateds=trunc, extra_model_outputs=logp)
    return ep, term, trunc


def test_time_limit_is_not_a_termination_in_replay_or_gae():
    """RLlib's MultiAgentEpisode reports is_terminated=True when all agents are done, also
    when the env truncated (MPE's 25-step limit). Both families must still bootstrap there:
    the replay rows and the team batch's GAE see `terminated` only for a real termination."""
    from harl_rllib.core.replay import episode_transitions
    from harl_rllib.core.team_batch import TeamBatchBuilder
    from harl_rllib.envs.mpe import MPETeamEnv
    from harl_rllib.envs.toy import DistinctActionsEnv

    mpe, term, trunc = _run_episode(MPETeamEnv({"N": 2, "continuous_actions": True}))
    assert trunc["__all__"] and not term["__all__"] and mpe.is_terminated  # RLlib's flag says terminated
    toy, term, _ = _run_episode(DistinctActionsEnv({"n_agents": 2}))
    assert term["__all__"]
    for ep, terminal in ((mpe, 0.0), (toy, 1.0)):
        agents = list(ep.agent_episodes)
        rows = episode_transitions(ep, agents, has_state=True)
        assert rows[TERMINATED][:-1].sum() == 0 and rows[TERMINATED][-1] == terminal
        builder = TeamBatchBuilder(agents=agents, gamma=0.99, lambda_=0.95, has_state=True)
        assert builder._fragment(ep, 0, rl_module=None).terminated is bool(terminal)
