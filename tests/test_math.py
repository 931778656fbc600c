"""The math on fixed tensors, each against an independent computation written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harl_rllib.core.advantages import compute_gae, standardize_masked
from harl_rllib.core.critic import ValueNorm
from harl_rllib.core.losses import happo_surrogate_loss, huber, value_loss


def gae_by_sum(rewards, values, bootstrap, terminated, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l}, written as an explicit double sum."""
    T = len(rewards)
    v_next = list(values[1:]) + [0.0 if terminated else bootstrap]
    deltas = [rewards[t] + gamma * v_next[t] - values[t] for t in range(T)]
    return np.array([sum((gamma * lam) ** (l - t) * deltas[l] for l in range(t, T)) for t in range(T)])


@pytest.mark.parametrize("terminated", [True, False])
def test_gae_matches_explicit_sum(terminated):
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=7), rng.normal(size=7)
    adv, targets = compute_gae(r, v, 0.7, terminated=terminated, gamma=0.9, lambda_=0.8)
    expected = gae_by_sum(r, v, 0.7, terminated, 0.9, 0.8)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets, expected + v, rtol=1e-5, atol=1e-6)


def test_gae_termination_vs_truncation_differs_only_by_bootstrap():
    r, v = np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.2, 0.1])
    term, _ = compute_gae(r, v, 10.0, terminated=True, gamma=0.99, lambda_=0.95)
    trunc, _ = compute_gae(r, v, 10.0, terminated=False, gamma=0.99, lambda_=0.95)
    # Last step: terminated δ = r - V; truncated δ = r + γ·V(s_T) - V.
    assert term[-1] == pytest.approx(2.0 - 0.1)
    assert trunc[-1] == pytest.approx(2.0 + 0.99 * 10.0 - 0.1)
    np.testing.assert_allclose(trunc - term, [(0.99 * 0.95) ** k * 0.99 * 10.0 for k in (2, 1, 0)], rtol=1e-5)


def test_happo_loss_with_factor():
    logp = torch.tensor([-1.0, -0.5, -2.0, -0.1])
    old = torch.tensor([-1.2, -0.4, -1.0, -0.1])
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    factor = torch.tensor([0.5, 1.5, 2.0, 1.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    loss, ratio = happo_surrogate_loss(logp, old, adv, factor, mask, clip_param=0.2)
    terms = []
    for i in range(3):  # the dead row (mask 0) is left out
        r = float(np.exp(logp[i] - old[i]))
        a = float(adv[i])
        terms.append(float(factor[i]) * min(r * a, min(max(r, 0.8), 1.2) * a))
    assert float(loss) == pytest.approx(-sum(terms) / 3, rel=1e-6)
    np.testing.assert_allclose(ratio.numpy(), np.exp((logp - old).numpy()), rtol=1e-6)


def test_happo_loss_gradient_ignores_factor_graph():
    factor = torch.tensor([2.0, 3.0], requires_grad=True)
    logp = torch.tensor([-1.0, -1.0], requires_grad=True)
    old, adv = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    loss, _ = happo_surrogate_loss(logp, old, adv, factor, torch.ones(2), 0.2)
    loss.backward()
    assert factor.grad is None
    # d/dlogp of -mean(M·r·A) at r=1 is -M·A/n
    np.testing.assert_allclose(logp.grad.numpy(), [-1.0, -1.5])


def test_value_loss_clipped_huber():
    values = torch.tensor([0.0, 2.0, -30.0])
    old = torch.tensor([0.5, 0.0, -10.0])
    targets = torch.tensor([1.0, 1.0, 0.0])
    got = value_loss(values, old, targets, torch.ones(3), clip_param=0.2, huber_delta=10.0)

    def h(e):
        return 0.5 * e * e if abs(e) <= 10 else 10 * (abs(e) - 5)

    exp = []
    for v, o, t in zip(values.tolist(), old.tolist(), targets.tolist(), strict=True):
        vc = o + min(max(v - o, -0.2), 0.2)
        exp.append(max(h(t - v), h(t - vc)))
    assert float(got) == pytest.approx(np.mean(exp), rel=1e-6)
    assert float(huber(torch.tensor(20.0), 10.0)) == pytest.approx(150.0)


def test_value_norm_matches_numpy_ema():
    vn = ValueNorm(beta=0.9)
    batches = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 12.0]), np.array([-4.0])]
    m = m2 = d = 0.0
    for b in batches:
        vn.update(torch.tensor(b, dtype=torch.float32))
        m = 0.9 * m + 0.1 * b.mean()
        m2 = 0.9 * m2 + 0.1 * (b**2).mean()
        d = 0.9 * d + 0.1
    mean, var = m / d, max(m2 / d - (m / d) ** 2, 1e-2)
    x = torch.tensor([5.0, -1.0])
    np.testing.assert_allclose(vn.normalize(x).numpy(), (x.numpy() - mean) / np.sqrt(var), rtol=1e-5)
    np.testing.assert_allclose(vn.denormalize(vn.normalize(x)).numpy(), x.numpy(), rtol=1e-5)


