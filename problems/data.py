"""Regression problems on bundled, synthetic or your own data (problems/datasets.py), with full-batch,
stochastic or mini-batch gradients.

Parameters are one vector per member, intercept first: theta = (b, w_1, ..., w_p), or
theta = (w_1, ..., w_p) with ``fit_intercept=false``.
With ``batch_size = k`` each update uses k examples; every member shuffles the training set
with its own seed at each epoch (an epoch is ceil(n / k) steps). The recorded loss, gradient
norm and stopping rules use the exact full-data objective, so curves are comparable to f*.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from optimizers.base import ConfigError
from problems.base import Minimum, Problem, rng
from problems.datasets import is_path, load, two_classes

LINEAR_DATASETS = ("synthetic", "diabetes", "seed_example")
# Examples per member are padded with zero-weight rows to a multiple of this, so that every member's
# row has the same length and alignment whatever the batch: torch's vectorised element-wise kernels
# (softplus' gradient, for one) differ in the last bit from their scalar tail loops, and without the
# padding a member's gradient would depend on its position in the batch and on the batch size.
LANES = 64
LOGISTIC_DATASETS = ("breast_cancer",)


def _standardize(X: np.ndarray) -> np.ndarray:
    """z-scores per column; a constant column (say, a column of ones) is left as it is."""
    sd = X.std(0)
    return np.where(sd > 0, (X - X.mean(0)) / np.where(sd > 0, sd, 1.0), X)


def _flag(key: str, v) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"problem.{key}={v!r} is not allowed; allowed: true or false")
    return v


class DataProblem(Problem):
    """Loss = mean over examples; ``loss_on(x, idx)`` evaluates it on the examples ``idx[B, k]``."""

    X: Tensor
    y: Tensor
    fixed = ("dim", "box")  # set by the data, not by the config
    intercept = True

    def __init__(self, X: np.ndarray, y: np.ndarray, x0=None, batch_size=None, **kw):
        super().__init__(X.shape[1] + int(self.intercept), x0, (-1.0, 1.0), **kw)
        self.X = torch.tensor(X, dtype=self.dtype)
        self.y = torch.tensor(y, dtype=self.dtype)
        self.samples = n = X.shape[0]
        ok = batch_size is None or (isinstance(batch_size, int) and not isinstance(batch_size, bool) and 1 <= batch_size <= n)
        if not ok:
            raise ConfigError(f"batch_size={batch_size!r} is not allowed; allowed: null (full batch) or an integer 1..{n} (the training set size)")
        self.batch_size = batch_size

    def init(self) -> Tensor:
        """Start at theta = 0 unless ``x0`` is given (the usual start for regression)."""
        if self.x0 is None:
            return torch.zeros(self.batch, self.dim, dtype=self.dtype)
        return super().init()

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, x: Tensor) -> Tensor:
        return self.loss_on(x, None)

    def _design(self, idx: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Examples [B or 1, k', p], targets [B or 1, k'] and weights [B or 1, k'] (1 / k for each of
        the k examples, 0 for padding) of the batch, all examples if idx is None; k' = k padded to
        a multiple of ``LANES``."""
        X, y = (self.X[None], self.y[None]) if idx is None else (self.X[idx], self.y[idx])
        k = X.shape[1]
        pad = -k % LANES
        w = torch.full(y.shape, 1.0 / k, dtype=self.dtype)
        if pad:
            X = torch.nn.functional.pad(X, (0, 0, 0, pad))
            y, w = (torch.nn.functional.pad(t, (0, pad)) for t in (y, w))
        return X, y, w

    def _linear(self, x: Tensor, X: Tensor) -> Tensor:
        """b + w.x per example ([B, k']), or w.x without an intercept."""
        if self.intercept:
            return x[:, :1] + (X * x[:, None, 1:]).sum(-1)
        return (X * x[:, None, :]).sum(-1)

    def _weights(self, x: Tensor) -> Tensor:
        """The coefficients a penalty applies to (never the intercept)."""
        return x[:, 1:] if self.intercept else x

    def _design_matrix(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(X)), X]) if self.intercept else X

    def batches(self):
        """Index batches [B, k] for steps 0, 1, ...: per member, a fresh permutation each epoch."""
        n, k = self.samples, self.batch_size
        per_epoch = math.ceil(n / k)
        gens = [rng(s, "batches") for s in self.seeds]
        perms = None
        t = 0
        while True:
            j = t % per_epoch
            if j == 0:
                perms = torch.from_numpy(np.stack([g.permutation(n) for g in gens]))
            yield perms[:, j * k : (j + 1) * k]
            t += 1

    def update_grad(self):
        if self.batch_size is None:
            return super().update_grad()
        stream = self.batches()

        def minibatch(x: Tensor, g: Tensor, t: int) -> Tensor:
            idx = next(stream)
            with torch.enable_grad():
                xx = x.detach().requires_grad_(True)
                (gb,) = torch.autograd.grad(self.loss_on(xx, idx).sum(), xx)
            return gb

        return minibatch


