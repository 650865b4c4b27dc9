"""The optimisation loop: every member of a batch steps together until its own stopping rule fires.

At each step t = 0, 1, ..., steps (step 0 is the start point):
  1. evaluate loss and gradient at x_t for all members and record them;
  2. decide, per still-active member, whether it stops here and why (first rule wins):
     diverged (non-finite, or exploded), target_loss, grad_tol, x_tol (the last update
     moved x by <= x_tol), or max_steps when t == steps;
  3. if every member has stopped, end; otherwise take one update, freezing stopped members.
Stopped members keep their last point, so one member's divergence never touches another.

Cost: the gradient evaluations a member has used to reach step t (``BatchResult.grad_evals``).
An update takes one gradient (possibly a mini-batch one) unless the step says otherwise through
``step_evals`` (a closure-based torch.optim class such as LBFGS: every closure call counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

# Stop reasons, in the order they are tested.
REASONS = ("running", "diverged", "target_loss", "grad_tol", "x_tol", "max_steps")
CONVERGED = {"target_loss", "grad_tol", "x_tol"}


@dataclass(frozen=True)
class StopRules:
    """Stopping rules; each tolerance is optional (``None`` switches it off)."""

    steps: int
    grad_tol: float | None = None
    x_tol: float | None = None
    target_loss: float | None = None
    divergence_factor: float = 1e6


@dataclass
class BatchResult:
    """Curves of a batch of members. Row t of each curve is step t; rows past a member's
    ``stop_step`` are not part of its run."""

    loss: np.ndarray  # [T+1, B]
    grad_norm: np.ndarray  # [T+1, B]
    trajectory: np.ndarray | None  # [T+1, B, d] for d <= 2
    stop_step: np.ndarray  # [B]
    reason: list[str]
    elapsed: np.ndarray  # [T+1] seconds since the start, shared by the batch
    final_x: np.ndarray  # [B, d]
    started_at: float  # time.time() at step 0
    evals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # key -> (steps [E], values [E, B])
    # cumulative gradient evaluations to reach step t, [T+1, B]: row 0 is 0, row t+1 adds what the
    # update at step t asked for; None when that is 1 per update for everybody (then it is t)
    grad_evals: np.ndarray | None = None

    def grad_evals_of(self, i: int, n: int) -> np.ndarray:
        """Member ``i``'s cumulative gradient evaluations at steps 0 .. n-1."""
        if self.grad_evals is None:
            return np.arange(n, dtype=np.float64)
        return self.grad_evals[:n, i].astype(np.float64)


Step = Callable[[Tensor, Tensor], Tensor]  # (x_t, grad_t) -> x_{t+1}


