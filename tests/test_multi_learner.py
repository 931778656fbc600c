"""Two data-parallel learners: one agent order, one set of weights, advantages standardized jointly."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
from ray.rllib.core.learner.training_data import TrainingData

from harl_rllib import HAPPOConfig, HATRPOConfig

from conftest import on_every_learner, small_config


def _snapshots(algo) -> list[dict]:
    return on_every_learner(algo, operator.methodcaller("snapshot"))


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


# ---- recurrent policies and the off-policy family on two learners --------------------------


def _learner_states(algo) -> list[dict]:
    """Every learner's `get_state()` (weights, optimizers, carried critic states, buffer RNG...)."""
    return on_every_learner(algo, operator.methodcaller("get_state"))


def _weights(state: dict) -> dict[str, dict[str, np.ndarray]]:
    return {mid: {k: np.asarray(v) for k, v in w.items()} for mid, w in state["rl_module"].items()}


def assert_same_step(one: dict, two: dict, bound: float) -> None:
    """Weights after the same updates, one learner vs two: nearly every entry equal to float
    precision (a wrong reduction or the wrong rows move most entries by ≈ lr per Adam step),
    and none further apart than Adam's sign noise allows (a gradient entry ≈ 0, summed in
    another order, can flip the sign of its step: `bound`)."""
    diffs = np.concatenate([np.abs(one[m][k] - two[m][k]).ravel() for m in one for k in one[m]])
    assert diffs.max() <= bound, diffs.max()
    assert np.mean(diffs < 1e-5) > 0.98, np.mean(diffs < 1e-5)


def test_recurrent_two_learners_take_the_single_learner_step(ray_session):
    """Recurrent HAPPO, two updates on the same rollouts of 4 envs, 31 steps each (4-step
    episodes: cut between the updates and at the end). Two learners standardize the same advantages and end at
    the single learner's weights. The second update hands every env stream to the other
    learner than the first did, so each continuation's critic state must come from the other
    learner (the carried states are gathered after every update), and both keep them all."""
    from test_recurrent import recall_config

    from harl_rllib.core.learner import CRITIC_CARRY

    def build(num_learners: int, batch: int):
        config = recall_config(batch=batch, envs=4, num_epochs=2, critic_epoch=2)
        if num_learners:
            config.learners(num_learners=num_learners, num_cpus_per_learner=0.5)
        return config.build_algo()

    order = ["agent_1", "agent_0"]
    one = build(0, 120)
    try:
        runner = one.env_runner_group.local_env_runner
        calls = [runner.sample(num_timesteps=124, random_actions=False) for _ in range(2)]
        assert all(r.shape == (31, 4) for call in calls for r in call)
        init = one.learner_group.get_weights()
        for call in calls:
            one.learner_group.update(episodes=call, agent_order=order)
        (single,) = _snapshots(one)
        single_state = _learner_states(one)[0]
    finally:
        one.stop()
    two = build(2, 60)
    try:
        two.learner_group.set_weights(init)
        for i, call in enumerate(calls):
            shards = two.shard_samples(call, 2)
            assert [len(s) for s in shards] == [1, 1] and all(s[0].shape == (31, 2) for s in shards)
            two.learner_group.update(
                training_data=TrainingData(batches=shards[:: 1 if i == 0 else -1]), agent_order=order
            )
        a, b = _snapshots(two)
        states = _learner_states(two)
    finally:
        two.stop()
    for agent, adv in single["advantages"].items():
        joint = np.concatenate([a["advantages"][agent], b["advantages"][agent]])
        np.testing.assert_allclose(np.sort(joint), np.sort(adv), rtol=1e-4, atol=1e-5)
    assert_same_step(_weights(single_state), _weights(states[0]), bound=2 * 4 * 3e-3)
    assert_same_step(_weights(states[0]), _weights(states[1]), bound=1e-6)
    carries = [{(ep, t): h for ep, t, h in s[CRITIC_CARRY]["carry"]} for s in (single_state, *states)]
    # Kept: the state at the end of every env's running episode (31 + 31 steps: mid-episode).
    ends = {(int(r.episode_id[-1, b]), int(r.env_t[-1, b]) + 1) for r in calls[1] for b in range(r.shape[1])}
    assert len(ends) == 4 and ends <= carries[0].keys()
    for carry in carries[1:]:
        assert carry.keys() == carries[0].keys()
        for key, h in carry.items():
            np.testing.assert_allclose(h, carries[0][key], atol=1e-4)


def _off_policy_config(cls, batch: int, **training):
    """3 agents with Box actions (the toy `continuous_sum` task), 2 envs, no warm-up."""
    return (
        cls()
        .environment("harl_toy", env_config={"task": "continuous_sum", "n_agents": 3})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .debugging(seed=0)
        .training(train_batch_size_per_learner=batch, **{"warmup_steps": 0, "policy_freq": 1, **training})
    )


