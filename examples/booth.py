"""Booth's function, f(x, y) = (x + 2y - 7)^2 + (2x + y - 5)^2: one minimum, f* = 0 at (1, 3)."""


from problems.base import Minimum, Problem


class Booth(Problem):
    name = "booth"
    fixed = ("dim",)  # always 2-D: not a config key

    def __init__(self, x0=None, box=(-10.0, 10.0), **kw):  # kw: seeds, dtype, grad_noise (from the harness)
        super().__init__(2, x0, box, **kw)
        self.f_star = 0.0
        self.minima = [Minimum("(1,3)", (1.0, 3.0), 0.0, "global")]

    def loss(self, x):  # x: [B, 2], one row per member -> [B]
        a, b = x[..., 0], x[..., 1]
        return (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2
