"""One agent's actor: HARL's stochastic MLP policy as an RLlib RLModule.

Observations are a flat Box, or a Dict {"obs": Box, "action_mask": Box} for envs with
available-action masks (unavailable actions get logit −1e10, as in HARL). Discrete
actions → Categorical; Box actions → diagonal Gaussian with HARL's state-independent
std, σ = sigmoid(p / std_x_coef) · std_y_coef.

With `use_recurrent_policy` (HARL's name) a GRU follows the MLP base and the module is
*stateful* in RLlib's sense (`get_initial_state` is not empty): env runners then add a
time axis to the observations, feed `STATE_IN` (the initial state at an episode's first
step, else the previous step's `STATE_OUT`) and record every step's `STATE_OUT` in the
episode; the learner trains on chunks that start from those recorded states.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDiagGaussian
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from harl_rllib.core.networks import GRUStack, flat_dim, init_layer, mlp_base

ACTION_MASK = "action_mask"
OBS = "obs"
MASKED_LOGIT = -1e10
HIDDEN = "h"  # the key of the GRU state in STATE_IN / STATE_OUT: (B, recurrent_n, hidden)

ACTOR_DEFAULTS: dict[str, Any] = {
    "hidden_sizes": [128, 128],
    "activation": "relu",
    "use_feature_normalization": True,
    "gain": 0.01,
    "std_x_coef": 1.0,
    "std_y_coef": 0.5,
}

# Recurrent settings in a module's model_config, written by the config from its fields of the
# same names (HARL's): a GRU of `recurrent_n` layers after the MLP base, of size
# `recurrent_hidden_size` (None: the last MLP hidden size, as HARL); `max_seq_len` is the
# training chunk length (HARL's data_chunk_length).
RECURRENT_DEFAULTS: dict[str, Any] = {
    "use_recurrent_policy": False,
    "recurrent_n": 1,
    "recurrent_hidden_size": None,
    "max_seq_len": 10,
}


def recurrent_size(cfg: dict[str, Any], input_dim: int) -> int:
    """The GRU's hidden size: `recurrent_hidden_size`, else the base's output size (HARL)."""
    if cfg.get("recurrent_hidden_size"):
        return int(cfg["recurrent_hidden_size"])
    return cfg["hidden_sizes"][-1] if cfg["hidden_sizes"] else input_dim


def split_obs(obs_space: gym.Space) -> tuple[gym.spaces.Box, bool]:
    """The actor's input space and whether observations carry an action mask."""
    if isinstance(obs_space, gym.spaces.Dict):
        if OBS not in obs_space.spaces or ACTION_MASK not in obs_space.spaces:
            raise ValueError(
                f"A Dict observation space must have keys {OBS!r} and {ACTION_MASK!r}; got {list(obs_space.spaces)}"
            )
        return obs_space[OBS], True
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"Observation space must be a Box or a Dict(obs, action_mask); got {obs_space}")
    return obs_space, False


class HAActorTorchRLModule(TorchRLModule):
    """Per-agent policy network; never holds a value function (the critic is central)."""

    def setup(self) -> None:
        cfg = {**ACTOR_DEFAULTS, **RECURRENT_DEFAULTS, **(self.model_config or {})}
        obs_space, self._has_mask = split_obs(self.observation_space)
        self.base = mlp_base(
            flat_dim(obs_space),
            cfg["hidden_sizes"],
            cfg["activation"],
            cfg["use_feature_normalization"],
        )
        last = cfg["hidden_sizes"][-1] if cfg["hidden_sizes"] else flat_dim(obs_space)
        self.rnn = None
        if cfg["use_recurrent_policy"]:
            size = recurrent_size(cfg, flat_dim(obs_space))
            self.rnn = GRUStack(last, size, int(cfg["recurrent_n"]))
            last = size
        if isinstance(self.action_space, gym.spaces.Discrete):
            self._continuous = False
            self.head = init_layer(nn.Linear(last, int(self.action_space.n)), cfg["gain"])
        elif isinstance(self.action_space, gym.spaces.Box):
            self._continuous = True
            n = flat_dim(self.action_space)
            self.head = init_layer(nn.Linear(last, n), cfg["gain"])
            self._std_x, self._std_y = float(cfg["std_x_coef"]), float(cfg["std_y_coef"])
            self.log_std = nn.Parameter(torch.ones(n) * self._std_x)
        else:
            raise ValueError(f"Action space must be Discrete or Box; got {self.action_space}")

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        """Zeros for a recurrent actor (HARL resets rnn states to 0 at episode starts); an
        empty dict otherwise, which tells RLlib the module is not stateful."""
        if self.rnn is None:
            return {}
        return {HIDDEN: torch.zeros(self.rnn.num_layers, self.rnn.hidden_size)}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Feed-forward: obs (B, ...). Recurrent: obs (B, T, ...) and STATE_IN {h: (B, layers,
        H)} → dist inputs (B, T, ·) and STATE_OUT, the state after the last of the T steps."""
        obs = batch[Columns.OBS]
        mask = None
        if self._has_mask:
            obs, mask = obs[OBS], obs[ACTION_MASK]
        out: dict[str, Any] = {}
        dtype = self.head.weight.dtype
        if self.rnn is None:
            x = self.base(obs.reshape(obs.shape[0], -1).to(dtype))
        else:
            x = self.base(obs.reshape(obs.shape[0], obs.shape[1], -1).to(dtype))
            x, states = self.rnn(x, batch[Columns.STATE_IN][HIDDEN].to(dtype))
            out[Columns.STATE_OUT] = {HIDDEN: states[:, -1]}
        x = self.head(x)
        if self._continuous:
            std = torch.sigmoid(self.log_std / self._std_x) * self._std_y
            x = torch.cat([x, torch.log(std).expand_as(x)], dim=-1)
        elif mask is not None:
            x = x.masked_fill(mask == 0, MASKED_LOGIT)
        out[Columns.ACTION_DIST_INPUTS] = x
        return out

    def get_inference_action_dist_cls(self):
        return TorchDiagGaussian if self._continuous else TorchCategorical

    def get_exploration_action_dist_cls(self):
        return self.get_inference_action_dist_cls()

    def get_train_action_dist_cls(self):
        return self.get_inference_action_dist_cls()
