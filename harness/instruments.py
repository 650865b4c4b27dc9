"""Instruments: curvature and gradient noise of every member of a batch at once, every N steps.

``instruments=curvature`` (or ``noise``, ``full``; ``none`` is the default) measures, every
``instruments.every`` steps, at step 0 and at each member's last step:

- ``sharpness``: lambda_max(H), the largest eigenvalue of the Hessian of the training loss (the whole
  training split on data problems) at the member's point. Lanczos with full reorthogonalisation on
  exact Hessian-vector products (double backward), every member at once (members are independent, so
  the Hessian of the summed loss is block-diagonal), warm-started from the member's previous Ritz
  vector; it stops when every member's Ritz residual ||H v - theta v|| <= ``tol`` |theta| (theta's own
  error is then about tol^2 theta^2 / gap, the gap to the next eigenvalue), or after ``iters`` products
  (at most the dimension, where the Krylov space is everything and the answer exact). Up to ``SMALL``
  dimensions (the landscapes) the whole Hessian is built instead, from d products.
- ``preconditioned_sharpness``: lambda_max(P^-1 H) = lambda_max(P^-1/2 H P^-1/2), with P the diagonal
  preconditioner of the member's last update (``Optimizer.preconditioner``: Adam, AdamW, RMSprop,
  AdaGrad; Cohen et al., 2022); NaN at step 0, before any update. Other optimizers do not record it.
- ``noise_scale``: the simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al.,
  2018), in examples: G is the training loss's gradient and Sigma the covariance of one training
  example's gradient over the training split (the population the mini-batches are drawn from, so no
  n/(n-1)). Per-example gradients come from torch.func (vmap over examples of grad), in chunks. On a
  problem with ``grad_noise`` sigma instead, Sigma = sigma^2 I. Problems with neither record none.

On a data problem ``instruments.examples=N`` measures both on a fixed sample of N training examples
(the same for every member and measurement) instead of the whole training split: N/n of the cost, and
the Hessian and gradient noise of that sample's loss (Cockpit measures on the step's mini-batch).

A member's threshold (harness/theory.py ``sharpness_threshold``) comes from its own optimizer and
lr; :func:`summary` turns the curves into ``stability_threshold`` and ``edge_ratio``:
the median, over the last third of the run's measurements, of the (preconditioned, for the adaptive
optimizers) sharpness divided by the threshold. Near 1 a run sits at the edge of stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optimizers.base import ConfigError

MEASURES = ("sharpness", "preconditioned_sharpness", "noise_scale")
KEYS = ("name", "every", "measures", "iters", "tol", "examples")
SMALL = 8  # up to this dimension the whole Hessian is built (d products) instead of Lanczos
EXAMPLE_BYTES = 64 * 2**20  # per-example gradients held at once: the examples go through in chunks of this


@dataclass(frozen=True)
class Settings:
    name: str
    every: int
    measures: tuple[str, ...]
    iters: int
    tol: float
    examples: int | None = None  # data problems: measure on a fixed sample of this many training examples (None: all)


def settings(section) -> Settings | None:
    """The validated ``instruments`` section; None when it is absent or ``name: none``."""
    if section is None or (isinstance(section, dict) and section.get("name", "none") == "none"):
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"instruments={section!r} is not allowed; allowed: none, curvature, noise or full")
    for k in section:
        if k not in KEYS:
            raise ConfigError(f"unknown key 'instruments.{k}'; allowed: {', '.join(KEYS)}")
    every, iters, tol, measures = section.get("every"), section.get("iters", 20), section.get("tol", 1e-3), section.get("measures")
    if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise ConfigError(f"instruments.every={every!r} is not allowed; allowed: an integer >= 1 (steps between measurements)")
    if not (isinstance(iters, int) and not isinstance(iters, bool) and iters >= 1):
        raise ConfigError(f"instruments.iters={iters!r} is not allowed; allowed: an integer >= 1 (Hessian-vector products per measurement)")
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0 < tol < 1):
        raise ConfigError(f"instruments.tol={tol!r} is not allowed; allowed: a number in (0, 1)")
    if not (isinstance(measures, (list, tuple)) and measures and all(m in MEASURES for m in measures)):
        raise ConfigError(f"instruments.measures={measures!r} is not allowed; allowed: a non-empty list of {', '.join(MEASURES)}")
    examples = section.get("examples")
    if not (examples is None or (isinstance(examples, int) and not isinstance(examples, bool) and examples >= 2)):
        raise ConfigError(f"instruments.examples={examples!r} is not allowed; allowed: null (the whole training split) or an integer >= 2")
    return Settings(str(section.get("name")), every, tuple(dict.fromkeys(measures)), iters, float(tol), examples)


def check_problem(s: Settings, problem) -> None:
    """What the settings ask of the problem: ``examples`` needs a training split at least that large."""
    n = getattr(problem, "samples", None)
    if s.examples is not None and (n is None or s.examples > n):
        allowed = f"null or an integer 2..{n} (the training split's size)" if n else "null (a problem without data has no examples)"
        raise ConfigError(f"instruments.examples={s.examples} is not allowed for problem {problem.name}; allowed: {allowed}")


def sample_rows(problem, examples: int | None) -> Tensor:
    """The training rows the instruments measure on: all, or a fixed sample of ``examples`` of them
    (the same for every member and every measurement, so curves compare), in order."""
    n = problem.samples
    if examples is None or examples >= n:
        return torch.arange(n, device=problem.X.device)
    rows = np.sort(np.random.default_rng([7, n]).choice(n, examples, replace=False))
    return torch.from_numpy(rows).to(problem.X.device)


def hessian_vector_products(loss: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[Tensor], Tensor]:
    """``v [B, d] -> H v`` per member, H the Hessian of ``loss`` (``[B]``) at ``x``: one forward and
    backward pass with its graph kept, then one double-backward pass per product (on the 64-64 tanh MLP,
    three members, one thread: 6.0 ms a product against 4.9 ms a gradient; torch.func's vjp of grad took
    7.8 ms)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(x).sum(), x, create_graph=True)
    if not g.requires_grad:  # a loss linear in x: H = 0
        return torch.zeros_like

    def hvp(v: Tensor) -> Tensor:
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv

    return hvp


