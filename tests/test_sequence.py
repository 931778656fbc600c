"""The sequential update: order, the factor each agent sees, who changes when, row alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from harl_rllib.algorithms.happo.torch.happo_torch_learner import HAPPOTorchLearner
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE
from harl_rllib.core.fragments import ENV_T, EPS_INDEX

from conftest import small_config


class RecordingHAPPOLearner(HAPPOTorchLearner):
    """HAPPO's learner, recording every actor's weights around each agent's turn."""

    def actor_step(self, module_id, data, advantages, factor):
        def snapshot():
            return {
                mid: {k: v.detach().clone() for k, v in self.module[mid].unwrapped().state_dict().items()}
                for mid in self.config.actor_module_ids()
            }

        before = snapshot()
        super().actor_step(module_id, data, advantages, factor)
        self.turns.append(dict(module_id=module_id, factor=factor.clone(), data=data, before=before, after=snapshot()))


@pytest.fixture
def recording_algo(ray_session):
    config = small_config(batch=200, fixed_order=False).training(learner_class=RecordingHAPPOLearner)
    algo = config.build_algo()
    yield algo
    algo.stop()


def independent_logp(state_dict, module_id, algo, data) -> torch.Tensor:
    """log π(a|o) with the given weights, via a fresh module and torch.distributions."""
    spec = algo.config.get_multi_rl_module_spec().rl_module_specs[module_id]
    module = spec.build()
    module.load_state_dict(state_dict)
    logits = module.forward_train({Columns.OBS: data[Columns.OBS]})[Columns.ACTION_DIST_INPUTS]
    return torch.distributions.Categorical(logits=logits).log_prob(data[Columns.ACTIONS].long())


def test_factor_and_turns(recording_algo):
    algo = recording_algo
    learner = algo.learner_group._learner
    learner.turns = []
    episodes = algo.env_runner.sample(num_timesteps=200, random_actions=False)
    order = ["agent_2", "agent_0", "agent_1"]
    learner.update(episodes=episodes, agent_order=order)

    assert [t["module_id"] for t in learner.turns] == order
    expected_factor = torch.ones(len(learner.turns[0]["factor"]))
    for k, turn in enumerate(learner.turns):
        # The factor handed to agent k is the product of the ratios of agents before it.
        torch.testing.assert_close(turn["factor"], expected_factor, rtol=1e-4, atol=1e-5)
        if k == 0:
            assert torch.all(turn["factor"] == 1.0)
        else:
            assert not torch.allclose(turn["factor"], torch.ones_like(turn["factor"]))
        mid = turn["module_id"]
        ratio = torch.exp(
            independent_logp(turn["after"][mid], mid, algo, turn["data"])
            - independent_logp(turn["before"][mid], mid, algo, turn["data"])
        )
        expected_factor = expected_factor * ratio.detach()
        # Only this agent's actor changed during its turn.
        for other in turn["before"]:
            same = all(torch.equal(turn["before"][other][p], turn["after"][other][p]) for p in turn["before"][other])
            assert same == (other != mid), (other, mid)


def test_rows_are_aligned(recording_algo):
    algo = recording_algo
    learner = algo.learner_group._learner
    episodes = algo.env_runner.sample(num_timesteps=120, random_actions=False)
    batch = learner.build_team_batch(episodes)
    agents = ["agent_0", "agent_1", "agent_2"]
    for a in agents[1:]:
        np.testing.assert_array_equal(batch[a][EPS_INDEX], batch[agents[0]][EPS_INDEX])
        np.testing.assert_array_equal(batch[a][ENV_T], batch[agents[0]][ENV_T])
    # mpe2's state is the concatenation of all agents' observations at the same step.
    concat = np.concatenate([batch[a][Columns.OBS] for a in agents], axis=1)
    np.testing.assert_allclose(batch[CRITIC_MODULE_ID][STATE], concat, rtol=1e-6)
    assert len(concat) == sum(e.env_steps() for e in episodes)


def _orders(algo, n_iters):
    orders = []
    for _ in range(n_iters):
        result = algo.train()
        positions = {a: result["learners"][a]["update_position"] for a in ("agent_0", "agent_1", "agent_2")}
        orders.append(tuple(sorted(positions, key=positions.get)))
    return orders


def test_fixed_order_and_random_order(ray_session):
    algo = small_config(batch=100, fixed_order=True, num_epochs=1, critic_epoch=1).build_algo()
    try:
        assert set(_orders(algo, 3)) == {("agent_0", "agent_1", "agent_2")}
    finally:
        algo.stop()
    algo = small_config(batch=100, fixed_order=False, num_epochs=1, critic_epoch=1).build_algo()
    try:
        orders = _orders(algo, 6)
        assert len(set(orders)) >= 2, orders
        assert all(sorted(o) == ["agent_0", "agent_1", "agent_2"] for o in orders)
    finally:
        algo.stop()


def test_simultaneous_update_ablation(ray_session):
    """sequential_update=False: per-agent actors, every agent trained with factor 1."""
    algo = small_config(batch=100, sequential_update=False, num_epochs=1, critic_epoch=1).build_algo()
    try:
        learner = algo.learner_group._learner
        before = {m: {k: v.clone() for k, v in learner.module[m].state_dict().items()} for m in learner.module.keys()}
        algo.train()
        assert set(learner.last_factors) == {"agent_0", "agent_1", "agent_2"}
        assert all(torch.all(f == 1.0) for f in learner.last_factors.values())
        for m in ("agent_0", "agent_1", "agent_2"):
            after = learner.module[m].state_dict()
            assert any(not torch.equal(before[m][k], after[k]) for k in after)
    finally:
        algo.stop()
