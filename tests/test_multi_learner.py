"""Two data-parallel learners: one agent order, one set of weights, advantages standardized jointly."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch

from harl_rllib import HAPPOConfig, HATRPOConfig

from conftest import small_config


def _snapshots(algo) -> list[dict]:
    results = algo.learner_group.foreach_learner(operator.methodcaller("snapshot"))
    return [r.get() if hasattr(r, "get") else r for r in results]


def test_two_learners_agree(ray_session):
    config = small_config(batch=400, num_epochs=2, critic_epoch=2, minibatch_size=64, critic_minibatch_size=64)
    config.learners(num_learners=2, num_cpus_per_learner=0.5)
    algo = config.build_algo()
    try:
        for _ in range(2):
            algo.train()
        views = _snapshots(algo)
    finally:
        algo.stop()
    a, b = views
    assert a["world_size"] == b["world_size"] == 2
    # The driver's order reached both learners.
    assert a["order"] == b["order"] and sorted(a["order"]) == ["agent_0", "agent_1", "agent_2"]
    # Gradients, ValueNorm statistics and minibatch counts reduced over learners: same weights.
    for mid in a["weights"]:
        for key in a["weights"][mid]:
            np.testing.assert_allclose(a["weights"][mid][key], b["weights"][mid][key], rtol=1e-5, atol=1e-6)
    # Each learner saw a different shard, but the standardization used all rows (MPE: all alive).
    for agent in a["advantages"]:
        shard_a, shard_b = a["advantages"][agent], b["advantages"][agent]
        assert not np.allclose(shard_a.mean(), 0, atol=1e-3) or not np.allclose(shard_b.mean(), 0, atol=1e-3)
        joint = np.concatenate([shard_a, shard_b])
        assert joint.mean() == pytest.approx(0.0, abs=1e-4)
        assert joint.std() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("cls", [HAPPOConfig, HATRPOConfig])
def test_two_learners_take_the_single_learner_step(ray_session, cls):
    """Same episodes (32 whole MPE episodes, split 16/16 between the learners), whole-batch steps:
    the two learners standardize advantages and update ValueNorm exactly as one learner does,
    and end at the single learner's weights up to float summation order (Adam's first steps
    are ≈ lr·sign(g), so a near-zero gradient entry can move a weight by up to lr = 5e-4 per step).
    HATRPO's actors take no Adam step: their surrogate gradient, every Fisher-vector product of
    the conjugate gradient and the line search's KL and improvement are summed over the learners,
    so they match one learner's to float precision."""

    def run(num_learners: int, init: dict | None) -> tuple[list[dict], dict]:
        # train_batch_size_per_learner is per learner (RLlib's convention): 800 env steps either way.
        config = small_config(cls, batch=800 // max(num_learners, 1), num_epochs=2, critic_epoch=2)
        config.learners(num_learners=num_learners, num_cpus_per_learner=0.5 if num_learners else 1)
        algo = config.build_algo()
        try:
            # Same initial weights and the same exploration noise: the same episodes in both runs.
            if init is None:
                init = algo.learner_group.get_weights()
            algo.learner_group.set_weights(init)
            algo.env_runner_group.sync_weights(
                from_worker_or_learner_group=algo.learner_group, policies=config.actor_module_ids(), inference_only=True
            )
            torch.manual_seed(123)
            algo.train()
            return _snapshots(algo), init
        finally:
            algo.stop()

    (one,), init = run(0, None)
    start = {mid: {k: np.array(v) for k, v in w.items()} for mid, w in init.items()}
    two, _ = run(2, init)
    assert one["order"] == two[0]["order"] == two[1]["order"]
    for agent, adv in one["advantages"].items():
        joint = np.concatenate([two[0]["advantages"][agent], two[1]["advantages"][agent]])
        # The shards hold the episodes in another order: compare the sorted values.
        np.testing.assert_allclose(np.sort(joint), np.sort(adv), rtol=1e-4, atol=1e-5)
    critic = "__central_critic__"
    for key, value in one["weights"][critic].items():
        if "value_norm" in key:
            np.testing.assert_allclose(two[0]["weights"][critic][key], value, rtol=1e-5)
    for mid in one["weights"]:
        exact = cls is HATRPOConfig and mid != critic
        for key in one["weights"][mid]:
            np.testing.assert_allclose(
                one["weights"][mid][key], two[0]["weights"][mid][key], atol=1e-5 if exact else 2.5e-3
            )
            np.testing.assert_allclose(two[0]["weights"][mid][key], two[1]["weights"][mid][key], rtol=1e-5, atol=1e-6)
    if cls is HATRPOConfig:  # the actors moved (a rejected step everywhere would also "agree")
        assert any(
            not np.allclose(start[mid][key], one["weights"][mid][key])
            for mid in one["weights"]
            if mid != critic
            for key in start[mid]
        )
