"""Recurrent (GRU) actors and critic: training sees exactly what sampling computed (ratio 1
before the first step), states reset at episode starts and carry across fragments, padding
weighs nothing, and the memory task is solved only with memory."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import tree
from ray.rllib.core.columns import Columns
from standins.starcraft2_standin import StarCraft2EnvStandIn

from harl_rllib import HAA2CConfig, HAPPOConfig, HATRPOConfig, MAPPOConfig
from harl_rllib.algorithms.happo.torch.happo_torch_learner import HAPPOTorchLearner
from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.core.fragments import ADVANTAGES, ALIVE, ENV_T, LOSS_MASK, STATE_IN, VALUE_TARGETS, sequence_layout
from harl_rllib.core.networks import GRUStack
from harl_rllib.envs.smac import SMACTeamEnv
from harl_rllib.sampling import TeamRollout

from conftest import small_config


def recall_config(cls=HAPPOConfig, *, recurrent=True, batch=360, envs=4, chunk=3, **training):
    """The recall task (cue shown only at step 0, 4-step episodes). 360 steps over 4 envs are
    90-step fragments: episodes are cut between fragments, and chunks of 3 need padding."""
    return (
        cls()
        .environment("harl_toy", env_config={"task": "recall"})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=envs)
        .debugging(seed=0)
        .training(
            train_batch_size_per_learner=batch,
            lr=3e-3,
            critic_lr=3e-3,
            actor_model={"hidden_sizes": [64]},
            critic_hidden_sizes=[64],
            use_recurrent_policy=recurrent,
            data_chunk_length=chunk,
            **training,
        )
    )


def team_batch(algo, samples) -> dict:
    """The learner's team batch of team rollouts or episodes, as tensors."""
    return tree.map_structure(torch.as_tensor, algo.learner_group._learner.build_team_batch(samples))


def continues_an_episode(samples: list) -> bool:
    """Whether a sample starts mid-episode (its actors' and critic's states are carried)."""
    if isinstance(samples[0], TeamRollout):
        return any((r.env_t[0] > 0).any() for r in samples)
    return any(e.env_t_started > 0 for e in samples)


def missing_critic_states(learner) -> int:
    """Continuations batched without their critic state (one batcher serves both sampling paths)."""
    assert learner._learner_connector.connectors[-1].recurrent is learner._recurrent_batcher
    return learner._recurrent_batcher.missing_critic_states