def lanczos_top(hvp: Callable[[Tensor], Tensor], v0: Tensor, iters: int, tol: float) -> tuple[Tensor, Tensor]:
    """The largest eigenvalue ``[B]`` of each member's symmetric operator ``hvp``, its Ritz vector
    ``[B, d]``: Lanczos with full reorthogonalisation from ``v0``. A member whose
    products are not finite (a diverged point) gets NaN."""
    B, d = v0.shape
    m = min(iters, d)
    tiny = torch.finfo(v0.dtype).tiny ** 0.5
    Q = v0.new_zeros(m, B, d)
    alpha = torch.zeros(B, m, dtype=torch.float64, device=v0.device)
    beta = torch.zeros(B, m, dtype=torch.float64, device=v0.device)
    q = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True).clamp_min(tiny)
    theta = torch.full((B,), math.nan, dtype=torch.float64, device=v0.device)
    vec, done, bad = q, torch.zeros(B, dtype=torch.bool, device=v0.device), torch.zeros(B, dtype=torch.bool, device=v0.device)
    j = 0
    for j in range(m):
        Q[j] = q
        w = hvp(q)
        bad |= ~torch.isfinite(w).all(1)
        w = torch.where(bad[:, None], 0.0, w)
        alpha[:, j] = (w * q).sum(1).to(torch.float64)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - torch.einsum("jb,jbd->bd", torch.einsum("jbd,bd->jb", Q[: j + 1], w), Q[: j + 1])
        b = torch.linalg.vector_norm(w, dim=1)
        T = torch.diag_embed(alpha[:, : j + 1]) + torch.diag_embed(beta[:, :j], 1) + torch.diag_embed(beta[:, :j], -1)
        evals, evecs = torch.linalg.eigh(T)
        top, s = evals[:, -1], evecs[:, :, -1]
        fresh = ~done
        theta = torch.where(fresh, top, theta)
        vec = torch.where(fresh[:, None], torch.einsum("bj,jbd->bd", s.to(v0.dtype), Q[: j + 1]), vec)
        done |= (b.to(torch.float64) * s[:, -1].abs() <= tol * top.abs()) | (b <= tiny) | bad
        if bool(done.all()):
            break
        beta[:, j] = b.to(torch.float64)
        q = torch.where((b > tiny)[:, None], w / b.clamp_min(tiny)[:, None], 0.0)
    return torch.where(bad, math.nan, theta), vec


