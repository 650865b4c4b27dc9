"""Landscapes with several minima, for local-minimum studies: 2-D ones, and Rastrigin and
Styblinski-Tang in any dimension.

Each lists its minima in its default box, refined by Newton's method in float64, labelled
``global`` or ``local``; f* is the value at the global minimum.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor

from problems.base import Minimum, Problem, minima_from_guesses, newton_refine


class Landscape2D(Problem):
    """A fixed 2-D function ``f`` with a table of approximate minima to refine."""

    guesses: dict[str, tuple[float, float]] = {}
    default_box: tuple = (-5.0, 5.0)
    fixed = ("dim",)

    def __init__(self, x0=None, box=None, **kw):
        super().__init__(2, x0, self.default_box if box is None else box, **kw)
        self.minima = list(_refined(type(self)))
        self.f_star = min(m.f for m in self.minima)

    @staticmethod
    def f(x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, x: Tensor) -> Tensor:
        return self.f(x)


@functools.lru_cache
def _refined(cls: type[Landscape2D]) -> tuple[Minimum, ...]:
    return tuple(minima_from_guesses(cls.f, cls.guesses, cls.name))


class Himmelblau(Landscape2D):
    """f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2: four global minima, f* = 0."""

    name = "himmelblau"
    guesses = {
        "(3.000,2.000)": (3.0, 2.0),
        "(-2.805,3.131)": (-2.805118, 3.131312),
        "(-3.779,-3.283)": (-3.779310, -3.283186),
        "(3.584,-1.848)": (3.584428, -1.848126),
    }

    @staticmethod
    def f(x: Tensor) -> Tensor:
        a, b = x[..., 0], x[..., 1]
        return (a * a + b - 11) ** 2 + (a + b * b - 7) ** 2


class Separable(Problem):
    """f(x) = c·d + sum_i g(x_i) in any dimension d (``dim``): every minimum is a product of the 1-D
    minima of g, so minima are found by a rule instead of a search. The 1-D minima are refined by
    Newton's method in float64; a point's nearest minimum takes, in each coordinate, the nearest 1-D
    minimum (``nearest_1d``), and it is global when every coordinate is at g's global minimum.
    ``minima`` lists every minimum in the default box while there are at most ``LISTED`` of them
    (all of them in 2-D), else the global one only; basin tags use the rule in any case."""

    LISTED = 4096
    default_box: tuple = (-5.0, 5.0)
    constant = 0.0  # c

    def __init__(self, dim: int = 2, x0=None, box=None, **kw):
        super().__init__(dim, x0, self.default_box if box is None else box, **kw)
        self.m1 = _minima_1d(type(self))  # (x, g(x)) of every 1-D minimum in the default box, by x
        best = min(g for _, g in self.m1)
        self.g_star = best
        self.f_star = self.constant * dim + dim * best
        count = len(self.m1) ** dim
        points = itertools.product(range(len(self.m1)), repeat=dim) if count <= self.LISTED else [(self._global_index(),) * dim]
        self.minima = [self._minimum(idx) for idx in points]

    @staticmethod
    def g(x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    guesses_1d: tuple[float, ...] = ()

    @property
    def several_minima(self) -> bool:
        return len(self.m1) > 1

    def _global_index(self) -> int:
        return min(range(len(self.m1)), key=lambda i: self.m1[i][1])

    def _minimum(self, idx: tuple[int, ...]) -> Minimum:
        xs = tuple(self.m1[i][0] for i in idx)
        f = self.constant * self.dim + math.fsum(self.m1[i][1] for i in idx)
        kind = "global" if all(self.m1[i][1] == self.g_star for i in idx) else "local"
        return Minimum(self.label(xs), xs, f, kind)

    def label(self, xs: tuple[float, ...]) -> str:
        return "(" + ",".join(f"{v:.3f}" for v in xs) + ")"

    def nearest_1d(self, x: Tensor) -> Tensor:
        """Index into ``m1`` of each coordinate's nearest 1-D minimum."""
        centres = torch.tensor([m for m, _ in self.m1], dtype=torch.float64)
        return (x.to(torch.float64)[..., None] - centres).abs().argmin(-1)

    def nearest_minimum(self, x: Tensor, tol: float) -> list[Minimum | None]:
        x = torch.nan_to_num(x.detach().to(torch.float64), nan=float("inf"))
        idx = self.nearest_1d(x)
        centres = torch.tensor([m for m, _ in self.m1], dtype=torch.float64)[idx]
        dist = torch.linalg.vector_norm(x - centres, dim=-1)
        return [self._minimum(tuple(i)) if d <= tol else None for i, d in zip(idx.tolist(), dist.tolist())]

    def loss(self, x: Tensor) -> Tensor:
        return self.constant * x.shape[-1] + self.g(x).sum(-1)


@functools.lru_cache
def _minima_1d(cls: type[Separable]) -> tuple[tuple[float, float], ...]:
    out = []
    for guess in cls.guesses_1d:
        x = newton_refine(lambda v: cls.g(v).sum(), [guess], f"{cls.name}/1-D minimum near {guess}")
        out.append((float(x[0]), float(cls.g(x).sum())))
    return tuple(sorted(out))


class Rastrigin(Separable):
    """f(x) = 10 d + sum_i (x_i^2 - 10 cos(2 pi x_i)): global f* = 0 at the origin and a local minimum
    near every integer point; in [-5.12, 5.12]^d there are 11^d (121 in 2-D), all listed up to d = 3.
    The rule: a point's minimum is the one near its nearest integer point."""

    name = "rastrigin"
    default_box = (-5.12, 5.12)
    constant = 10.0
    guesses_1d = tuple(float(k) for k in range(-5, 6))

    @staticmethod
    def g(x: Tensor) -> Tensor:
        return x * x - 10.0 * torch.cos(2 * math.pi * x)

    def label(self, xs: tuple[float, ...]) -> str:
        return "(" + ",".join(str(round(v)) for v in xs) + ")"


class StyblinskiTang(Separable):
    """f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i): 2^d minima, global f* = -39.16616570377142 d at
    x_i = -2.9035 for all i; the other 2^d - 1 sign patterns (some x_i = 2.7468) are local.
    The rule: each coordinate's minimum is the nearer of -2.9035 and 2.7468."""

    name = "styblinski_tang"
    guesses_1d = (-2.903534, 2.746803)

    @staticmethod
    def g(x: Tensor) -> Tensor:
        return 0.5 * (x**4 - 16 * x**2 + 5 * x)


class SixHumpCamel(Landscape2D):
    """f(x, y) = (4 - 2.1 x^2 + x^4 / 3) x^2 + x y + (4 y^2 - 4) y^2 on [-3, 3] x [-2, 2]:
    two global minima f* = -1.0316... and four local ones."""

    name = "six_hump_camel"
    default_box = ((-3.0, 3.0), (-2.0, 2.0))
    guesses = {
        "(0.090,-0.713)": (0.0898, -0.7126),
        "(-0.090,0.713)": (-0.0898, 0.7126),
        "(-1.704,0.796)": (-1.7036, 0.7961),
        "(1.704,-0.796)": (1.7036, -0.7961),
        "(1.607,0.569)": (1.6071, 0.5687),
        "(-1.607,-0.569)": (-1.6071, -0.5687),
    }

    @staticmethod
    def f(x: Tensor) -> Tensor:
        a, b = x[..., 0], x[..., 1]
        return (4 - 2.1 * a**2 + a**4 / 3) * a**2 + a * b + (4 * b**2 - 4) * b**2