def test_gru_stack_is_a_multilayer_gru():
    """One single-layer GRU per layer computes what nn.GRU(num_layers=2) does, and exposes
    every layer's state after every step (the learner needs it at chunk starts)."""
    torch.manual_seed(0)
    stack, ref = GRUStack(5, 8, num_layers=2), torch.nn.GRU(5, 8, num_layers=2, batch_first=True)
    with torch.no_grad():
        for i, layer in enumerate(stack.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{i}").copy_(getattr(layer, f"{name}_l0"))
    x, h0 = torch.randn(3, 7, 5), torch.randn(3, 2, 8)
    out, states = stack(x, h0)
    ref_out, ref_h = ref(x, h0.transpose(0, 1).contiguous())
    torch.testing.assert_close(out, stack.norm(ref_out))
    torch.testing.assert_close(states[:, -1], ref_h.transpose(0, 1))
    torch.testing.assert_close(states[:, :, -1], ref_out)
    # Restarting from the state after step 3 gives the same remaining steps (chunked training).
    out2, _ = stack(x[:, 4:], states[:, 3])
    torch.testing.assert_close(out2, out[:, 4:])


STANDIN_FP = {"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, "state_type": "FP"}


@pytest.mark.parametrize(
    "case, sampling",
    [
        ("mpe_discrete", "team"),
        ("mpe_continuous", "team"),
        ("mappo_shared", "team"),
        ("hatrpo", "team"),
        ("smac_standin_masks_fp", "team"),
        ("smac_standin_masks_fp", "episodes"),
    ],
)
def test_training_logp_equals_sampling_logp(ray_session, case, sampling):
    """The log-probabilities the learner computes on the chunked layout (GRU over each chunk
    from the recorded state) equal those the env runner computed step by step, on every real
    row: r = 1 before the first gradient step. Episodes are cut across three sample() calls
    and the three calls' chunks are batched together (several chunks of one episode)."""
    if case == "smac_standin_masks_fp":
        config = (
            HAPPOConfig()
            .environment(SMACTeamEnv, env_config=STANDIN_FP)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
            .debugging(seed=0)
            .training(
                state_type="FP",
                use_recurrent_policy=True,
                data_chunk_length=4,
                recurrent_n=2,
                train_batch_size_per_learner=100,
                num_epochs=1,
                critic_epoch=1,
            )
        )
    else:
        cls = {"mappo_shared": MAPPOConfig, "hatrpo": HATRPOConfig}.get(case, HAPPOConfig)
        env_config = {"continuous_actions": True} if case == "mpe_continuous" else {}
        config = small_config(cls, batch=60, env_config=env_config, use_recurrent_policy=True, data_chunk_length=4)
        config.env_runners(num_envs_per_env_runner=2)
    algo = config.env_runners(sampling=sampling).build_algo()
    try:
        learner = algo.learner_group._learner
        calls = [algo.env_runner.sample(num_timesteps=22, random_actions=False) for _ in range(3)]
        samples = [s for call in calls for s in call]
        assert continues_an_episode(calls[-1])  # continuation fragments are in the batch
        team = team_batch(algo, samples)
        agents = list(algo.config.get_team_spec().agents)
        real_rows = sum(len(s) for s in samples)
        for aid in agents:
            data = team[aid]
            real = data[LOSS_MASK] > 0
            assert int(real.sum()) == real_rows
            with torch.no_grad():
                logp, _ = learner.logp_entropy(algo.config.module_for(aid), data)
            torch.testing.assert_close(logp[real], data[Columns.ACTION_LOGP][real], rtol=0, atol=2e-5)
            assert data[STATE_IN].shape[0] * algo.config.data_chunk_length == len(data[LOSS_MASK])
        assert missing_critic_states(learner) == 0
        result = algo.train()
        assert result["learners"][CRITIC_MODULE_ID]["missing_critic_states"] == 0
    finally:
        algo.stop()


def _step_by_step(module, obs_seq, h):
    """A module run one step at a time (as the env runner does): the state after each step."""
    states = []
    with torch.no_grad():
        for o in obs_seq:
            out = module.forward_inference(
                {Columns.OBS: torch.as_tensor(o)[None, None], Columns.STATE_IN: {HIDDEN: h[None]}}
            )
            h = out[Columns.STATE_OUT][HIDDEN][0]
            states.append(h)
    return torch.stack(states)


def test_states_reset_at_episode_starts_and_carry_across_fragments(ray_session):
    """Recall episodes are 4 steps; fragments of 6 steps on one env cut episodes. The actor's
    recorded states are the step-by-step run from zeros at every episode start (not from the
    previous episode's last state), through fragment cuts; each chunk's state_in is the state
    before its first step; the critic's values and chunk states equal one pass over the whole
    episode from zeros, although its fragments arrive in different connector calls. On RLlib's
    episodes (whose fragments show what was recorded); test_sampling.py shows that team
    rollouts give the same team batch."""
    config = recall_config(batch=24, envs=1, chunk=4).env_runners(rollout_fragment_length=6, sampling="episodes")
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        actor = learner.module["agent_0"].unwrapped()
        critic = learner.module[CRITIC_MODULE_ID].unwrapped()
        calls = [algo.env_runner.sample(num_timesteps=6, random_actions=False) for _ in range(4)]
        by_id: dict[str, list] = {}
        for episodes in calls:
            for e in episodes:
                by_id.setdefault(e.id_, []).append(e)
        assert any(len(frags) > 1 for frags in by_id.values())  # some episode spans two fragments
        zero = torch.zeros(1, 64)
        whole = {}
        for eid, frags in by_id.items():
            frags.sort(key=lambda e: e.env_t_started)
            assert frags[0].env_t_started == 0
            sas = [f.agent_episodes["agent_0"] for f in frags]
            obs = np.concatenate([np.stack(sa.get_observations()[: len(sa)]) for sa in sas])
            stored = np.concatenate(
                [np.stack([s[HIDDEN] for s in sa.get_extra_model_outputs(Columns.STATE_OUT)]) for sa in sas]
            )
            expected = _step_by_step(actor, obs, zero)
            np.testing.assert_allclose(stored, expected.numpy(), rtol=0, atol=1e-5)
            # Critic over the whole episode in one pass (states incl. bootstrap), from zeros.
            states = np.stack([i["state"] for f in frags for i in f.agent_episodes["agent_0"].get_infos()[:-1]])
            states = np.concatenate([states, [frags[-1].agent_episodes["agent_0"].get_infos()[-1]["state"]]])
            with torch.no_grad():
                v, hs = critic.values_and_states(torch.as_tensor(states)[None], zero[None])
            whole[eid] = (obs, expected, v[0], torch.cat([zero[None], hs[0, :-1]]))
        # A new episode's first state is not the run from the previous episode's last state.
        first_eps = [by_id[eid][0] for eid in by_id]
        o0 = np.asarray(first_eps[1].agent_episodes["agent_0"].get_observations()[0])
        last_state = whole[first_eps[0].id_][1][-1]
        assert not torch.allclose(_step_by_step(actor, o0[None], last_state)[0], whole[first_eps[1].id_][1][0])

        L = 4
        for episodes in calls:
            team = team_batch(algo, episodes)
            again = team_batch(algo, episodes)  # batching the same episodes twice gives the same batch
            torch.testing.assert_close(again[CRITIC_MODULE_ID], team[CRITIC_MODULE_ID])
            seq = 0
            for e in (e for e in episodes if e.env_steps() > 0):
                obs, actor_states, v, critic_before = whole[e.id_]
                n_seq, _ = sequence_layout(e.env_steps(), L)
                for p in range(n_seq):
                    t = e.env_t_started + p * L  # the sequence's first env step in the episode
                    before = torch.zeros(1, 64) if t == 0 else actor_states[t - 1]
                    torch.testing.assert_close(team["agent_0"][STATE_IN][seq], before, rtol=0, atol=1e-5)
                    torch.testing.assert_close(
                        team[CRITIC_MODULE_ID][STATE_IN][seq], critic_before[t], atol=1e-5, rtol=0
                    )
                    rows = slice(seq * L, (seq + 1) * L)
                    real = team[CRITIC_MODULE_ID][LOSS_MASK][rows] > 0
                    n = int(real.sum())
                    torch.testing.assert_close(
                        team[CRITIC_MODULE_ID][VALUES][rows][:n], v[t : t + n], atol=1e-5, rtol=0
                    )
                    seq += 1
            assert seq == len(team["agent_0"][STATE_IN])
        assert missing_critic_states(learner) == 0
    finally:
        algo.stop()


class RecordingHAPPOLearner(HAPPOTorchLearner):
    """HAPPO's learner, recording each turn's factor, data and the actor's weights around it."""

    def actor_step(self, module_id, data, advantages, factor):
        before = copy.deepcopy(self.module[module_id].unwrapped().state_dict())
        super().actor_step(module_id, data, advantages, factor)
        after = copy.deepcopy(self.module[module_id].unwrapped().state_dict())
        self.turns.append(dict(module_id=module_id, factor=factor.clone(), data=data, before=before, after=after))


def _independent_logp(algo, module_id, weights, data) -> torch.Tensor:
    """log π(a|o) per row of the chunked layout, from a fresh module run one step at a time over
    each sequence from its state_in, with torch.distributions."""
    module = algo.config.get_multi_rl_module_spec().rl_module_specs[module_id].build()
    module.load_state_dict(weights)
    n_seq, L = data[STATE_IN].shape[0], algo.config.data_chunk_length
    obs = data[Columns.OBS].reshape(n_seq, L, -1)
    h, logits = data[STATE_IN], []
    with torch.no_grad():
        for t in range(L):
            out = module.forward_train({Columns.OBS: obs[:, t : t + 1], Columns.STATE_IN: {HIDDEN: h}})
            h = out[Columns.STATE_OUT][HIDDEN]
            logits.append(out[Columns.ACTION_DIST_INPUTS][:, 0])
    logits = torch.stack(logits, dim=1).reshape(n_seq * L, -1)
    return torch.distributions.Categorical(logits=logits).log_prob(data[Columns.ACTIONS].long())


def test_sequential_factor_is_exact_on_sequences(ray_session):
    """The factor agent k trains with is the product, row by row, of the new/old ratios of the
    agents before it, each recomputed independently over the same sequences (step by step from
    the recorded states), so the sequential update stays exact on the chunked layout."""
    config = recall_config(batch=90, envs=2, chunk=4).training(learner_class=RecordingHAPPOLearner)
    config.environment(env_config={"task": "recall", "n_agents": 3})
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        learner.turns = []
        order = ["agent_2", "agent_0", "agent_1"]
        learner.update(episodes=algo.env_runner.sample(num_timesteps=90, random_actions=False), agent_order=order)
        assert [t["module_id"] for t in learner.turns] == order
        expected = torch.ones_like(learner.turns[0]["factor"])
        for k, turn in enumerate(learner.turns):
            torch.testing.assert_close(turn["factor"], expected, rtol=1e-4, atol=1e-5)
            assert k == 0 or not torch.allclose(turn["factor"], torch.ones_like(turn["factor"]))
            mid, data = turn["module_id"], turn["data"]
            ratio = torch.exp(
                _independent_logp(algo, mid, turn["after"], data) - _independent_logp(algo, mid, turn["before"], data)
            )
            expected = expected * ratio
    finally:
        algo.stop()


def _snapshot(learner) -> tuple[dict, dict]:
    modules = {m: copy.deepcopy(learner.module[m].state_dict()) for m in learner.module.keys()}
    optims = {n: copy.deepcopy(o.state_dict()) for n, o in learner._named_optimizers.items()}
    return modules, optims


def _restore(learner, snapshot) -> None:
    modules, optims = snapshot
    for m, sd in modules.items():
        learner.module[m].load_state_dict(sd)
    for n, sd in optims.items():
        learner._named_optimizers[n].load_state_dict(copy.deepcopy(sd))


@pytest.mark.parametrize("cls", [HAPPOConfig, HATRPOConfig])
def test_padding_rows_carry_zero_weight(ray_session, cls):
    """Padding rows are exactly the rows past an episode fragment's end (loss_mask 0, alive
    0), and whatever they hold, a whole update (every actor in turn, then the critic) ends in
    the same weights. Policy active masks are off, so only the loss mask keeps them out."""
    algo = recall_config(cls, batch=90, envs=2, chunk=4, use_policy_active_masks=False).build_algo()
    try:
        learner = algo.learner_group._learner
        team = team_batch(algo, algo.env_runner.sample(num_timesteps=90, random_actions=False))
        for aid in ("agent_0", "agent_1"):
            pad = team[aid][LOSS_MASK] == 0
            assert pad.any()
            assert torch.equal(pad, team[aid][ENV_T] < 0)
            assert torch.all(team[aid][ALIVE][pad] == 0)
            assert torch.all(learner.policy_mask(team[aid])[pad] == 0)

        rng = torch.Generator().manual_seed(1)
        noisy = copy.deepcopy(team)
        for aid in ("agent_0", "agent_1"):
            d, pad = noisy[aid], noisy[aid][LOSS_MASK] == 0
            n = int(pad.sum())
            d[Columns.OBS][pad] = torch.rand(n, d[Columns.OBS].shape[1], generator=rng)
            d[Columns.ACTIONS][pad] = torch.randint(0, 2, (n,), generator=rng).to(d[Columns.ACTIONS].dtype)
            d[Columns.ACTION_LOGP][pad] = -5 * torch.rand(n, generator=rng)
            d[ADVANTAGES][pad] = 100 * torch.randn(n, generator=rng)
        c, pad = noisy[CRITIC_MODULE_ID], noisy[CRITIC_MODULE_ID][LOSS_MASK] == 0
        n = int(pad.sum())
        c[STATE][pad] = torch.rand(n, c[STATE].shape[1], generator=rng)
        c[VALUE_TARGETS][pad] = 100 * torch.randn(n, generator=rng)
        c[VALUES][pad] = torch.randn(n, generator=rng)

        start = _snapshot(learner)
        results = []
        for batch in (team, noisy):
            _restore(learner, start)
            learner.train_actors(batch, ["agent_1", "agent_0"])
            learner.critic_step(batch[CRITIC_MODULE_ID])
            results.append(_snapshot(learner)[0])
        changed = False
        for m in results[0]:
            for k in results[0][m]:
                torch.testing.assert_close(results[1][m][k], results[0][m][k], rtol=1e-6, atol=1e-7)
                changed |= not torch.equal(results[0][m][k], start[0][m][k])
        assert changed
    finally:
        algo.stop()


def _returns(config, iters: int) -> list[float]:
    algo = config.build_algo()
    try:
        return [algo.train()["env_runners"]["team_episode_return_mean"] for _ in range(iters)]
    finally:
        algo.stop()


def test_recurrent_happo_remembers_and_feedforward_cannot(ray_session):
    """Recall (2 agents, 2 cues, 4 steps): best return 3, best without memory 1.5. Recurrent
    HAPPO reaches ≈3 in ~8 iterations here; the same HAPPO with MLP actors stays at ≈1.5."""
    recurrent = _returns(recall_config(recurrent=True), 12)
    assert recurrent[-1] >= 2.7, recurrent
    feedforward = _returns(recall_config(recurrent=False), 12)
    assert feedforward[-1] < 2.0, feedforward


@pytest.mark.parametrize("cls", [HAA2CConfig, HATRPOConfig, MAPPOConfig])
def test_every_algorithm_trains_recurrent(ray_session, cls):
    """HAA2C, HATRPO and MAPPO run the recurrent path (chunked minibatches for HAA2C/MAPPO)."""
    extra = {} if cls is HATRPOConfig else {"minibatch_size": 60}
    returns = _returns(recall_config(cls, batch=180, envs=2, **extra), 2)
    assert all(np.isfinite(returns))


def test_recurrent_config_checks():
    # Each learner trains whole env streams: no more learners than envs.
    with pytest.raises(ValueError, match="needs at least as many envs"):
        recall_config(envs=4).learners(num_learners=5).validate()
    recall_config(envs=4).learners(num_learners=4).validate()
    with pytest.raises(ValueError, match="data_chunk_length"):
        recall_config(chunk=0).validate()
    with pytest.raises(ValueError, match="episode_lookback_horizon"):
        recall_config().env_runners(episode_lookback_horizon=0).validate()
    config = recall_config(recurrent_n=2, recurrent_hidden_size=32)
    config.validate()
    spec = config.get_multi_rl_module_spec()
    for mid in ("agent_0", CRITIC_MODULE_ID):
        module = spec.rl_module_specs[mid].build()
        assert module.is_stateful()
        assert module.get_initial_state()[HIDDEN].shape == (2, 32)
    assert (
        not recall_config(recurrent=False).get_multi_rl_module_spec().rl_module_specs["agent_0"].build().is_stateful()
    )


def test_remote_env_runner_and_checkpoint_restore(ray_session, tmp_path):
    """A remote env runner's rollouts keep the recorded states: r = 1 on them and the critic's
    state is found for every continuation; a restored algorithm trains on."""
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = recall_config(batch=90, envs=2).env_runners(num_env_runners=1).build_algo()
    try:
        learner = algo.learner_group._learner

        def sample() -> list:
            (samples,) = algo.env_runner_group.foreach_env_runner(
                lambda r: r.sample(num_timesteps=30, random_actions=False), local_env_runner=False
            )
            return samples

        calls = [sample() for _ in range(3)]
        assert isinstance(calls[0][0], TeamRollout) and continues_an_episode(calls[-1])
        team = team_batch(algo, [s for call in calls for s in call])
        for aid in ("agent_0", "agent_1"):
            real = team[aid][LOSS_MASK] > 0
            with torch.no_grad():
                logp, _ = learner.logp_entropy(aid, team[aid])
            torch.testing.assert_close(logp[real], team[aid][Columns.ACTION_LOGP][real], rtol=0, atol=2e-5)
        for _ in range(2):
            assert algo.train()["learners"][CRITIC_MODULE_ID]["missing_critic_states"] == 0
        algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert restored.config.use_recurrent_policy
        result = restored.train()
        assert result["learners"][CRITIC_MODULE_ID]["missing_critic_states"] == 0
    finally:
        restored.stop()
