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
from harl_rllib.core.actor import HAActorTorchRLModule
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


def _tiny_policy():
    torch.manual_seed(0)
    module = HAActorTorchRLModule(
        observation_space=gym.spaces.Box(-1, 1, (3,), np.float32),
        action_space=gym.spaces.Discrete(3),
        model_config={"hidden_sizes": [4], "gain": 1.0},
    )
    return module.double()


def test_fisher_product_and_cg_against_explicit_hessian():
    module = _tiny_policy()
    obs = torch.randn(16, 3, dtype=torch.float64)
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    sizes = [p.numel() for p in params]
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    with torch.no_grad():
        old = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]

    def kl_of(theta):
        chunks = theta.split(sizes)
        state = {n: c.reshape(p.shape) for n, c, p in zip(names, chunks, params, strict=True)}
        logits = functional_call(module, state, ({Columns.OBS: obs},))[Columns.ACTION_DIST_INPUTS]
        return kl_from_dist_inputs(old, logits, continuous=False).mean()

    hessian = torch.autograd.functional.hessian(kl_of, theta0)
    damping = 0.1
    fvp = fisher_vector_product(
        lambda: kl_from_dist_inputs(
            old, module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], False
        ).mean(),
        params,
        damping,
    )
    v = torch.randn_like(theta0)
    a = hessian + damping * torch.eye(len(theta0), dtype=torch.float64)
    torch.testing.assert_close(fvp(v), a @ v, rtol=1e-6, atol=1e-9)
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
