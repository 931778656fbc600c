"""The off-policy family's networks: deterministic and soft actors, and the twin Q critic.

Actions live in RLlib's *normalized* space: a Box action is in [-1, 1] per dimension
(tanh outputs), which RLlib's `normalize_actions=True` (enforced by the config) maps to
the env's bounds, so the replay buffer, the critic and the targets all see [-1, 1]
actions. That is HARL's `scale · tanh(x) + mean` with scale 1 and mean 0; HARL's noise
`σ · scale` becomes σ here. Discrete actions enter the critic one-hot (HARL).

Networks are HARL's `PlainMLP` (Linear + activation, PyTorch's default init; the actor's
last hidden layer uses `final_activation`, tanh by default).

Warm-up: for the first `warmup_steps` env steps (RLlib passes the global step `t` to
`forward_exploration`) actors act uniformly at random over the normalized box or over the
available actions. RLlib's own `random_actions` samples in the env's space, which is not the
normalized space stored in the episode, and ignores action masks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDeterministic
from ray.rllib.core.rl_module.apis.inference_only_api import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from harl_rllib.core.actor import ACTION_MASK, MASKED_LOGIT, OBS, split_obs
from harl_rllib.core.critic import STATE, ValueNorm
from harl_rllib.core.networks import _ACTIVATIONS, flat_dim

OFF_POLICY_ACTOR_DEFAULTS: dict[str, Any] = {
    "hidden_sizes": [256, 256],
    "activation": "relu",
    "final_activation": "tanh",
    "expl_noise": 0.1,
    "warmup_steps": 0,
}
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # HARL's squashed Gaussian bounds
JOINT_ACTIONS = "joint_actions"
Q_VALUES = "q_values"


def plain_mlp(sizes: list[int], activation: str, final_activation: str = "identity") -> nn.Sequential:
    """HARL's PlainMLP: Linear + activation per layer, `final_activation` after the last."""
    acts = {**_ACTIVATIONS, "identity": nn.Identity}
    for name in (activation, final_activation):
        if name not in acts:
            raise ValueError(f"Unknown activation {name!r}; use one of {list(acts)}")
    layers: list[nn.Module] = []
    for j in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[j], sizes[j + 1]), acts[activation if j < len(sizes) - 2 else final_activation]()]
    return nn.Sequential(*layers)