def dense_top(hvp: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The largest eigenvalue ``[B]`` from the whole matrix: d products, then ``eigvalsh``; NaN where a
    product is not finite."""
    B, d = x.shape
    basis = torch.eye(d, dtype=x.dtype, device=x.device).unsqueeze(1).expand(d, B, d)
    cols = torch.stack([hvp(e) for e in basis])
    H = cols.permute(1, 2, 0).to(torch.float64)  # [B, d, d]: column k is H e_k
    bad = ~torch.isfinite(H).flatten(1).all(1)
    H = torch.where(bad[:, None, None], 0.0, H)
    return torch.where(bad, math.nan, torch.linalg.eigvalsh(0.5 * (H + H.transpose(1, 2)))[:, -1])


class Probe:
    """The runner's probe (``runner.run(probes=...)``): ``probe(x)`` gives each requested measure ``[B]``.

    ``preconditioner()`` gives the optimizer's current diagonal P (one ``[B, d]`` tensor in a list) or
    None; it is None itself for an optimizer without one."""

    def __init__(self, s: Settings, problem, preconditioner: Callable[[], list[Tensor] | None] | None = None):
        self.s, self.problem, self.preconditioner = s, problem, preconditioner
        self.measures = [m for m in s.measures if self._applies(m)]
        self.rows = sample_rows(problem, s.examples) if getattr(problem, "samples", None) else None
        if s.examples is None or self.rows is None:
            self.loss = problem.loss  # the training loss itself
        else:
            self.loss = lambda z: problem.loss_on(z, self.rows.expand(z.shape[0], -1))
        self.vectors: dict[str, Tensor] = {}  # warm starts: each measure's last Ritz vectors
        self.random: Tensor | None = None  # each member's first start (and after a NaN)

    def _applies(self, m: str) -> bool:
        if m == "preconditioned_sharpness":
            return self.preconditioner is not None
        if m == "noise_scale":
            return hasattr(self.problem, "example_losses") or self.problem.grad_noise > 0
        return True

    def _start(self, key: str, x: Tensor) -> Tensor:
        """The member's previous Ritz vector, or (first, or after a NaN) a fixed random direction from its seed."""
        if self.random is None:
            gens = [np.random.default_rng([int(s), 7]) for s in self.problem.seeds]
            r = torch.tensor(np.stack([g.standard_normal(x.shape[1]) for g in gens]), dtype=x.dtype, device=x.device)
            self.random = r / torch.linalg.vector_norm(r, dim=1, keepdim=True)
        r, prev = self.random, self.vectors.get(key)
        if prev is None:
            return r
        ok = torch.isfinite(prev).all(1) & (torch.linalg.vector_norm(prev, dim=1) > 0)
        return torch.where(ok[:, None], prev, r)

    def _top(self, key: str, x: Tensor, hvp: Callable[[Tensor], Tensor]) -> Tensor:
        if x.shape[1] <= SMALL:
            return dense_top(hvp, x)
        theta, vec = lanczos_top(hvp, self._start(key, x), self.s.iters, self.s.tol)
        self.vectors[key] = vec.detach()
        return theta

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        buffers = getattr(self.problem, "buffers", None)  # a network's running statistics: measuring must not move them
        saved = {k: v.clone() for k, v in buffers.items()} if isinstance(buffers, dict) else None
        try:
            return self._measure(x)
        finally:
            if saved is not None:
                for k, v in saved.items():
                    self.problem.buffers[k].copy_(v)

    def _measure(self, x: Tensor) -> dict[str, Tensor]:
        finite = torch.isfinite(x).all(1)
        x = torch.where(finite[:, None], x, 0.0)  # a diverged member is measured at 0 and reported NaN
        out: dict[str, Tensor] = {}
        hvp = None
        if "sharpness" in self.measures or "preconditioned_sharpness" in self.measures:
            hvp = hessian_vector_products(self.loss, x)
        if "sharpness" in self.measures:
            out["sharpness"] = self._top("sharpness", x, hvp)
        if "preconditioned_sharpness" in self.measures:
            out["preconditioned_sharpness"] = self._preconditioned(x, hvp)
        if "noise_scale" in self.measures:
            out["noise_scale"] = noise_scale(self.problem, x, self.rows)
        return {k: torch.where(finite, v.to(torch.float64), math.nan) for k, v in out.items()}

    def _preconditioned(self, x: Tensor, hvp: Callable[[Tensor], Tensor]) -> Tensor:
        P = self.preconditioner()
        if P is None:
            return torch.full((x.shape[0],), math.nan, dtype=torch.float64, device=x.device)
        p = P[0].reshape(x.shape).to(x.dtype)
        ok = (p > 0).all(1) & torch.isfinite(p).all(1)
        s = torch.where(ok[:, None], p, 1.0).rsqrt()
        theta = self._top("preconditioned_sharpness", x, lambda v: s * hvp(s * v))
        return torch.where(ok, theta, math.nan)


def noise_scale(problem, x: Tensor, rows: Tensor | None = None) -> Tensor:
    """B_simple = tr(Sigma) / |G|^2 per member (see the module's docstring), over the training ``rows`` (all by default)."""
    if not hasattr(problem, "example_losses"):
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(problem.loss(xx).sum(), xx)
        return (problem.dim * problem.grad_noise**2 / (g.to(torch.float64) ** 2).sum(1))
    rows = torch.arange(problem.samples, device=problem.X.device) if rows is None else rows
    n, (B, d) = len(rows), x.shape
    chunk = max(1, min(n, EXAMPLE_BYTES // max(1, B * d * x.element_size())))
    sq = torch.zeros(B, dtype=torch.float64, device=x.device)
    G = torch.zeros(B, d, dtype=torch.float64, device=x.device)
    for part in rows.split(chunk):
        gi = per_example_gradients(problem, x, part)  # [k, B, d]
        sq += (gi.to(torch.float64) ** 2).sum((0, 2))
        G += gi.to(torch.float64).sum(0)
    G /= n
    g2 = (G**2).sum(1)
    return (sq / n - g2).clamp_min(0.0) / g2


def per_example_gradients(problem, x: Tensor, rows: Tensor) -> Tensor:
    """``[k, B, d]``: each member's gradient of each example's loss, ``torch.func.vmap`` over the
    examples of ``torch.func.grad`` (cost linear in k); one autograd pass per example where torch.func
    refuses the problem's code. (Batch norm in training mode couples a chunk's examples: its
    "per-example" gradients, and so its noise scale, are those of the examples normalised together.)"""
    x = x.detach()

    def one(r: Tensor) -> Tensor:
        return torch.func.grad(lambda z: problem.example_losses(z, r[None]).sum())(x)

    try:
        return torch.func.vmap(one)(rows)
    except RuntimeError:  # not vmappable, or torch.func refuses it (batch norm's in-place running statistics): autograd
        with torch.enable_grad():
            xx = x.requires_grad_(True)
            losses = problem.example_losses(xx, rows)
            return torch.stack([torch.autograd.grad(losses[:, j].sum(), xx, retain_graph=True)[0] for j in range(len(rows))])


def summary(sparse: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float | None, preconditioned: bool) -> dict[str, float]:
    """A member's ``stability_threshold`` and ``edge_ratio`` from its measured curves (``key -> (steps,
    values)``, up to its stop); ``final_<key>`` and ``max_<key>`` are harness/metrics.py's ``curve_summaries``."""
    out: dict[str, float] = {}
    if threshold is None or not math.isfinite(threshold) or threshold <= 0:
        return out
    out["stability_threshold"] = float(threshold)
    key = "preconditioned_sharpness" if preconditioned else "sharpness"
    if key in sparse:
        steps, vals = sparse[key]
        late = vals[steps >= (2 * steps[-1]) / 3] if len(steps) else vals
        late = late[np.isfinite(late)]
        if late.size:
            out["edge_ratio"] = float(np.median(late) / threshold)
    return out
