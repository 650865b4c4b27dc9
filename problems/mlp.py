"""A multilayer perceptron on scikit-learn's bundled 8x8 digits (problems/digits.py), as a network problem
(problems/network.py): 64 standardised pixels -> ``depth`` hidden layers of ``width`` units, each followed
by ``activation`` -> 10 outputs, trained with cross-entropy or with MSE to one-hot targets (``loss``).
Each member starts at torch's default ``nn.Linear`` initialisation from its seed. ``batch_size=null``
trains on the full training split (1,079 images), as edge-of-stability studies do.
"""

from __future__ import annotations

import functools

from torch import nn

from optimizers.base import ConfigError
from problems.digits import digits
from problems.network import NetworkProblem

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def mlp(inputs: int, outputs: int, width: int, depth: int, activation: str) -> nn.Sequential:
    """Linear(inputs, width) - activation - ... (``depth`` hidden layers) - Linear(width, outputs)."""
    layers, n = [], inputs
    for _ in range(depth):
        layers += [nn.Linear(n, width), ACTIVATIONS[activation]()]
        n = width
    return nn.Sequential(*layers, nn.Linear(n, outputs))


def _count(key: str, v, lo: int) -> int:
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
        raise ConfigError(f"problem.{key}={v!r} is not allowed; allowed: an integer >= {lo}")
    return v


class MLP(NetworkProblem):
    name = "mlp"

    def __init__(
        self,
        width=64,
        depth=2,
        activation="relu",
        loss="cross_entropy",
        val_fraction=0.2,
        test_fraction=0.2,
        data_seed=0,
        eval_every=100,
        **kw,
    ):
        _count("width", width, 1)
        _count("depth", depth, 0)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"problem.activation={activation!r} is not allowed; allowed: {', '.join(ACTIVATIONS)}")
        X, y, train, val, test = digits(val_fraction, test_fraction, data_seed)
        factory = functools.partial(mlp, 64, 10, width, depth, activation)
        super().__init__(factory, X, y, train, val, test, loss, eval_every, what="problem=mlp", **kw)