def test_standardize_masked_uses_alive_rows_only():
    x = np.array([1.0, 2.0, 3.0, 100.0])
    out = standardize_masked(x, np.array([1, 1, 1, 0]))
    alive = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(out, (x - alive.mean()) / (alive.std() + 1e-5), rtol=1e-6)


@pytest.mark.parametrize(
    "algo, share_param, joint",
    [("MAPPO", True, True), ("MAPPO", False, False), ("HAPPO", True, False), ("HAPPO", False, False)],
)
def test_advantage_standardization_groups(algo, share_param, joint):
    """EP: each agent's advantages over its own alive rows, except MAPPO with one shared actor,
    whose agents' are standardized together over all their alive rows (the reference's
    `share_param_train`). HAPPO with a shared actor still steps agent by agent: per agent."""
    import harl_rllib
    from harl_rllib.core.fragments import ADVANTAGES, ALIVE

    config = (
        getattr(harl_rllib, f"{algo}Config")()
        .environment("harl_toy", env_config={"task": "distinct_actions", "n_agents": 2})
        .training(share_param=share_param)
    )
    learner = config.build_learner()
    agents = ["agent_0", "agent_1"]
    rng = np.random.default_rng(0)
    adv = {"agent_0": rng.normal(0.0, 1.0, 8), "agent_1": rng.normal(5.0, 3.0, 8)}
    alive = {"agent_0": np.ones(8), "agent_1": np.array([1, 1, 1, 1, 1, 0, 0, 0.0])}
    adv["agent_1"][5:] = 1e3  # dead rows: never in the statistics
    team = {a: {ADVANTAGES: torch.tensor(adv[a], dtype=torch.float32), ALIVE: torch.tensor(alive[a])} for a in agents}
    got = learner.advantages_for(team, agents)

    def standardized(rows: list[np.ndarray], stats: np.ndarray) -> list[np.ndarray]:
        return [(r - stats.mean()) / (stats.std() + 1e-5) for r in rows]

    if joint:
        pooled = np.concatenate([adv[a][alive[a] > 0] for a in agents])
        want = dict(zip(agents, standardized([adv[a] for a in agents], pooled), strict=True))
    else:
        want = {a: standardized([adv[a]], adv[a][alive[a] > 0])[0] for a in agents}
    for a in agents:
        np.testing.assert_allclose(got[a].numpy(), want[a], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["HAPPO", "MAPPO"])
