"""HARL's MLP base, shared by actors and the critic.

Feature LayerNorm on the input, then [Linear → activation → LayerNorm] per hidden
layer, orthogonal init with the activation's gain and zero biases (HARL's `MLPBase`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
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
