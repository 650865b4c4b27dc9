"""Regression problems on bundled, synthetic or your own data (problems/datasets.py), with full-batch,
stochastic or mini-batch gradients.

Parameters are one vector per member, intercept first: theta = (b, w_1, ..., w_p), or
theta = (w_1, ..., w_p) with ``fit_intercept=false``.
With ``batch_size = k`` each update uses k examples; every member shuffles the training set
with its own seed at each epoch (an epoch is ceil(n / k) steps). The recorded loss, gradient
norm and stopping rules use the exact objective on the whole training split, so curves are
comparable to f*, which is computed on the training split alone.

Held-out splits (``split``): ``val_fraction`` and ``test_fraction`` of the examples are drawn from
``data_seed`` (one permutation: the test split first, then the validation split, the rest trains),
disjoint and fixed across run seeds; each split keeps the data's order. Features are standardized
with the training split's statistics. ``evaluate`` gives ``val_loss`` and ``test_loss`` (the data
term: mean squared error, or mean log-loss without the l2 penalty, which is no property of held-out
data), plus ``val_accuracy`` and ``test_accuracy`` for classification, every ``eval_every`` steps
(0, the default: only at the last step) and at the last step. ``null`` fractions mean auto:
``AUTO_FRACTION`` each when the data has at least ``AUTO_MIN_EXAMPLES`` examples, else 0: the
tutorials' 3- and 4-example sets are fitted whole and log no held-out metrics.
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
# null val_fraction / test_fraction (the regressions' default): this fraction each, when the data has
# at least AUTO_MIN_EXAMPLES examples (then each held-out split has at least 10); else nothing is held out
AUTO_FRACTION = 0.2
AUTO_MIN_EXAMPLES = 50
SPLIT_NAMES = {"val": "validation", "test": "test"}
AUTO = f"null (auto: {AUTO_FRACTION} with at least {AUTO_MIN_EXAMPLES} examples, else 0)"


def standardize_columns(X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """z-scores per column with the mean and std of ``rows`` (the training split; all rows if None),
    so held-out examples do not leak into training; a column constant there is left as it is."""
    ref = X if rows is None else X[rows]
    sd, mean = ref.std(0), ref.mean(0)
    return np.where(sd > 0, (X - mean) / np.where(sd > 0, sd, 1.0), X)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_eval_every(v) -> int:
    if not (_is_int(v) and v >= 0):
        raise ConfigError(f"problem.eval_every={v!r} is not allowed; allowed: an integer >= 0 (0: only at the end)")
    return v


def check_data_seed(v) -> int:
    if not (_is_int(v) and v >= 0):
        raise ConfigError(f"problem.data_seed={v!r} is not allowed; allowed: an integer >= 0")
    return v


def split(n: int, val_fraction, test_fraction, data_seed, stream: str, *, auto: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices of ``n`` examples, each sorted, disjoint, covering 0..n-1.

    One permutation from ``data_seed`` (stream ``stream``): its first round(test_fraction * n) rows
    are the test split, the next round(val_fraction * n) the validation split, the rest the training
    split. With ``auto`` (the regressions) a fraction may be 0 (no such split) or null (auto, see
    ``AUTO``); without it (the CNN) both must be in (0, 1). Bad values raise one ConfigError line."""
    check_data_seed(data_seed)
    allowed = f"{AUTO} or a number in [0, 1) (0: no such split)" if auto else "a number in (0, 1)"
    fractions = {}
    for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if v is None and auto:
            v = AUTO_FRACTION if n >= AUTO_MIN_EXAMPLES else 0.0
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (0 <= v < 1 if auto else 0 < v < 1)
        if not ok:
            raise ConfigError(f"problem.{key}={v!r} is not allowed; allowed: {allowed}")
        fractions[key] = float(v)
    val, test = fractions["val_fraction"], fractions["test_fraction"]
    given = " with ".join(f"problem.{k}={'null (auto: ' + repr(f) + ')' if v is None else repr(v)}"
                          for (k, f), v in zip(fractions.items(), (val_fraction, test_fraction)))
    if val + test >= 1:
        raise ConfigError(f"{given} sums to {val + test:g}; allowed: fractions that sum to less than 1 (the rest is the training set)")
    counts = {}
    for key, f in fractions.items():
        counts[key] = k = int(round(f * n))
        if f > 0 and k < 1:
            raise ConfigError(f"problem.{key}={f!r} holds out {k} of the {n} examples; allowed: "
                              f"a fraction >= {1 / n:.3g} (at least one example){' or 0' if auto else ''}")
    n_val, n_test = counts["val_fraction"], counts["test_fraction"]
    if n - n_val - n_test < 1:
        raise ConfigError(f"{given} holds out {n_val} + {n_test} of the {n} examples; allowed: fractions that leave at least one training example")
    if n_val == n_test == 0:
        return np.arange(n), np.arange(0), np.arange(0)
    order = rng(data_seed, stream).permutation(n)
    return np.sort(order[n_test + n_val :]), np.sort(order[n_test : n_test + n_val]), np.sort(order[:n_test])


