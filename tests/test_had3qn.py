"""HAD3QN: its target and its sequential update on fixed tensors, each against an independent
computation written here, its validation, and learning on the toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from harl_rllib import HAD3QNConfig
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE
from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.off_policy_learner import NEXT_OBS
from harl_rllib.core.replay import DISCOUNT, NEXT_STATE, REWARD, TERMINATED
from harl_rllib.envs.toy import DistinctActionsEnv

from conftest import train_steps

GAMMA = 0.95


def _learner(**training):
    config = (
        HAD3QNConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions", "n_agents": 3})
        .debugging(seed=0)
        .training(warmup_steps=0, train_batch_size_per_learner=16, gamma=GAMMA, **training)
    )
    return config.build_learner()


def _batch(learner, B: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs_dim = learner.module["agent_0"].unwrapped().observation_space.shape[0]
    n = int(learner.module["agent_0"].unwrapped().action_space.n)
    state_dim = learner.module[CRITIC_MODULE_ID].unwrapped().observation_space.shape[0]
    batch = {
        a: {
            Columns.OBS: torch.rand(B, obs_dim, generator=g),
            NEXT_OBS: torch.rand(B, obs_dim, generator=g),
            Columns.ACTIONS: torch.randint(0, n, (B,), generator=g),
            ALIVE: torch.ones(B),
        }
        for a in learner.agents
    }
    batch[STATE] = torch.rand(B, state_dim, generator=g)
    batch[NEXT_STATE] = torch.rand(B, state_dim, generator=g)
    batch[REWARD] = torch.randn(B, generator=g)
    batch[TERMINATED] = (torch.arange(B) % 3 == 0).float()
    batch[DISCOUNT] = torch.full((B,), GAMMA)
    return batch


def _joint_index(actions: list[int], dims: list[int]) -> int:
    """Written out: the first agent varies fastest (HARL's indiv_to_joint)."""
    index, stride = 0, 1
    for a, n in zip(actions, dims, strict=True):
        index += a * stride
        stride *= n
    return index


def test_target_is_double_q_over_the_joint_action():
    """r + γ (1 − terminated) Q'(s', a'), a'ⁱ = argmax of agent i's *target* network at o'ⁱ,
    valued by the *target* critic at that joint action; the reward alone at terminal rows."""
    learner = _learner()
    batch = _batch(learner)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    dims = [int(learner.module[a].unwrapped().action_space.n) for a in learner.agents]
    with torch.no_grad():
        for p in critic.qs.parameters():  # the online critic differs from the target one
            p.add_(0.1)
        picks = [learner.module[a].unwrapped().target_pi(batch[a][NEXT_OBS]).argmax(-1) for a in learner.agents]
        table = critic.target_qs[0](batch[NEXT_STATE])
        expected = []
        for row in range(len(batch[REWARD])):
            q = table[row, _joint_index([int(p[row]) for p in picks], dims)]
            expected.append(batch[REWARD][row] + GAMMA * (1 - batch[TERMINATED][row]) * q)
        got = learner.td_targets(batch)
    torch.testing.assert_close(got, torch.stack(expected))
    term = batch[TERMINATED] == 1
    torch.testing.assert_close(got[term], batch[REWARD][term])


def test_sequential_substitution_seen_by_the_critic():
    """Agent k regresses its Q at its own greedy action onto the critic's value of the joint
    action in which every earlier agent plays its best response under the critic (given the
    joint action at its turn) and every later agent its greedy action."""
    learner = _learner(lr=1e-2)
    batch = _batch(learner)
    critic = learner.module[CRITIC_MODULE_ID].unwrapped()
    agents = learner.agents
    dims = [int(learner.module[a].unwrapped().action_space.n) for a in agents]
    with torch.no_grad():
        greedy = {a: learner.module[a].unwrapped().pi(batch[a][Columns.OBS]).argmax(-1) for a in agents}
        table = critic.qs[0](batch[STATE])
    order = ["agent_2", "agent_0", "agent_1"]
    before = {a: [p.detach().clone() for p in learner.module[a].parameters()] for a in agents}
    critic_before = [p.detach().clone() for p in critic.parameters()]
    learner.train_actors(batch, order)

    B = len(batch[STATE])
    current = {a: [int(x) for x in greedy[a]] for a in agents}
    for aid in order:
        want = [_joint_index([current[a][row] for a in agents], dims) for row in range(B)]
        assert learner.last_joint_actions[aid].tolist() == want, aid
        i = agents.index(aid)
        for row in range(B):  # its best response, the others fixed
            values = []
            for b in range(dims[i]):
                acts = [current[a][row] for a in agents]
                acts[i] = b
                values.append(float(table[row, _joint_index(acts, dims)]))
            current[aid][row] = int(np.argmax(values))
    for a in agents:  # every actor took a step
        assert any(not torch.equal(p, q) for p, q in zip(learner.module[a].parameters(), before[a], strict=True))
    assert all(torch.equal(p, q) for p, q in zip(critic.parameters(), critic_before, strict=True))  # untouched


def test_validation_errors():
    with pytest.raises(ValueError, match="discrete actions"):
        HAD3QNConfig().environment("harl_mpe", env_config={"continuous_actions": True}).validate()
    with pytest.raises(ValueError, match="one output per joint action"):
        HAD3QNConfig().environment("harl_mpe", env_config={"N": 8}).validate()  # 5⁸ joint actions
    with pytest.raises(ValueError, match="epsilon"):
        HAD3QNConfig().environment("harl_toy", env_config={"task": "distinct_actions"}).training(epsilon=1.5).validate()


class DistinctActionsCostEnv(DistinctActionsEnv):
    """The toy `distinct_actions` with its reward shifted by −1 (0 when all actions differ,
    −1 when all agree). HAD3QN, as HARL's, trains each agent's Q only at its greedy action, so
    with the toy's positive rewards every greedy value is pulled up and the first greedy
    actions stay greedy; with rewards ≤ 0, as MPE's, a poor greedy action's value falls below
    the others' and the agent tries another."""

    def step(self, action_dict):
        obs, rewards, terms, truncs, infos = super().step(action_dict)
        return obs, {a: r - 1.0 for a, r in rewards.items()}, terms, truncs, infos


@pytest.mark.slow
def test_had3qn_learns_to_act_differently(ray_session):
    """Random play scores ≈ 2.78 − 5 = −2.22 per episode (5 steps); all agents agreeing
    −5; distinct actions at every step 0."""
    config = (
        HAD3QNConfig()
        .environment(DistinctActionsCostEnv, env_config={"n_agents": 3})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(warmup_steps=500, train_interval=10, train_batch_size_per_learner=256)
        .debugging(seed=0)
    )
    returns = train_steps(config, 8000)
    assert returns[0] < -1.8, returns  # the random warm-up
    assert np.mean(returns[-5:]) > -0.8, np.round(returns, 2).tolist()