@pytest.mark.parametrize("name", ["hatd3", "hasac"])
def test_off_policy_two_learners_take_the_single_learner_step(ray_session, name):
    """HATD3 / HASAC: the same transitions, 4 updates. Two learners with batch 32 each (their
    slices of one replicated buffer's 64-row draw, with those rows' noise) end at the weights
    (and HASAC's temperatures) of one learner with batch 64."""
    from harl_rllib import HASACConfig, HATD3Config

    cls = {"hatd3": HATD3Config, "hasac": HASACConfig}[name]
    training = {"auto_alpha": True} if name == "hasac" else {}
    num_updates, orders = 4, [["agent_2", "agent_0", "agent_1"], ["agent_1", "agent_2", "agent_0"]] * 2

    def run(num_learners: int, init: dict | None) -> tuple[list[dict], dict]:
        config = _off_policy_config(cls, 64 // max(num_learners, 1), **training)
        if num_learners:
            config.learners(num_learners=num_learners, num_cpus_per_learner=0.5)
        algo = config.build_algo()
        try:
            if init is None:
                init = algo.learner_group.get_weights()
            algo.learner_group.set_weights(init)
            shards = algo.shard_samples(samples, max(num_learners, 1))
            data = {"training_data": TrainingData(batches=shards)} if num_learners else {"episodes": samples}
            algo.learner_group.update(**data, num_updates=num_updates, agent_orders=orders)
            return _learner_states(algo), init
        finally:
            algo.stop()

    sampler = _off_policy_config(cls, 64, **training).build_algo()
    try:
        samples = sampler.env_runner_group.local_env_runner.sample(num_timesteps=200, random_actions=False)
    finally:
        sampler.stop()
    (one,), init = run(0, None)
    two, _ = run(2, init)
    lr = max(cls().lr, cls().critic_lr)
    assert_same_step(_weights(one), _weights(two[0]), bound=2 * num_updates * lr)
    assert_same_step(_weights(two[0]), _weights(two[1]), bound=1e-6)
    moved = [not np.allclose(np.asarray(v), _weights(one)[m][k]) for m, w in init.items() for k, v in w.items()]
    assert any(moved)
    if name == "hasac":
        from harl_rllib.algorithms.hasac.torch.hasac_torch_learner import LOG_ALPHA

        for key, saved in one[LOG_ALPHA].items():
            assert saved["log_alpha"] != 0  # the temperatures moved...
            for state in two:  # ... as one learner's did
                np.testing.assert_allclose(state[LOG_ALPHA][key]["log_alpha"], saved["log_alpha"], atol=1e-6)


def _two_learner_config(name: str):
    from test_recurrent import recall_config

    from harl_rllib import HASACConfig, HATD3Config

    if name == "hatrpo":
        config = small_config(HATRPOConfig, batch=100)
    elif name == "happo_gru":
        config = recall_config(batch=60, envs=4)
    else:
        cls = {"hatd3": HATD3Config, "hasac": HASACConfig}[name]
        config = _off_policy_config(cls, 32, warmup_steps=80, train_interval=10, update_per_train=0.3)
        config.training(store_buffer_in_checkpoints=True)
    return config.learners(num_learners=2, num_cpus_per_learner=0.5)


@pytest.mark.parametrize("name", ["hatrpo", "happo_gru", "hatd3", "hasac"])
def test_two_learners_checkpoint_round_trip(ray_session, tmp_path, name):
    """Two learners train, save, restore and train on: both restored learners hold the saved
    state (RLlib saves the first learner's; with replicated state that is everyone's: weights,
    the recurrent critic's carried states, the off-policy replay buffer), and they stay in step."""
    from ray.rllib.algorithms.algorithm import Algorithm

    from harl_rllib.core.learner import CRITIC_CARRY
    from harl_rllib.core.off_policy_learner import REPLAY

    algo = _two_learner_config(name).build_algo()
    try:
        for _ in range(2):
            algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        saved = _learner_states(algo)
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert restored.config.num_learners == 2
        states = _learner_states(restored)
        for state in states:
            assert_same_step(_weights(saved[0]), _weights(state), bound=0)
            if name == "happo_gru":
                carried = [{(ep, t) for ep, t, _ in s[CRITIC_CARRY]["carry"]} for s in (saved[0], saved[1], state)]
                assert carried[0] and carried[0] == carried[1] == carried[2]
            if name in ("hatd3", "hasac"):  # every learner holds the whole buffer: 80 warm-up + 20 rows
                buffers = [s[REPLAY]["buffer"] for s in (saved[0], saved[1], state)]
                assert buffers[0]["size"] == buffers[1]["size"] == buffers[2]["size"] == 100
                assert buffers[0]["rng"] == buffers[1]["rng"] == buffers[2]["rng"]
        result = restored.train()
        assert restored.iteration == 3 and np.isfinite(result["env_runners"]["num_env_steps_sampled_lifetime"])
        after = _learner_states(restored)
        assert_same_step(_weights(after[0]), _weights(after[1]), bound=1e-6)
        assert not all(
            np.allclose(_weights(after[0])[m][k], v) for m, w in _weights(states[0]).items() for k, v in w.items()
        )
    finally:
        restored.stop()
