"""Learning-rate schedules, per member: ``schedule=constant | step | cosine | warmup_cosine``.

The lr of update t (t = 0, 1, ...) is the lr a torch optimizer holds after t calls of its scheduler's
``step()``: the scheduler steps after each update, as in a torch training loop. The values come from
torch.optim.lr_scheduler itself, run on a stand-in optimizer with one param group per distinct base lr
of the batch, so each member's lr is torch's number for its own base lr, bit for bit:

- ``constant``: lr (no scheduler);
- ``step``: ``StepLR(step_size, gamma)``, lr * gamma^floor(t / step_size);
- ``cosine``: ``CosineAnnealingLR(T_max=steps, eta_min)``, from lr down to eta_min (default 0);
- ``warmup_cosine``: ``SequentialLR([LinearLR(start_factor, 1.0, total_iters=warmup_steps),
  CosineAnnealingLR(T_max=steps - warmup_steps, eta_min)], milestones=[warmup_steps])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from optimizers.base import ConfigError

KEYS = {
    "constant": ("name",),
    "step": ("name", "step_size", "gamma"),
    "cosine": ("name", "eta_min"),
    "warmup_cosine": ("name", "warmup_steps", "start_factor", "eta_min"),
}


def _int(key: str, v, lo: int, hi: int | None, allowed: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        raise ConfigError(f"schedule.{key}={v!r} is not allowed; allowed: {allowed}")
    return v


def _num(key: str, v, ok: Callable[[float], bool], allowed: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not ok(float(v)):
        raise ConfigError(f"schedule.{key}={v!r} is not allowed; allowed: {allowed}")
    return float(v)


def validate(s, steps: int) -> dict:
    """The schedule config, checked: one line naming the key, the value and what is allowed."""
    if not isinstance(s, dict) or s.get("name") not in KEYS:
        name = s.get("name") if isinstance(s, dict) else s
        raise ConfigError(f"schedule={name!r} is not allowed; allowed: {', '.join(KEYS)}")
    for k in s:
        if k not in KEYS[s["name"]]:
            raise ConfigError(f"unknown key 'schedule.{k}' for schedule={s['name']}; allowed: {', '.join(KEYS[s['name']][1:]) or 'none'}")
    out = {"name": s["name"]}
    if s["name"] == "step":
        out["step_size"] = _int("step_size", s.get("step_size"), 1, None, "an integer >= 1 (updates between lr drops)")
        out["gamma"] = _num("gamma", s.get("gamma"), lambda g: 0 < g <= 1, "a number in (0, 1]")
    if s["name"] in ("cosine", "warmup_cosine"):
        out["eta_min"] = _num("eta_min", s.get("eta_min", 0.0), lambda e: e >= 0, "a number >= 0")
    if s["name"] == "warmup_cosine":
        out["warmup_steps"] = _int("warmup_steps", s.get("warmup_steps"), 1, steps - 1, f"an integer 1..{steps - 1} (less than steps={steps})")
        out["start_factor"] = _num("start_factor", s.get("start_factor"), lambda f: 0 < f <= 1, "a number in (0, 1]")
    return out


def _scheduler(s: dict, opt: torch.optim.Optimizer, steps: int):
    sched = torch.optim.lr_scheduler
    if s["name"] == "step":
        return sched.StepLR(opt, step_size=s["step_size"], gamma=s["gamma"])
    if s["name"] == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=steps, eta_min=s["eta_min"])
    w = s["warmup_steps"]
    warm = sched.LinearLR(opt, start_factor=s["start_factor"], end_factor=1.0, total_iters=w)
    return sched.SequentialLR(opt, [warm, sched.CosineAnnealingLR(opt, T_max=steps - w, eta_min=s["eta_min"])], milestones=[w])


def lr_stream(s: dict, base_lrs: list[float], steps: int) -> Iterator[list[float]] | None:
    """Per update t = 0, 1, ...: every member's lr; None for ``constant``."""
    if s["name"] == "constant":
        return None
    distinct = sorted(set(base_lrs))
    where = [distinct.index(lr) for lr in base_lrs]
    stand_in = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in distinct], lr=distinct[0])
    scheduler = _scheduler(s, stand_in, steps)

    def stream() -> Iterator[list[float]]:
        while True:
            lrs = [g["lr"] for g in stand_in.param_groups]
            yield [lrs[i] for i in where]
            stand_in.step()  # no gradients: changes nothing, but keeps torch's step-order check quiet
            scheduler.step()

    return stream()


def scheduled(step: Callable, lrs: Iterator[list[float]], set_lrs: Callable[[list[float]], None]) -> Callable:
    """``step`` with each member's lr set for the update it is about to make."""

    def wrapped(x, g):
        set_lrs(next(lrs))
        return step(x, g)

    return wrapped
