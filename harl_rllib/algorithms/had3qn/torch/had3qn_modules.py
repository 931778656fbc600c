"""HAD3QN's networks: a dueling Q-network per agent (its actor) and the centralized dueling
Q-network over the team's joint discrete action (the critic); HARL's `DuelingQNet`."""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from harl_rllib.core.actor import MASKED_LOGIT
from harl_rllib.core.critic import STATE
from harl_rllib.core.networks import flat_dim
from harl_rllib.core.off_policy_modules import Q_VALUES, _OffPolicyActor, plain_mlp

DUELING_DEFAULTS: dict[str, Any] = {  # HARL's had3qn.yaml model settings, actors' and critic's
    "hidden_sizes": [128, 128],  # base_hidden_sizes
    "activation": "relu",  # base_activation_func
    "dueling_v_hidden_sizes": [128],
    "dueling_a_hidden_sizes": [128],
    "dueling_activation": "hardswish",  # dueling_v/a_activation_func
}
EPSILON = 0.05  # HARL's ε-greedy chance
JOINT_INDEX = "joint_index"


class DuelingQNet(nn.Module):
    """Q(x, ·) = A(x, ·) − mean A(x, ·) + V(x) on a shared MLP base (ReLU after every base
    layer, the heads' last layers linear): HARL's `DuelingQNet` on flat inputs."""

    def __init__(self, in_dim: int, out_dim: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        base = list(cfg["hidden_sizes"])
        self.base = plain_mlp([in_dim, *base], cfg["activation"], cfg["activation"])
        self.v = plain_mlp([base[-1], *cfg["dueling_v_hidden_sizes"], 1], cfg["dueling_activation"])
        self.a = plain_mlp([base[-1], *cfg["dueling_a_hidden_sizes"], out_dim], cfg["dueling_activation"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        a = self.a(h)
        return a - a.mean(dim=-1, keepdim=True) + self.v(h)


class DuelingQActorTorchRLModule(_OffPolicyActor):
    """Agent i's Qⁱ(oⁱ, ·) and its target copy. Acts greedily (unavailable actions excluded),
    ε-greedily when exploring, uniformly at random during the warm-up."""

    def setup(self) -> None:
        self.model_config = {**DUELING_DEFAULTS, "epsilon": EPSILON, **(self.model_config or {})}
        super().setup()

    def _build(self) -> None:
        if not self._discrete:
            raise ValueError(f"HAD3QN needs discrete actions; got {self.action_space}")
        self.pi = DuelingQNet(self._obs_dim, self._act_dim, self.cfg)
        if not self.inference_only:
            self.target_pi = copy.deepcopy(self.pi)
            self.target_pi.requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["target_pi"]

    def q(self, obs: Any, target: bool = False) -> torch.Tensor:
        """Qⁱ(oⁱ, ·) (B, A), unavailable actions at −1e10 (never the argmax)."""
        x, mask = self._split(obs)
        q = (self.target_pi if target else self.pi)(x)
        return q if mask is None else q.masked_fill(mask == 0, MASKED_LOGIT)

    def greedy(self, obs: Any, target: bool = False) -> torch.Tensor:
        return self.q(obs, target).argmax(dim=-1)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTIONS: self.greedy(batch[Columns.OBS])}

    def _forward_exploration(self, batch: dict[str, Any], t: Any = None, **kwargs) -> dict[str, Any]:
        x, mask = self._split(batch[Columns.OBS])
        # One coin per call for the whole batch of envs, as HARL's `get_actions` draws it.
        if self._in_warmup(t) or float(torch.rand(())) < float(self.cfg["epsilon"]):
            return {Columns.ACTIONS: self._random_actions(x.shape[0], mask)}
        return {Columns.ACTIONS: self.greedy(batch[Columns.OBS])}

    def get_inference_action_dist_cls(self):
        return TorchCategorical


class DuelingJointQCriticTorchRLModule(TorchRLModule):
    """Q(s, a¹..aⁿ) for every joint action at once: one output per joint action (joint index
    Σᵢ aⁱ · Πⱼ₍<ᵢ₎ |Aʲ|, the first agent varying fastest, HARL's `indiv_to_joint`), with a
    Polyak-averaged target copy. Learner-only. model_config: the dueling net's settings and
    `action_dims` (each agent's action count, in team order)."""

    def setup(self) -> None:
        cfg = {**DUELING_DEFAULTS, **(self.model_config or {})}
        self.action_dims = [int(n) for n in cfg["action_dims"]]
        self.qs = nn.ModuleList([DuelingQNet(flat_dim(self.observation_space), math.prod(self.action_dims), cfg)])
        self.target_qs = copy.deepcopy(self.qs)
        self.target_qs.requires_grad_(False)
        self.value_norm = None

    def all_q(self, state: torch.Tensor, target: bool = False) -> torch.Tensor:
        """(B, Πᵢ |Aⁱ|): Q at every joint action."""
        return (self.target_qs if target else self.qs)[0](state.float().reshape(state.shape[0], -1))

    def q_values(self, state: torch.Tensor, joint: torch.Tensor, target: bool = False) -> list[torch.Tensor]:
        """[Q(s, joint)] (B,), `joint` the joint indices (the off-policy learner's interface)."""
        return [self.all_q(state, target).gather(1, joint.long().reshape(-1, 1)).squeeze(1)]

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Q_VALUES: self.q_values(batch[STATE], batch[JOINT_INDEX])[0]}

    def denormalize(self, q: torch.Tensor) -> torch.Tensor:
        return q


def joint_space_size(action_spaces: list[gym.Space]) -> int:
    return math.prod(int(s.n) for s in action_spaces)
