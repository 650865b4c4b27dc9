"""A small convolutional net on scikit-learn's bundled 8x8 digits (problems/digits.py), as a network problem
(problems/network.py):

    conv 3x3 (1 -> c1) - ReLU - maxpool 2 - conv 3x3 (c1 -> c2) - ReLU - maxpool 2 - linear (4 c2 -> 10)

Two things differ from a network of your own, so that its numbers stay those it has always had:
- each member's start is torch's default layer init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the
  member's own numpy stream (``problems.base.rng(seed, "cnn_init")``) rather than torch's global generator;
- vmap maps over the network written as a pure function of its parameters (``digits_forward``), which
  computes what ``functional_call`` of ``DigitsNet`` does without its per-call module re-parametrisation
  (~1 ms a step here).
Cross-entropy; validation and test loss and accuracy every ``eval_every`` steps. Float32 by default.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor, nn

from optimizers.base import ConfigError
from problems.base import rng
from problems.digits import digits
from problems.network import NetworkProblem


class DigitsNet(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(4 * c2, 10)

    def forward(self, x: Tensor) -> Tensor:
        return digits_forward(dict(self.named_parameters()), x)


def digits_forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
    """DigitsNet as a pure function of its parameters (what vmap maps over)."""
    F = nn.functional
    x = F.max_pool2d(torch.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
    x = F.max_pool2d(torch.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
    return F.linear(x.flatten(1), p["fc.weight"], p["fc.bias"])


class CNN(NetworkProblem):
    name = "cnn"
    fixed = (*NetworkProblem.fixed, "loss")  # always cross-entropy

    def __init__(self, channels=(16, 32), val_fraction=0.2, test_fraction=0.2, data_seed=0, eval_every=100, **kw):
        ok = (
            isinstance(channels, (list, tuple))
            and len(channels) == 2
            and all(isinstance(c, int) and c > 0 for c in channels)
        )
        if not ok:
            raise ConfigError(f"problem.channels={channels!r} is not allowed; allowed: two integers > 0")
        X, y, train, val, test = digits(val_fraction, test_fraction, data_seed)
        super().__init__(
            functools.partial(DigitsNet, *channels),
            X.reshape(-1, 1, 8, 8),
            y,
            train,
            val,
            test,
            "cross_entropy",
            eval_every,
            what="problem=cnn",
            **kw,
        )

    def _start_rows(self, params: dict[str, Tensor]) -> Tensor:
        """torch's default layer init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from each member's numpy stream."""
        rows = []
        for s in self.seeds:
            g = rng(s, "cnn_init")
            parts = []
            for k in self.shapes:
                fan_in = math.prod(self.shapes[k.replace("bias", "weight")][1:])
                parts.append(g.uniform(-1, 1, self.sizes[k]) / math.sqrt(fan_in))
            rows.append(np.concatenate(parts))
        return torch.tensor(np.stack(rows), dtype=self.dtype)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], images: Tensor) -> Tensor:
        return digits_forward(params, images)