def action_dim(space: gym.Space) -> int:
    """Width of one agent's action in the critic's input (one-hot for Discrete)."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else flat_dim(space)


def encode_actions(actions: torch.Tensor, space: gym.Space) -> torch.Tensor:
    """A batch of one agent's actions as the critic reads them: float vectors (Box) or
    one-hot rows (Discrete ids)."""
    if isinstance(space, gym.spaces.Discrete):
        if actions.dim() == 2 and actions.shape[-1] == space.n:  # already one-hot (e.g. Gumbel)
            return actions.float()
        return F.one_hot(actions.long().reshape(-1), int(space.n)).float()
    return actions.float().reshape(actions.shape[0], -1)


class _OffPolicyActor(TorchRLModule, InferenceOnlyAPI):
    """Shared parts: the obs split (flat Box or Dict with an action mask), the MLP, warm-up."""

    def setup(self) -> None:
        self.cfg = {**OFF_POLICY_ACTOR_DEFAULTS, **(self.model_config or {})}
        obs_space, self._has_mask = split_obs(self.observation_space)
        self._obs_dim = flat_dim(obs_space)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self._act_dim = action_dim(self.action_space)
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    def get_non_inference_attributes(self) -> list[str]:
        """Target networks live on learners only; env runners get the acting network."""
        return []

    def _split(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._has_mask:
            return obs[OBS].reshape(obs[OBS].shape[0], -1).float(), obs[ACTION_MASK]
        return obs.reshape(obs.shape[0], -1).float(), None

    def _random_actions(self, n: int, mask: torch.Tensor | None) -> torch.Tensor:
        if self._discrete:
            probs = torch.ones(n, self._act_dim) if mask is None else mask.float()
            return torch.multinomial(probs, 1).squeeze(-1)
        return torch.rand(n, self._act_dim) * 2 - 1

    def _in_warmup(self, t: Any) -> bool:
        return t is not None and t < int(self.cfg["warmup_steps"])

    # The actors return actions themselves; RLlib still asks for a distribution class per mode,
    # the same one in every mode (each subclass names it in `get_inference_action_dist_cls`).
    def get_exploration_action_dist_cls(self):
        return self.get_inference_action_dist_cls()

    def get_train_action_dist_cls(self):
        return self.get_inference_action_dist_cls()


class DeterministicActorTorchRLModule(_OffPolicyActor):
    """HADDPG/HATD3 actor: a = tanh(MLP(o)) ∈ [-1, 1]; exploration adds N(0, expl_noise²),
    clipped to [-1, 1] (HARL's `get_actions(add_noise=True)`). Holds its target copy."""

    def _build(self) -> None:
        if self._discrete:
            raise ValueError("HADDPG/HATD3/MADDPG/MATD3 need continuous (Box) actions; use HASAC for discrete ones.")
        c = self.cfg
        self.pi = plain_mlp([self._obs_dim, *c["hidden_sizes"], self._act_dim], c["activation"], "tanh")
        if not self.inference_only:
            self.target_pi = copy.deepcopy(self.pi)
            self.target_pi.requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["target_pi"]

    def actions(self, obs: Any) -> torch.Tensor:
        return self.pi(self._split(obs)[0])

    def target_actions(self, obs: Any) -> torch.Tensor:
        return self.target_pi(self._split(obs)[0])

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTIONS: self.actions(batch[Columns.OBS])}

    def _forward_exploration(self, batch: dict[str, Any], t: Any = None, **kwargs) -> dict[str, Any]:
        x, _ = self._split(batch[Columns.OBS])
        if self._in_warmup(t):
            return {Columns.ACTIONS: self._random_actions(x.shape[0], None)}
        a = self.pi(x)
        a = a + torch.randn_like(a) * float(self.cfg["expl_noise"])
        return {Columns.ACTIONS: a.clamp(-1.0, 1.0)}

    def get_inference_action_dist_cls(self):
        return TorchDeterministic


def standard_noise(
    shape: Sequence[int], kind: str, *, generator: torch.Generator | None = None, like: torch.Tensor | None = None
) -> torch.Tensor:
    """N(0, 1) ("normal") or Gumbel(0, 1) ("gumbel") noise of `shape`, from `generator` (default:
    torch's global RNG), with `like`'s dtype and device (default: float32 on the CPU)."""
    options = {} if like is None else {"dtype": like.dtype, "device": like.device}
    if kind == "normal":
        return torch.randn(shape, generator=generator, **options)
    return -torch.empty(shape, **options).exponential_(generator=generator).log()


def _torch_noise(like: torch.Tensor, kind: str) -> torch.Tensor:
    """`standard_noise` shaped like `like`, from torch's global RNG."""
    return standard_noise(like.shape, kind, like=like)