class LinearRegression(DataProblem):
    """Least squares with an intercept, torch.nn.MSELoss convention: f = mean_i (b + w.x_i - y_i)^2.

    Datasets: ``synthetic`` (n, d, noise, condition: column scales spread over ``condition``),
    ``diabetes`` (scikit-learn's bundled 442 x 10), ``seed_example`` (x = 1, 2, 3; y = 2, 3, 4), or a
    path to your own .csv or .npz with ``target`` naming the label column. ``fit_intercept=false``
    drops b. f* and the minimiser come from an exact least-squares solve in float64.
    """

    name = "linear_regression"

    def __init__(self, dataset="synthetic", target=None, fit_intercept=True, n=200, d=5, noise=0.1, condition=10.0, standardize=True,
                 data_seed=0, **kw):
        self.intercept = _flag("fit_intercept", fit_intercept)
        _flag("standardize", standardize)
        if is_path(dataset):
            X, y, _ = load(dataset, target)
            X = _standardize(X) if standardize else X
        elif dataset not in LINEAR_DATASETS:
            raise ConfigError(f"problem.dataset={dataset!r} is not allowed; allowed: {', '.join(LINEAR_DATASETS)}, or a path to a .csv or .npz file")
        elif target is not None:
            raise ConfigError(f"problem.target={target!r} is not allowed with the bundled dataset {dataset!r}; allowed: null (a target is for your own file)")
        if dataset == "synthetic":
            for key, v, lo in (("n", n, 1), ("d", d, 1)):
                if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                    raise ConfigError(f"problem.{key}={v!r} is not allowed; allowed: an integer >= {lo}")
            if not (isinstance(condition, (int, float)) and condition >= 1):
                raise ConfigError(f"problem.condition={condition!r} is not allowed; allowed: a number >= 1")
            if not (isinstance(noise, (int, float)) and noise >= 0):
                raise ConfigError(f"problem.noise={noise!r} is not allowed; allowed: a number >= 0")
            g = rng(data_seed, "linear_regression")
            X = g.standard_normal((n, d)) * np.logspace(0, -math.log10(condition), d)
            y = X @ g.standard_normal(d) + 1.0 + noise * g.standard_normal(n)
        elif dataset == "diabetes":
            from sklearn.datasets import load_diabetes

            X, y = load_diabetes(return_X_y=True)
            X = _standardize(X) if standardize else X
        elif dataset == "seed_example":
            X, y = np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 3.0, 4.0])
        self.dataset = dataset
        super().__init__(X, y, **kw)
        A = self._design_matrix(X)
        theta, *_ = np.linalg.lstsq(A, y, rcond=None)
        self.f_star = float(np.mean((A @ theta - y) ** 2))
        self.minima = [Minimum("least_squares", tuple(theta.tolist()), self.f_star, "global")]

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        X, y, w = self._design(idx)
        return ((self._linear(x, X) - y) ** 2 * w).sum(-1)


def _newton_logistic(A: np.ndarray, y: np.ndarray, l2: float, intercept: bool = True) -> np.ndarray:
    """Independent reference solver: damped Newton's method in float64 to machine precision."""
    n = len(y)
    reg = np.full(A.shape[1], l2)
    if intercept:
        reg[0] = 0.0  # no penalty on the intercept

    def f(th):
        z = A @ th
        return np.mean(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(reg * th * th)

    th = np.zeros(A.shape[1])
    for _ in range(100):
        p = 0.5 * (1 + np.tanh(0.5 * (A @ th)))
        g = A.T @ (p - y) / n + reg * th
        H = (A * (p * (1 - p))[:, None]).T @ A / n + np.diag(reg)
        step = np.linalg.solve(H, g)
        s = 1.0
        while f(th - s * step) > f(th) and s > 1e-10:
            s *= 0.5
        th = th - s * step
        if np.linalg.norm(g) < 1e-15:
            break
    return th


class LogisticRegression(DataProblem):
    """Binary logistic regression, mean log-loss + (l2 / 2) ||w||^2 (intercept not penalised), on
    scikit-learn's bundled breast-cancer data (569 x 30, standardized features) or your own .csv or
    .npz (``target``: a label column with exactly two classes; the larger label is class 1).
    l2 > 0 makes the optimum unique; f* comes from an independent Newton solve in float64."""

    name = "logistic_regression"

    def __init__(self, dataset="breast_cancer", target=None, fit_intercept=True, l2=1e-2, standardize=True, **kw):
        self.intercept = _flag("fit_intercept", fit_intercept)
        _flag("standardize", standardize)
        if not (isinstance(l2, (int, float)) and not isinstance(l2, bool) and l2 >= 0):
            raise ConfigError(f"problem.l2={l2!r} is not allowed; allowed: a number >= 0 (> 0 for a unique optimum)")
        if is_path(dataset):
            X, labels, _ = load(dataset, target)
            y = two_classes(labels, dataset, target)
        elif dataset not in LOGISTIC_DATASETS:
            raise ConfigError(f"problem.dataset={dataset!r} is not allowed; allowed: {', '.join(LOGISTIC_DATASETS)}, or a path to a .csv or .npz file")
        elif target is not None:
            raise ConfigError(f"problem.target={target!r} is not allowed with the bundled dataset {dataset!r}; allowed: null (a target is for your own file)")
        else:
            from sklearn.datasets import load_breast_cancer

            X, y = load_breast_cancer(return_X_y=True)
        X = _standardize(X) if standardize else X
        self.dataset, self.l2 = dataset, float(l2)
        super().__init__(X, y.astype(float), **kw)
        theta = _newton_logistic(self._design_matrix(X), y.astype(float), self.l2, self.intercept)
        self.f_star = float(self.loss(torch.tensor(theta[None], dtype=torch.float64).to(self.dtype))[0]) if self.dtype == torch.float64 else None
        if self.f_star is not None:
            self.minima = [Minimum("optimum", tuple(theta.tolist()), self.f_star, "global")]

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        X, y, w = self._design(idx)
        z = self._linear(x, X)
        data = ((torch.nn.functional.softplus(z) - y * z) * w).sum(-1)
        return data + 0.5 * self.l2 * (self._weights(x) ** 2).sum(-1)
