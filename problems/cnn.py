"""A small convolutional net on scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).

    conv 3x3 (1 -> c1) - ReLU - maxpool 2 - conv 3x3 (c1 -> c2) - ReLU - maxpool 2 - linear (4 c2 -> 10)

Every member of a batch is its own network: the parameters of all members are one tensor
[B, P] (views give each layer's weights), and ``torch.func.vmap`` over the network written as a
pure function of its parameters (the model-ensembling pattern of torch.func; equivalent to
``vmap`` over ``functional_call``, without its per-call cost) runs the B networks in one pass,
each on its own mini-batch.
The train/validation/test split is fixed by ``data_seed`` (``problems.data.split``: the test split is
the one the 80/20 split had, the validation split comes out of the former training set); pixels are
standardised with the training mean and std. The recorded loss is the training loss of the step's
mini-batch (the full training set when ``batch_size`` is null); validation and test loss and accuracy
(``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``) are evaluated every ``eval_every``
steps and at the last step, in one pass over both splits. Both fractions must be in (0, 1): the CNN is
selected by a validation metric and reported by test metrics. f* is unknown. Float32 by default.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from optimizers.base import ConfigError
from problems.base import rng
from problems.data import DataProblem, check_eval_every, split


class DigitsNet(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(4 * c2, 10)

    def forward(self, x: Tensor) -> Tensor:
        return digits_forward(dict(self.named_parameters()), x)


def digits_forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
    """DigitsNet as a pure function of its parameters (what vmap maps over). Calling it directly
    avoids functional_call's per-call module re-parametrisation (~1 ms a step here)."""
    F = nn.functional
    x = F.max_pool2d(torch.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
    x = F.max_pool2d(torch.relu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
    return F.linear(x.flatten(1), p["fc.weight"], p["fc.bias"])


class CNN(DataProblem):
    name = "cnn"
    default_dtype = torch.float32

    def __init__(self, channels=(16, 32), val_fraction=0.2, test_fraction=0.2, data_seed=0, eval_every=100, **kw):
        ok = isinstance(channels, (list, tuple)) and len(channels) == 2 and all(isinstance(c, int) and c > 0 for c in channels)
        if not ok:
            raise ConfigError(f"problem.channels={channels!r} is not allowed; allowed: two integers > 0")
        check_eval_every(eval_every)
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        train, val, test = split(len(y), val_fraction, test_fraction, data_seed, "digits_split", auto=False)
        self.net = DigitsNet(*channels)
        self.shapes = {k: v.shape for k, v in self.net.named_parameters()}
        self.sizes = {k: math.prod(s) for k, s in self.shapes.items()}
        mean, std = (X[train] / 16.0).mean(), (X[train] / 16.0).std()
        X = (X / 16.0 - mean) / std  # one global standardisation, from the training images
        X, y = self._hold_out(X, y.astype(np.int64), train, val, test)
        super().__init__(X, y, **kw)
        self.y = self.y.long()
        # validation then test images, evaluated in one pass; ``held_out`` keeps each split's share
        self.X_eval = torch.cat([v[0] for v in self.held_out.values()]).view(-1, 1, 8, 8)
        self.y_eval = torch.cat([v[1] for v in self.held_out.values()])
        self.X = self.X.view(-1, 1, 8, 8)
        self.dim = sum(self.sizes.values())
        self.eval_every = eval_every
        self.f_star, self.minima = None, []
        self.stream = self.batches() if self.batch_size else None

    def init(self) -> Tensor:
        """torch's default layer init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from each member's seed."""
        if self.x0 is not None:
            return super().init()
        rows = []
        for s in self.seeds:
            g = rng(s, "cnn_init")
            parts = []
            for k, _shape in self.shapes.items():
                fan_in = math.prod(self.shapes[k.replace("bias", "weight")][1:])
                parts.append(g.uniform(-1, 1, self.sizes[k]) / math.sqrt(fan_in))
            rows.append(np.concatenate(parts))
        return torch.tensor(np.stack(rows), dtype=self.dtype)

    def _params(self, x: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for k, shape in self.shapes.items():
            out[k] = x[:, i : i + self.sizes[k]].view(x.shape[0], *shape)
            i += self.sizes[k]
        return out

    def logits(self, x: Tensor, images: Tensor) -> Tensor:
        """Logits [B, k, 10]; ``images`` is [B, k, 1, 8, 8] (each member's own) or [k, 1, 8, 8] (shared)."""
        shared = images.dim() == 4
        if x.shape[0] == 1:  # one network: a plain call (vmap would turn convolutions into grouped ones)
            p = {k: v[0] for k, v in self._params(x).items()}
            return digits_forward(p, images if shared else images[0])[None]
        return vmap(digits_forward, in_dims=(0, None if shared else 0))(self._params(x), images)

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        if idx is None:
            lg, y = self.logits(x, self.X), self.y.expand(x.shape[0], -1)
        else:
            lg, y = self.logits(x, self.X[idx]), self.y[idx]
        return nn.functional.cross_entropy(lg.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(-1)

    def loss_and_grad(self, x: Tensor, t: int | None = None) -> tuple[Tensor, Tensor]:
        """Loss and gradient of the step's mini-batch: one forward/backward per step."""
        idx = next(self.stream) if self.stream is not None and t is not None else None
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            f = self.loss_on(xx, idx)
            (g,) = torch.autograd.grad(f.sum(), xx)
        return f.detach(), g

    def update_grad(self):
        return super(DataProblem, self).update_grad()  # the step's gradient is already the mini-batch one

    def evaluate(self, x: Tensor) -> dict[str, Tensor]:
        """Loss and accuracy per member on the validation and the test split, [B] each."""
        with torch.no_grad():
            lg = self.logits(x, self.X_eval)
            y = self.y_eval.expand(x.shape[0], -1)
            loss = nn.functional.cross_entropy(lg.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
            right = (lg.argmax(-1) == y).to(torch.float64)
        out, i = {}, 0
        for k, (_, labels) in self.held_out.items():
            j = i + len(labels)
            out[f"{k}_loss"], out[f"{k}_accuracy"] = loss[:, i:j].mean(-1), right[:, i:j].mean(-1)
            i = j
        return out
