"""HARL's MLP base and GRU layer, shared by actors and the critic.

Feature LayerNorm on the input, then [Linear → activation → LayerNorm] per hidden
layer, orthogonal init with the activation's gain and zero biases (HARL's `MLPBase`);
with a recurrent policy, a GRU and LayerNorm after it (HARL's `RNNLayer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "hardswish": nn.Hardswish,
}


def init_layer(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp_base(
    input_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    use_feature_normalization: bool = True,
) -> nn.Sequential:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; use one of {list(_ACTIVATIONS)}")
    gain = nn.init.calculate_gain(activation)
    layers: list[nn.Module] = [nn.LayerNorm(input_dim)] if use_feature_normalization else []
    last = input_dim
    for size in hidden_sizes:
        layers += [init_layer(nn.Linear(last, size), gain), _ACTIVATIONS[activation](), nn.LayerNorm(size)]
        last = size
    return nn.Sequential(*layers)


def flat_dim(space) -> int:
    """Size of a flat Box observation/state."""
    import numpy as np

    return int(np.prod(space.shape))


class GRUStack(nn.Module):
    """HARL's `RNNLayer` (GRU of `recurrent_n` layers, orthogonal weights, zero biases, then
    LayerNorm), built as one single-layer GRU per layer: each layer's output sequence is its
    hidden-state sequence, so every step's full state (all layers) is available. The learner
    needs that: training chunks start from the state recorded at their first step.

    Shapes: x (B, T, D), h0 (B, layers, H) → out (B, T, H) normed, states (B, T, layers, H)
    where states[:, t] is the state after step t. nn.GRU(num_layers=n) computes the same.
    """

    def __init__(self, input_dim: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.layers = nn.ModuleList(
            nn.GRU(input_dim if i == 0 else hidden_size, hidden_size, batch_first=True) for i in range(num_layers)
        )
        for name, param in self.layers.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_layer = []
        for i, gru in enumerate(self.layers):
            x, _ = gru(x, h0[:, i].unsqueeze(0).contiguous())
            per_layer.append(x)
        return self.norm(x), torch.stack(per_layer, dim=2)
