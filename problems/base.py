"""The problem protocol: batched loss, start points, f* and the list of known minima."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optimizers.base import ConfigError


@dataclass(frozen=True)
class Minimum:
    """A stationary point with positive-definite Hessian, refined to float64 precision."""

    name: str
    x: tuple[float, ...]
    f: float
    kind: str  # "global" or "local"


def rng(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose): no global RNG anywhere."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


def newton_refine(f: Callable[[Tensor], Tensor], guess: Sequence[float], name: str, tol: float = 1e-13) -> Tensor:
    """Polish an approximate minimiser with Newton's method in float64; check it is a strict minimum."""
    x = torch.tensor(guess, dtype=torch.float64)
    for _ in range(100):
        g = torch.autograd.functional.jacobian(f, x)
        h = torch.autograd.functional.hessian(f, x)
        dx = torch.linalg.solve(h, g)
        x = x - dx
        if float(dx.abs().max()) <= tol * max(1.0, float(x.abs().max())):
            break
    h = torch.autograd.functional.hessian(f, x)
    if float(torch.linalg.eigvalsh(h).min()) <= 0:
        raise RuntimeError(f"{name}: refined point {x.tolist()} is not a strict minimum")
    return x


class Problem:
    """Base class. Subclasses set ``name``, ``dim``, ``box`` and implement :meth:`loss`.

    Args:
        x0: a fixed start point (``dim`` numbers), or ``None`` for a start drawn uniformly
            from ``box`` with each member's own seed.
        box: ``[lo, hi]`` for every coordinate, or one ``[lo, hi]`` per coordinate.
        seeds: one seed per member of the batch.
        dtype: float64 by default so that convergence to 1e-12 is measurable.
    """

    name = "problem"
    minima: list[Minimum] = []
    f_star: float | None = None
    default_dtype = torch.float64  # used when the config's dtype is null
    eval_every = 0  # steps between evaluate() calls (0: never)
    samples: int | None = None  # training examples (data problems); epochs = step * batch / samples
    fixed: tuple[str, ...] = ()  # base-class arguments a subclass sets itself (not config keys), e.g. ("dim",)
    max_dim: int | None = None  # the largest problem.dim allowed (None: as memory allows), and why
    max_dim_reason = ""

    @classmethod
    def bytes_per_member(cls, dim: int, itemsize: int) -> int:
        """Memory one member takes while it runs (its point, gradient, optimizer state, temporaries),
        estimated before anything is built (harness/limits.py)."""
        return 16 * dim * itemsize

    def __init__(self, dim: int, x0=None, box=(-1.0, 1.0), grad_noise: float = 0.0, *, seeds: Sequence[int] = (0,), dtype=torch.float64):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ConfigError(f"problem.dim={dim!r} is not allowed; allowed: an integer >= 1")
        self.dim, self.seeds, self.dtype = dim, [int(s) for s in seeds], dtype
        ok = isinstance(grad_noise, (int, float)) and not isinstance(grad_noise, bool) and grad_noise >= 0
        if not ok:
            raise ConfigError(f"problem.grad_noise={grad_noise!r} is not allowed; allowed: a number >= 0")
        self.grad_noise = float(grad_noise)
        self.box = self._parse_box(box)
        self.x0 = None
        if x0 is not None:
            try:
                x0 = [float(v) for v in (x0 if isinstance(x0, (list, tuple)) else [x0])]
            except (TypeError, ValueError):
                raise ConfigError(f"problem.x0={x0!r} is not allowed; allowed: {dim} numbers or null") from None
            if len(x0) != dim:
                raise ConfigError(f"problem.x0={x0} has {len(x0)} numbers; allowed: {dim} numbers or null")
            self.x0 = x0

    def _parse_box(self, box) -> np.ndarray:
        try:
            b = np.asarray(box, dtype=float)
        except (TypeError, ValueError):
            b = np.zeros(0)
        if b.shape == (2,):
            b = np.tile(b, (self.dim, 1))
        if b.shape != (self.dim, 2) or not np.all(b[:, 0] < b[:, 1]):
            raise ConfigError(f"problem.box={box!r} is not allowed; allowed: [lo, hi] or {self.dim} pairs with lo < hi")
        return b

    @property
    def batch(self) -> int:
        return len(self.seeds)

    def init(self) -> Tensor:
        """Start points ``[B, dim]``: the fixed ``x0``, or uniform in ``box`` from each member's seed."""
        if self.x0 is not None:
            return torch.tensor(self.x0, dtype=self.dtype).expand(self.batch, self.dim).clone()
        lo, hi = self.box[:, 0], self.box[:, 1]
        pts = [lo + (hi - lo) * rng(s, "x0").random(self.dim) for s in self.seeds]
        return torch.tensor(np.stack(pts), dtype=self.dtype)

    def loss(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_and_grad(self, x: Tensor, t: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-member loss ``[B]`` and gradient ``[B, dim]`` at step ``t``. Members are
        independent, so the gradient of the summed loss is each member's own gradient."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            f = self.loss(x)
            (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    def update_grad(self) -> Callable[[Tensor, Tensor, int], Tensor] | None:
        """The gradient the optimizer's update uses, when it is not the exact one: here the
        exact gradient plus N(0, grad_noise^2 I) noise from each member's own generator."""
        if self.grad_noise == 0:
            return None
        gens = [torch.Generator().manual_seed(int(rng(s, "grad_noise").integers(2**62))) for s in self.seeds]

        def noisy(x: Tensor, g: Tensor, t: int) -> Tensor:
            noise = torch.stack([torch.randn(g.shape[1:], generator=gen, dtype=torch.float64, device="cpu") for gen in gens])
            return g + self.grad_noise * noise.to(g.device, g.dtype)  # drawn on the CPU: the same numbers on every device

        return noisy

    def evaluate(self, x: Tensor) -> dict[str, Tensor]:
        """Extra per-member metrics every ``eval_every`` steps (e.g. test accuracy)."""
        return {}

    @property
    def several_minima(self) -> bool:
        """Whether runs can end in different minima (then each run is tagged with its basin)."""
        return len(self.minima) > 1

    def nearest_minimum(self, x: Tensor, tol: float) -> list[Minimum | None]:
        """For each member, the listed minimum within ``tol`` (Euclidean) of ``x``, else ``None``."""
        if not self.minima:
            return [None] * x.shape[0]
        centres = torch.tensor([m.x for m in self.minima], dtype=torch.float64)
        d = torch.cdist(x.detach().to(torch.float64), centres)
        d = torch.nan_to_num(d, nan=float("inf"))
        dist, idx = d.min(dim=1)
        return [self.minima[i] if di <= tol else None for di, i in zip(dist.tolist(), idx.tolist())]


def minima_from_guesses(f: Callable[[Tensor], Tensor], guesses: dict[str, Sequence[float]], name: str) -> list[Minimum]:
    """Refine named guesses; label the lowest value(s) global (within 1e-12 relative) and the rest local."""
    pts = {k: newton_refine(f, g, f"{name}/{k}") for k, g in guesses.items()}
    vals = {k: float(f(x)) for k, x in pts.items()}
    best = min(vals.values())
    tol = 1e-12 * max(1.0, abs(best))
    return [
        Minimum(k, tuple(float(v) for v in pts[k]), vals[k], "global" if vals[k] - best <= tol else "local")
        for k in guesses
    ]