def test_an_agent_dead_in_every_row_gets_no_step(algo):
    """HARL skips an agent dead in every row of the iteration; so does a minibatch with no alive
    row. Adam's step on a zero loss would still move the weights through its momentum, so the
    check comes after a first update in which the agent was alive."""
    from ray.rllib.core.columns import Columns

    import harl_rllib
    from harl_rllib.core.fragments import ADVANTAGES, ALIVE

    config = (
        getattr(harl_rllib, f"{algo}Config")()
        .environment("harl_toy", env_config={"task": "distinct_actions", "n_agents": 2})
        .training(num_epochs=2, share_param=False)
        .debugging(seed=0)
    )
    learner = config.build_learner()
    agents = ["agent_0", "agent_1"]
    space = learner.module["agent_0"].unwrapped().observation_space
    n_actions = int(learner.module["agent_0"].unwrapped().action_space.n)
    g = torch.Generator().manual_seed(0)

    def team(alive_1: float) -> dict:
        rows = 32
        return {
            a: {
                Columns.OBS: torch.rand(rows, *space.shape, generator=g),
                Columns.ACTIONS: torch.randint(0, n_actions, (rows,), generator=g),
                Columns.ACTION_LOGP: torch.full((rows,), -float(np.log(n_actions))),
                ADVANTAGES: torch.randn(rows, generator=g),
                ALIVE: torch.full((rows,), alive_1 if a == "agent_1" else 1.0),
            }
            for a in agents
        }

    def weights(a: str) -> list[torch.Tensor]:
        return [p.detach().clone() for p in learner.module[a].parameters()]

    learner.train_actors(team(1.0), agents)  # both alive: Adam's moments become non-zero
    before = {a: weights(a) for a in agents}
    learner.train_actors(team(0.0), agents)  # agent_1 dead in every row
    assert all(torch.equal(x, y) for x, y in zip(weights("agent_1"), before["agent_1"], strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(weights("agent_0"), before["agent_0"], strict=True))

    # A minibatch without an alive row (weight 0): no step, whatever the loss.
    params = list(learner.module["agent_1"].parameters())
    loss = sum(p.sum() for p in params)
    assert learner.gradient_step("agent_1", loss, weight=torch.tensor(0.0)) == 0.0
    assert all(torch.equal(x, y) for x, y in zip(weights("agent_1"), before["agent_1"], strict=True))
    learner.gradient_step("agent_1", sum(p.sum() for p in params), weight=torch.tensor(3.0))
    assert not all(torch.equal(x, y) for x, y in zip(weights("agent_1"), before["agent_1"], strict=True))


def test_learner_metrics_are_means_over_the_update():
    """Losses and gradient norms in the results are averaged over the update's gradient steps
    (epochs × minibatches), as HARL's train_info, not the last step's: recorded here at every
    step and compared with what the update reports."""
    from ray.rllib.core.columns import Columns

    import harl_rllib
    from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
    from harl_rllib.core.fragments import ADVANTAGES, ALIVE, VALUE_TARGETS

    config = (
        harl_rllib.HAPPOConfig()
        .environment("harl_toy", env_config={"task": "distinct_actions", "n_agents": 2})
        .training(num_epochs=3, critic_epoch=3, minibatch_size=16, critic_minibatch_size=16)
        .debugging(seed=0)
    )
    learner = config.build_learner()
    module = learner.module["agent_0"].unwrapped()
    n_actions, rows = int(module.action_space.n), 64
    g = torch.Generator().manual_seed(0)
    team = {
        a: {
            Columns.OBS: torch.rand(rows, *module.observation_space.shape, generator=g),
            Columns.ACTIONS: torch.randint(0, n_actions, (rows,), generator=g),
            Columns.ACTION_LOGP: torch.full((rows,), -float(np.log(n_actions))),
            ADVANTAGES: torch.randn(rows, generator=g),
            ALIVE: torch.ones(rows),
        }
        for a in ("agent_0", "agent_1")
    }
    state_dim = learner.module[CRITIC_MODULE_ID].unwrapped().observation_space.shape
    team[CRITIC_MODULE_ID] = {
        STATE: torch.rand(rows, *state_dim, generator=g),
        VALUES: torch.randn(rows, generator=g),
        VALUE_TARGETS: torch.randn(rows, generator=g),
    }
    steps: dict[str, list[tuple[float, float]]] = {}
    step = learner.gradient_step

    def recording(module_id, loss, weight=1.0):
        norm = step(module_id, loss, weight)
        steps.setdefault(module_id, []).append((float(loss.detach()), norm))
        return norm

    learner.gradient_step = recording
    learner.train_actors(team, ["agent_1", "agent_0"])
    learner.critic_step(team[CRITIC_MODULE_ID])
    learner.log_update_means()
    assert [len(v) for v in steps.values()] == [12, 12, 12]  # 3 epochs × 4 minibatches each
    for mid, key, col in (("agent_0", "actor_grad_norm", 1), (CRITIC_MODULE_ID, "value_loss", 0)):
        values = [s[col] for s in steps[mid]]
        assert len(set(values)) > 1  # the last step's value would differ from the mean
        got = learner.metrics.peek((mid, key))
        assert got == pytest.approx(np.mean(values), rel=1e-6), (mid, key, values)
