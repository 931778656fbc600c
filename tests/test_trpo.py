"""HATRPO's machinery: conjugate gradient, the Fisher product, the trust-region step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from torch.func import functional_call

from harl_rllib.algorithms.hatrpo import HATRPOConfig
from harl_rllib.algorithms.hatrpo.torch.hatrpo_torch_learner import KL, REJECTED
from harl_rllib.core.actor import ACTION_MASK, HIDDEN, OBS, HAActorTorchRLModule
from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.trpo import conjugate_gradient, fisher_vector_product, kl_from_dist_inputs

from conftest import small_config


def test_conjugate_gradient_on_known_spd_system():
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    spd = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=50)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b), rtol=1e-8, atol=1e-8)


def test_kl_matches_torch_distributions():
    torch.manual_seed(1)
    old, new = torch.randn(5, 4), torch.randn(5, 4)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=old), torch.distributions.Categorical(logits=new)
    )
    torch.testing.assert_close(kl_from_dist_inputs(old, new, continuous=False), expected)
    mu0, mu1, ls0, ls1 = torch.randn(4, 5, 2).unbind(0)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu0, ls0.exp()), torch.distributions.Normal(mu1, ls1.exp())
    ).sum(-1)
    got = kl_from_dist_inputs(torch.cat([mu0, ls0], -1), torch.cat([mu1, ls1], -1), continuous=True)
    torch.testing.assert_close(got, expected)


def _tiny_policy(kind: str) -> tuple[HAActorTorchRLModule, dict, bool]:
    """A small float64 actor and a batch for it: "masked" (Discrete, an action mask),
    "gaussian" (Box) or "gru" (Discrete, recurrent: 4 sequences of 4 steps from given states)."""
    torch.manual_seed(0)
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    obs_space, action_space = box, gym.spaces.Discrete(3)
    model_config = {"hidden_sizes": [4], "gain": 1.0}
    if kind == "masked":
        obs_space = gym.spaces.Dict({OBS: box, ACTION_MASK: gym.spaces.Box(0, 1, (3,), np.float32)})
    elif kind == "gaussian":
        action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    else:
        model_config.update(use_recurrent_policy=True, recurrent_hidden_size=3)
    module = HAActorTorchRLModule(observation_space=obs_space, action_space=action_space, model_config=model_config)
    module = module.double()
    obs = torch.randn(16, 3, dtype=torch.float64)
    if kind == "masked":
        mask = torch.ones(16, 3, dtype=torch.float64)
        mask[::3, 1] = 0.0  # every third row cannot take action 1
        batch = {Columns.OBS: {OBS: obs, ACTION_MASK: mask}}
    elif kind == "gru":
        batch = {
            Columns.OBS: obs.reshape(4, 4, 3),
            Columns.STATE_IN: {HIDDEN: torch.randn(4, 1, 3, dtype=torch.float64)},
        }
    else:
        batch = {Columns.OBS: obs}
    return module, batch, kind == "gaussian"


@pytest.mark.parametrize("kind", ["masked", "gaussian", "gru"])
def test_fisher_product_and_cg_against_explicit_hessian(kind):
    """The Gauss-Newton Fisher product equals the explicit Hessian of the weighted mean KL at
    θ_old (torch's `hessian` of the KL as a function of the flat parameters)."""
    module, batch, continuous = _tiny_policy(kind)
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    sizes = [p.numel() for p in params]
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    weights = torch.rand(16, dtype=torch.float64)
    weights[5] = 0.0  # a dead row
    weights = weights / weights.sum()

    def inputs(out: dict) -> torch.Tensor:
        x = out[Columns.ACTION_DIST_INPUTS]
        return x.reshape(-1, x.shape[-1])

    with torch.no_grad():
        old = inputs(module.forward_train(batch))

    def kl_of(theta):
        chunks = theta.split(sizes)
        state = {n: c.reshape(p.shape) for n, c, p in zip(names, chunks, params, strict=True)}
        new = inputs(functional_call(module, state, (batch,)))
        return (weights * kl_from_dist_inputs(old, new, continuous)).sum()

    hessian = torch.autograd.functional.hessian(kl_of, theta0)
    damping = 0.1
    fvp = fisher_vector_product(lambda: inputs(module.forward_train(batch)), params, weights, continuous, damping)
    v = torch.randn_like(theta0)
    a = hessian + damping * torch.eye(len(theta0), dtype=torch.float64)
    torch.testing.assert_close(fvp(v), a @ v, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(fvp(2 * v), a @ (2 * v), rtol=1e-6, atol=1e-9)  # the graph is reused
    g = torch.randn_like(theta0)
    x = conjugate_gradient(fvp, g, iters=200, residual_tol=1e-20)
    torch.testing.assert_close(a @ x, g, rtol=1e-5, atol=1e-6)


@pytest.fixture
def hatrpo_learner_and_data(ray_session):
    config = small_config(HATRPOConfig, batch=200)
    algo = config.build_algo()
    learner = algo.learner_group._learner
    episodes = algo.env_runner.sample(num_timesteps=200, random_actions=False)
    batch = learner.build_team_batch(episodes)
    data = {k: torch.as_tensor(v) for k, v in batch["agent_0"].items()}
    adv = torch.as_tensor(np.random.default_rng(0).normal(size=len(data[ALIVE])), dtype=torch.float32)
    factor = torch.as_tensor(np.random.default_rng(1).uniform(0.5, 1.5, size=len(adv)), dtype=torch.float32)
    yield algo, learner, data, adv, factor
    algo.stop()


def _logits(module, data):
    with torch.no_grad():
        return module.forward_train({Columns.OBS: data[Columns.OBS]})[Columns.ACTION_DIST_INPUTS]


def _surrogate(module, data, adv, factor):
    dist = torch.distributions.Categorical(logits=_logits(module, data))
    ratio = torch.exp(dist.log_prob(data[Columns.ACTIONS].long()) - data[Columns.ACTION_LOGP])
    return float((factor * ratio * adv).mean())


def test_hatrpo_step_respects_trust_region(hatrpo_learner_and_data):
    algo, learner, data, adv, factor = hatrpo_learner_and_data
    module = learner.module["agent_0"].unwrapped()
    before_logits, before_sur = _logits(module, data), _surrogate(module, data, adv, factor)
    stats = learner.actor_step("agent_0", data, adv, factor)
    assert stats[REJECTED] == 0.0
    after_logits = _logits(module, data)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=before_logits), torch.distributions.Categorical(logits=after_logits)
    ).mean()
    assert 0 < float(kl) <= algo.config.kl_threshold * 1.001
    assert float(kl) == pytest.approx(stats[KL], rel=1e-3)
    assert _surrogate(module, data, adv, factor) > before_sur


@pytest.mark.parametrize("setting", [{"accept_ratio": 1e9}, {"kl_threshold": 1e-20}])
def test_hatrpo_keeps_parameters_when_no_step_is_acceptable(hatrpo_learner_and_data, setting):
    algo, learner, data, adv, factor = hatrpo_learner_and_data
    learner.config._is_frozen = False
    for k, v in setting.items():
        setattr(learner.config, k, v)
    module = learner.module["agent_0"].unwrapped()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    stats = learner.actor_step("agent_0", data, adv, factor)
    assert stats[REJECTED] == 1.0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