def _flag(key: str, v) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"problem.{key}={v!r} is not allowed; allowed: true or false")
    return v


class DataProblem(Problem):
    """Loss = mean over the training split ``X``, ``y``; ``loss_on(x, idx)`` evaluates it on the examples
    ``idx[B, k]``. ``held_out`` maps ``val`` and ``test`` to their (features, labels), for the splits
    that exist: a subclass sets it (numpy arrays) before calling ``DataProblem.__init__``, which makes
    tensors of them (it is not a constructor argument, so it is no config key)."""

    X: Tensor
    y: Tensor
    fixed = ("dim", "box")  # set by the data, not by the config
    intercept = True
    held_out: dict[str, tuple[Tensor, Tensor]] = {}

    def __init__(self, X: np.ndarray, y: np.ndarray, x0=None, batch_size=None, dim: int | None = None, **kw):
        super().__init__(X.shape[1] + int(self.intercept) if dim is None else dim, x0, (-1.0, 1.0), **kw)
        self.X = torch.tensor(X, dtype=self.dtype)
        self.y = torch.tensor(y, dtype=self.dtype)
        self.samples = n = X.shape[0]
        self.held_out = {k: (torch.tensor(a, dtype=self.dtype), torch.tensor(b, dtype=torch.long if np.issubdtype(b.dtype, np.integer) else self.dtype))
                         for k, (a, b) in self.held_out.items()}
        ok = batch_size is None or (isinstance(batch_size, int) and not isinstance(batch_size, bool) and 1 <= batch_size <= n)
        if not ok:
            what = "the training set size"
            if self.held_out:
                held = " and ".join(f"{len(b)} for {SPLIT_NAMES[k]}" for k, (_, b) in self.held_out.items())
                what = f"the training split's size: {n + sum(len(b) for _, b in self.held_out.values())} examples less {held}"
            raise ConfigError(f"batch_size={batch_size!r} is not allowed; allowed: null (full batch) or an integer 1..{n} ({what})")
        self.batch_size = batch_size

    def _hold_out(self, X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sets ``held_out`` to the validation and test rows that exist; returns the training rows."""
        self.held_out = {k: (X[rows], y[rows]) for k, rows in (("val", val), ("test", test)) if len(rows)}
        return X[train], y[train]

    def _data_loss(self, x: Tensor, X: Tensor, y: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The per-example loss weighted by ``w`` and summed ([B]), without any penalty on x."""
        raise NotImplementedError

    _accuracy = None  # classification: (x, X, y, w) -> the share of examples predicted right, [B]

    def evaluate(self, x: Tensor) -> dict[str, Tensor]:
        """``val_loss`` and ``test_loss`` (plus ``val_accuracy``, ``test_accuracy`` for classification)
        per member, [B], for the held-out splits that exist; padded and batched as the training loss."""
        out = {}
        for k, (X, y) in self.held_out.items():
            design = self._pad(X[None], y[None])
            out[f"{k}_loss"] = self._data_loss(x, *design)
            if self._accuracy is not None:
                out[f"{k}_accuracy"] = self._accuracy(x, *design)
        return out

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
        return self._pad(X, y)

    def _pad(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``_design``'s padding and weights for examples X [B or 1, k, p] and targets y [B or 1, k]."""
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
                perms = torch.from_numpy(np.stack([g.permutation(n) for g in gens])).to(self.X.device)
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
    """Least squares with an intercept, torch.nn.MSELoss convention: f = mean_i (b + w.x_i - y_i)^2
    over the training split.

    Datasets: ``synthetic`` (n, d, noise, condition: column scales spread over ``condition``),
    ``diabetes`` (scikit-learn's bundled 442 x 10), ``seed_example`` (x = 1, 2, 3; y = 2, 3, 4), or a
    path to your own .csv or .npz with ``target`` naming the label column. ``fit_intercept=false``
    drops b. f* and the minimiser come from an exact least-squares solve in float64 on the training
    split. Held out (``split``): ``val_fraction`` and ``test_fraction`` from ``data_seed`` (which also
    draws the synthetic data); ``evaluate`` gives their mean squared errors, ``val_loss`` and ``test_loss``.
    """

    name = "linear_regression"

    def __init__(self, dataset="synthetic", target=None, fit_intercept=True, n=200, d=5, noise=0.1, condition=10.0, standardize=True,
                 data_seed=0, val_fraction=None, test_fraction=None, eval_every=0, **kw):
        self.intercept = _flag("fit_intercept", fit_intercept)
        _flag("standardize", standardize)
        check_data_seed(data_seed)
        self.eval_every = check_eval_every(eval_every)
        if is_path(dataset):
            X, y, _ = load(dataset, target)
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
        elif dataset == "seed_example":
            X, y = np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 3.0, 4.0])
        train, val, test = split(len(y), val_fraction, test_fraction, data_seed, "data_split")
        if standardize and (is_path(dataset) or dataset == "diabetes"):
            X = standardize_columns(X, train)
        self.dataset = dataset
        X, y = self._hold_out(X, y, train, val, test)
        super().__init__(X, y, **kw)
        A = self._design_matrix(X)
        theta, *_ = np.linalg.lstsq(A, y, rcond=None)
        self.f_star = float(np.mean((A @ theta - y) ** 2))
        self.minima = [Minimum("least_squares", tuple(theta.tolist()), self.f_star, "global")]

    def _data_loss(self, x: Tensor, X: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return ((self._linear(x, X) - y) ** 2 * w).sum(-1)

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        return self._data_loss(x, *self._design(idx))

    def example_losses(self, x: Tensor, rows: Tensor) -> Tensor:
        """Each training example's loss ``[B, k]`` at ``x``, for the examples ``rows`` (the instruments' noise scale)."""
        return (self._linear(x, self.X[rows][None]) - self.y[rows][None]) ** 2


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
    """Binary logistic regression, mean log-loss + (l2 / 2) ||w||^2 (intercept not penalised) over the
    training split, on scikit-learn's bundled breast-cancer data (569 x 30, standardized features) or
    your own .csv or .npz (``target``: a label column with exactly two classes; the larger label is
    class 1). l2 > 0 makes the optimum unique; f* comes from an independent Newton solve in float64
    on the training split. Held out (``split``): ``val_fraction`` and ``test_fraction`` from
    ``data_seed``; ``evaluate`` gives their mean log-loss (no penalty), ``val_loss`` and ``test_loss``,
    and the share predicted right (class 1 where b + w.x > 0), ``val_accuracy`` and ``test_accuracy``."""

    name = "logistic_regression"

    def __init__(self, dataset="breast_cancer", target=None, fit_intercept=True, l2=1e-2, standardize=True, data_seed=0, val_fraction=None,
                 test_fraction=None, eval_every=0, **kw):
        self.intercept = _flag("fit_intercept", fit_intercept)
        _flag("standardize", standardize)
        check_data_seed(data_seed)
        self.eval_every = check_eval_every(eval_every)
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
        y = y.astype(float)
        train, val, test = split(len(y), val_fraction, test_fraction, data_seed, "data_split")
        if len(np.unique(y[train])) < 2:
            given = ", ".join(f"problem.{k}={'null' if v is None else repr(v)}" for k, v in
                              (("data_seed", data_seed), ("val_fraction", val_fraction), ("test_fraction", test_fraction)))
            raise ConfigError(f"{given} leave only class {y[train][0]:g} in the training split ({len(train)} examples); "
                              "allowed: a split whose training examples hold both classes")
        X = standardize_columns(X, train) if standardize else X
        self.dataset, self.l2 = dataset, float(l2)
        X, y = self._hold_out(X, y, train, val, test)
        super().__init__(X, y, **kw)
        theta = _newton_logistic(self._design_matrix(X), y, self.l2, self.intercept)
        self.f_star = float(self.loss(torch.tensor(theta[None], dtype=torch.float64).to(self.dtype))[0]) if self.dtype == torch.float64 else None
        if self.f_star is not None:
            self.minima = [Minimum("optimum", tuple(theta.tolist()), self.f_star, "global")]

    def _data_loss(self, x: Tensor, X: Tensor, y: Tensor, w: Tensor) -> Tensor:
        z = self._linear(x, X)
        return ((torch.nn.functional.softplus(z) - y * z) * w).sum(-1)

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        return self._data_loss(x, *self._design(idx)) + 0.5 * self.l2 * (self._weights(x) ** 2).sum(-1)

    def example_losses(self, x: Tensor, rows: Tensor) -> Tensor:
        """Each training example's loss ``[B, k]`` (its log-loss plus the penalty) at ``x``, for the examples ``rows``."""
        z = self._linear(x, self.X[rows][None])
        return torch.nn.functional.softplus(z) - self.y[rows][None] * z + 0.5 * self.l2 * (self._weights(x) ** 2).sum(-1, keepdim=True)

    def _accuracy(self, x: Tensor, X: Tensor, y: Tensor, w: Tensor) -> Tensor:
        right = ((self._linear(x, X) > 0) == (y > 0.5)) & (w > 0)  # padding rows (w = 0) never count
        return right.sum(-1).to(torch.float64) / (w[0] > 0).sum()
