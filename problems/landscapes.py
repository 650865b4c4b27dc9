"""2-D landscapes with several minima, for local-minimum studies.

Each lists every minimum in its default box, refined by Newton's method in float64,
labelled ``global`` or ``local``; f* is the value at the global minimum.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from problems.base import Minimum, Problem, minima_from_guesses


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


class Rastrigin(Landscape2D):
    """f(x) = 20 + sum_i x_i^2 - 10 cos(2 pi x_i): global f* = 0 at the origin and a local
    minimum near every integer point; the 121 in the box [-5.12, 5.12]^2 are listed."""

    name = "rastrigin"
    default_box = (-5.12, 5.12)
    guesses = {f"({i},{j})": (float(i), float(j)) for i in range(-5, 6) for j in range(-5, 6)}

    @staticmethod
    def f(x: Tensor) -> Tensor:
        return 20.0 + (x * x - 10.0 * torch.cos(2 * math.pi * x)).sum(-1)


class StyblinskiTang(Landscape2D):
    """f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i): four minima; global f* = -78.332... at
    (-2.9035, -2.9035), locals where one or both coordinates sit at 2.7468."""

    name = "styblinski_tang"
    guesses = {
        "(-2.904,-2.904)": (-2.903534, -2.903534),
        "(2.747,-2.904)": (2.746803, -2.903534),
        "(-2.904,2.747)": (-2.903534, 2.746803),
        "(2.747,2.747)": (2.746803, 2.746803),
    }

    @staticmethod
    def f(x: Tensor) -> Tensor:
        return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1)


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