class SoftActorTorchRLModule(_OffPolicyActor):
    """HASAC actor. Box: squashed Gaussian, a = tanh(u), u ~ N(μ, σ), log σ ∈ [-20, 2], with
    the tanh change-of-variables term in log π (HARL's SquashedGaussianPolicy). Discrete:
    categorical over the available actions; training draws straight-through Gumbel-softmax
    one-hot samples (HARL), with log π(a) = Σ onehot · log_softmax(logits)."""

    def _build(self) -> None:
        c = self.cfg
        sizes = [self._obs_dim, *c["hidden_sizes"]]
        self.net = plain_mlp(sizes, c["activation"], c["final_activation"])
        last = sizes[-1]
        if self._discrete:
            self.logits_layer = nn.Linear(last, self._act_dim)
        else:
            self.mu_layer = nn.Linear(last, self._act_dim)
            self.log_std_layer = nn.Linear(last, self._act_dim)

    def _head(self, obs: Any) -> tuple[torch.Tensor, ...]:
        x, mask = self._split(obs)
        h = self.net(x)
        if self._discrete:
            logits = self.logits_layer(h)
            if mask is not None:
                logits = logits.masked_fill(mask == 0, MASKED_LOGIT)
            return (logits,)
        log_std = self.log_std_layer(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mu_layer(h), log_std

    def sample_with_logp(self, obs: Any, noise: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized actions and their log-probabilities (B,), for the losses.
        Discrete actions come back one-hot (differentiable through the Gumbel relaxation).
        `noise(like, kind)` ("normal" or "gumbel") gives the noise; default: torch's RNG."""
        noise = noise or _torch_noise
        if self._discrete:
            (logits,) = self._head(obs)
            # Straight-through Gumbel-softmax (τ = 1): the one-hot argmax forward, the softmax's gradient.
            soft = torch.softmax(logits + noise(logits, "gumbel"), dim=-1)
            onehot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype) - soft.detach() + soft
            return onehot, (onehot * F.log_softmax(logits, dim=-1)).sum(-1)
        mu, log_std = self._head(obs)
        u = mu + noise(mu, "normal") * log_std.exp()
        logp = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1)
        # log |d tanh(u)/du| = log(1 − tanh²u) = 2 (log 2 − u − softplus(−2u)), stably.
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), logp

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Inference: the mode (tanh μ, or the most likely available action)."""
        head = self._head(batch[Columns.OBS])
        a = head[0].argmax(-1) if self._discrete else torch.tanh(head[0])
        return {Columns.ACTIONS: a}

    def _forward_exploration(self, batch: dict[str, Any], t: Any = None, **kwargs) -> dict[str, Any]:
        x, mask = self._split(batch[Columns.OBS])
        if self._in_warmup(t):
            return {Columns.ACTIONS: self._random_actions(x.shape[0], mask)}
        head = self._head(batch[Columns.OBS])
        if self._discrete:
            return {Columns.ACTIONS: torch.distributions.Categorical(logits=head[0]).sample()}
        mu, log_std = head
        return {Columns.ACTIONS: torch.tanh(mu + torch.randn_like(mu) * log_std.exp())}

    def get_inference_action_dist_cls(self):
        return TorchCategorical if self._discrete else TorchDeterministic


class QCriticTorchRLModule(TorchRLModule):
    """Centralized Q(s, a¹..aⁿ): `num_q` networks (1: HADDPG; 2: twin, HATD3/HASAC) over the
    global state and the joint action, each with a Polyak-averaged target copy. Learner-only.

    model_config: hidden_sizes, activation, num_q, use_valuenorm (HASAC: outputs live in
    ValueNorm's normalized space), action_dims (widths of each agent's action, in order).
    The observation space is the state space.
    """

    def setup(self) -> None:
        c = {"hidden_sizes": [256, 256], "activation": "relu", "num_q": 2, "use_valuenorm": False}
        c.update(self.model_config or {})
        in_dim = flat_dim(self.observation_space) + int(sum(c["action_dims"]))
        self.qs = nn.ModuleList(
            plain_mlp([in_dim, *c["hidden_sizes"], 1], c["activation"]) for _ in range(int(c["num_q"]))
        )
        self.target_qs = copy.deepcopy(self.qs)
        self.target_qs.requires_grad_(False)
        self.value_norm = ValueNorm() if c["use_valuenorm"] else None

    def q_values(
        self, state: torch.Tensor, joint: torch.Tensor, target: bool = False, first: int | None = None
    ) -> list[torch.Tensor]:
        """The Q networks' outputs for (state, joint action), each (B,): all of them, or the
        `first` ones (DDPG/TD3's actor loss reads Q1 only: Q2's forward pass would be wasted)."""
        x = torch.cat([state.float().reshape(state.shape[0], -1), joint.float()], dim=-1)
        nets = list(self.target_qs if target else self.qs)[:first]
        return [q(x).squeeze(-1) for q in nets]

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Q_VALUES: torch.stack(self.q_values(batch[STATE], batch[JOINT_ACTIONS]), dim=-1)}

    def denormalize(self, q: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(q) if self.value_norm is not None else q


def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 − τ) θ' + τ θ (HARL's `soft_update`, polyak = τ)."""
    with torch.no_grad():
        for pt, p in zip(target.parameters(), source.parameters(), strict=True):
            pt.mul_(1.0 - tau).add_(p, alpha=tau)


def discrete_target_entropy(n: int) -> float:
    """0.98 · log n: near the maximum entropy of n choices (SAC-discrete). HARL computes
    −0.98 · log(1 / prod(space.shape)), which is 0 for a Discrete space (shape ()); that
    target lets α shrink towards 0, so this follows SAC-discrete instead."""
    return 0.98 * float(np.log(n))
