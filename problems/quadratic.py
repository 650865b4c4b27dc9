"""Convex quadratic  f(x) = 1/2 (x - x*)^T A (x - x*),  f* = 0,  x* = ``center`` (default 0).

A = Q diag(lambda) Q^T with eigenvalues spaced linearly from ``mu`` (smallest) to ``L``
(largest) and, if ``rotate``, a random orthogonal Q drawn from each member's seed
(QR of a Gaussian matrix with the sign fix of Mezzadri, 2007, i.e. Haar-distributed).
The condition number is kappa = L / mu; theory for GD and momentum on it is in the README.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from optimizers.base import ConfigError
from problems.base import Minimum, Problem, rng


class Quadratic(Problem):
    name = "quadratic"
    f_star = 0.0
    max_dim = 2000
    max_dim_reason = "a dense d x d matrix per member, rotated by a QR decomposition in O(d^3)"

    @classmethod
    def bytes_per_member(cls, dim: int, itemsize: int) -> int:
        return dim * dim * (3 * 8 + itemsize) + 16 * dim * itemsize  # Gaussian, Q and A in float64, then A as a tensor

    def __init__(self, dim: int = 10, mu: float = 1.0, L: float = 100.0, rotate: bool = True, center=None, x0=None, box=(-1.0, 1.0), **kw):
        super().__init__(dim, x0, box, **kw)
        if not isinstance(mu, (int, float)) or isinstance(mu, bool) or not mu > 0:
            raise ConfigError(f"problem.mu={mu!r} is not allowed; allowed: a number > 0")
        if not isinstance(L, (int, float)) or isinstance(L, bool) or not L >= mu:
            raise ConfigError(f"problem.L={L!r} is not allowed; allowed: a number >= mu ({mu})")
        if dim == 1 and mu != L:
            raise ConfigError(f"problem.L={L!r} is not allowed with dim=1; allowed: L = mu")
        self.mu, self.L = float(mu), float(L)
        self.eigenvalues = np.linspace(self.mu, self.L, dim)
        mats = []
        for s in self.seeds:
            q = np.eye(dim)
            if rotate:
                q, r = np.linalg.qr(rng(s, "rotation").standard_normal((dim, dim)))
                q = q * np.sign(np.diag(r))
            mats.append((q * self.eigenvalues) @ q.T)
        self.A = torch.tensor(np.stack(mats), dtype=self.dtype)  # [B, d, d]
        try:
            c = [0.0] * dim if center is None else [float(v) for v in center]
        except (TypeError, ValueError):
            c = []
        if len(c) != dim:
            raise ConfigError(f"problem.center={center!r} is not allowed; allowed: null or {dim} numbers")
        self.center = torch.tensor(c, dtype=self.dtype)
        self.minima = [Minimum("x*", tuple(c), 0.0, "global")]

    def loss(self, x: Tensor) -> Tensor:
        e = x - self.center
        return 0.5 * torch.einsum("bi,bij,bj->b", e, self.A, e)

    def loss_and_grad(self, x: Tensor, t: int | None = None) -> tuple[Tensor, Tensor]:
        e = x - self.center
        g = torch.einsum("bij,bj->bi", self.A, e)
        return 0.5 * (e * g).sum(-1), g