def run(
    loss_and_grad: Callable[[Tensor, int], tuple[Tensor, Tensor]],
    x: Tensor,
    step: Step,
    rules: StopRules,
    f_ref: float | None = None,
    update_grad: Callable[[Tensor, Tensor, int], Tensor] | None = None,
    evaluate: Callable[[Tensor], dict[str, Tensor]] | None = None,
    eval_every: int = 0,
    step_evals: Callable[[], int | np.ndarray] | None = None,
    probes: list[tuple[int, Callable[[Tensor], dict[str, Tensor]]]] = (),
) -> BatchResult:
    """Run the batch ``x[B, d]`` under ``rules``. ``f_ref`` (f* when known, else 0) sets the
    divergence scale: a member diverges when |loss - f_ref| > factor * max(1, |loss_0 - f_ref|).

    ``update_grad(x, g, t)`` gives the gradient the update uses (a mini-batch or noisy one);
    the recorded loss and gradient, and the stopping rules, use the exact ones.
    ``evaluate(x)`` (e.g. test accuracy) runs every ``eval_every`` steps and at the last step.
    ``step_evals()``, called after each update, gives the gradient evaluations that update asked
    for (one number for all members, or one per member); without it each update counts 1.
    ``probes``: more ``(every, measure)`` pairs like ``(eval_every, evaluate)``, each on its own
    schedule (the instruments: harness/instruments.py); every key a probe returns is a sparse curve."""
    T, (B, d) = rules.steps, x.shape
    ref = 0.0 if f_ref is None else f_ref
    dev = x.device  # the curves stay where x is until the end: no copy to the host per step
    loss = torch.empty(T + 1, B, dtype=torch.float64, device=dev)
    gnorm = torch.empty(T + 1, B, dtype=torch.float64, device=dev)
    traj = torch.empty(T + 1, B, d, dtype=torch.float64, device=dev) if d <= 2 else None
    elapsed = np.zeros(T + 1)
    code = np.zeros(B, dtype=np.int64)  # index into REASONS; 0 while running
    stop_step = np.full(B, T, dtype=np.int64)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    all_active = True
    small_step = None
    limit = None
    probes = ([(eval_every, evaluate)] if evaluate is not None else []) + list(probes)
    probe_steps: list[list[int]] = [[] for _ in probes]
    probe_vals: list[dict[str, list]] = [{} for _ in probes]
    cum = np.zeros((T + 1, B), dtype=np.int64) if step_evals is not None else None
    started_at, t0 = time.time(), time.perf_counter()
    t = 0
    for t in range(T + 1):
        f, g = loss_and_grad(x, t)
        f = f.to(torch.float64)
        gn = torch.linalg.vector_norm(g if g.dim() == 2 else g.flatten(1), dim=1).to(torch.float64)
        loss[t], gnorm[t] = f, gn
        if traj is not None:
            traj[t] = x
        if limit is None:
            limit = rules.divergence_factor * torch.clamp(torch.abs(f - ref), min=1.0)
        # 1. one fused test per rule; NaN and inf fail "<= limit", so they count as diverged
        hits = [(1, torch.logical_not(torch.abs(f - ref) <= limit))]
        if rules.target_loss is not None:
            hits.append((2, f <= rules.target_loss))
        if rules.grad_tol is not None:
            hits.append((3, gn <= rules.grad_tol))
        if small_step is not None:
            hits.append((4, small_step))
        any_hit = hits[0][1]
        for _, h in hits[1:]:
            any_hit = any_hit | h
        # 2. bookkeeping only on the (rare) steps where some active member stops
        if t == T or bool((any_hit if all_active else any_hit & active).any()):
            running = active.cpu().numpy()
            why = np.where(running, 5 if t == T else 0, 0)
            for c, h in reversed(hits):  # reversed so the first rule in the list wins
                why = np.where(h.cpu().numpy() & running, c, why)
            newly = why > 0
            code[newly], stop_step[newly] = why[newly], t
            active = torch.from_numpy(code == 0).to(dev)
            all_active = False
        done = not all_active and not bool(active.any())
        for (every, measure), steps_, vals_ in zip(probes, probe_steps, probe_vals):
            if t == T or done or (every and t % every == 0):
                steps_.append(t)
                for k, v in measure(x).items():
                    vals_.setdefault(k, []).append(v.detach().to(torch.float64))
        elapsed[t] = time.perf_counter() - t0
        if done:
            break
        # 3. one update for everyone; stopped members keep their point
        x_new = step(x, g if update_grad is None else update_grad(x, g, t))
        if not all_active:
            x_new = torch.where(active.view(-1, *([1] * (x.dim() - 1))), x_new, x)
        if cum is not None:  # stopped members' updates are thrown away: they cost nothing
            cum[t + 1] = cum[t] + np.where(active.cpu().numpy(), np.asarray(step_evals(), dtype=np.int64), 0)
        if rules.x_tol is not None:
            small_step = torch.linalg.vector_norm((x_new - x).flatten(1), dim=1) <= rules.x_tol
        x = x_new
    n = t + 1
    return BatchResult(
        loss=loss[:n].cpu().numpy(),
        grad_norm=gnorm[:n].cpu().numpy(),
        trajectory=None if traj is None else traj[:n].cpu().numpy(),
        stop_step=stop_step,
        reason=[REASONS[c] for c in code.tolist()],
        elapsed=elapsed[:n],
        final_x=x.detach().to(torch.float64).cpu().numpy(),
        started_at=started_at,
        evals={k: (np.array(steps_), torch.stack(v).cpu().numpy()) for steps_, vals_ in zip(probe_steps, probe_vals) for k, v in vals_.items()},
        grad_evals=None if cum is None else cum[:n],
    )
