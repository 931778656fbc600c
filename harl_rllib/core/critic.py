"""The team's centralized critic V(state) and HARL's value normalization.

A learner-only RLModule: env runners never build it; it lives on the learners, where
the joint advantage is computed and the critic is trained after the actors.

With `use_recurrent_policy` a GRU follows the MLP base (HARL's recurrent V-critic). No
env runner records its states, so the team batch builder runs it over each trajectory
in order (see core/fragments.py) and the critic trains on chunks from those states.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from harl_rllib.core.actor import HIDDEN, RECURRENT_DEFAULTS, recurrent_size
from harl_rllib.core.networks import GRUStack, flat_dim, init_layer, mlp_base

CRITIC_MODULE_ID = "__central_critic__"
STATE = "state"
VALUES = "values"

CRITIC_DEFAULTS: dict[str, Any] = {
    "hidden_sizes": [128, 128],
    "activation": "relu",
    "use_feature_normalization": True,
    "use_valuenorm": True,
}


class ValueNorm(nn.Module):
    """Running mean/variance of value targets with debiasing (HARL's `ValueNorm`).

    EMA with weight β per update call; var clamped at 1e-2 from below. Buffers, not
    parameters: saved with the module's state, never touched by the optimizer.
    """

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_mean_sq", torch.zeros(1))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.debiasing_term.clamp(min=self.epsilon)
        mean, mean_sq = self.running_mean / d, self.running_mean_sq / d
        return mean, (mean_sq - mean**2).clamp(min=1e-2)

    @torch.no_grad()
    def update(self, x: torch.Tensor, all_sum=None) -> None:
        """One EMA step with the batch's mean and mean square. `all_sum` sums a tensor over
        data-parallel learners, so that every learner takes the same step on the global batch."""
        sums = torch.stack([x.sum(), (x**2).sum(), torch.tensor(float(x.numel()), device=x.device)])
        if all_sum is not None:
            sums = all_sum(sums)
        if not torch.isfinite(sums).all():
            return  # a non-finite batch (its gradient step is skipped too) never enters the statistics
        w = self.beta
        self.running_mean.mul_(w).add_(sums[0] / sums[2] * (1 - w))
        self.running_mean_sq.mul_(w).add_(sums[1] / sums[2] * (1 - w))
        self.debiasing_term.mul_(w).add_(1 - w)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return (x - mean) / torch.sqrt(var)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return x * torch.sqrt(var) + mean


class CentralCriticTorchRLModule(TorchRLModule):
    """V(s) over the global state; outputs live in normalized space when valuenorm is on.

    The observation space of this module is the state space (EP: one state for the
    team; FP: one state per agent, the network shared).
    """

    def setup(self) -> None:
        cfg = {**CRITIC_DEFAULTS, **RECURRENT_DEFAULTS, **(self.model_config or {})}
        dim = flat_dim(self.observation_space)
        self.base = mlp_base(dim, cfg["hidden_sizes"], cfg["activation"], cfg["use_feature_normalization"])
        last = cfg["hidden_sizes"][-1] if cfg["hidden_sizes"] else dim
        self.rnn = None
        if cfg["use_recurrent_policy"]:
            size = recurrent_size(cfg, dim)
            self.rnn = GRUStack(last, size, int(cfg["recurrent_n"]))
            last = size
        self.v_out = init_layer(nn.Linear(last, 1), 1.0)
        self.value_norm = ValueNorm() if cfg["use_valuenorm"] else None

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        """Zeros for a recurrent critic (the state at an episode's start); {} otherwise."""
        if self.rnn is None:
            return {}
        return {HIDDEN: torch.zeros(self.rnn.num_layers, self.rnn.hidden_size)}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        if self.rnn is None:
            return {VALUES: self.values(batch[STATE])}
        values, states = self.values_and_states(batch[STATE], batch[Columns.STATE_IN][HIDDEN])
        return {VALUES: values, Columns.STATE_OUT: {HIDDEN: states[:, -1]}}

    def values(self, state: torch.Tensor) -> torch.Tensor:
        """Raw network output V(s) (normalized space if valuenorm is on), shape (B,)."""
        return self.v_out(self.base(state.float().reshape(state.shape[0], -1))).squeeze(-1)

    def values_and_states(self, state: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent critic over sequences: state (B, T, ...), h0 (B, layers, H) → raw values
        (B, T) and the GRU state after every step (B, T, layers, H)."""
        x = self.base(state.float().reshape(state.shape[0], state.shape[1], -1))
        x, states = self.rnn(x, h0.float())
        return self.v_out(x).squeeze(-1), states

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """Network output → return space (identity without value normalization)."""
        return self.value_norm.denormalize(values) if self.value_norm is not None else values
