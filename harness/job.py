"""A job: validate, run every batch, compute statistics, log one MLflow run per member."""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import yaml
from omegaconf import DictConfig

from harness import instruments, metrics, runner, schedules, theory
from harness.plan import Batch, batches, effective_lr, measured
from harness.stats import member_stats
from harness.store import (
    CODE_HASH,
    CONFIG_HASH,
    RunRecord,
    Tracker,
    check_reachable,
    experiment_name,
    resolve_uri,
)
from optimizers.torch_batched import batched_step

log = logging.getLogger("harness")
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class MemberResult:
    name: str
    config: dict
    loss: np.ndarray
    grad_norm: np.ndarray
    trajectory: np.ndarray | None
    elapsed: np.ndarray
    started_at: float
    reason: str
    summary: dict[str, float]
    tags: dict[str, str]
    epoch_per_step: float | None = None  # data problems: batch / samples
    sparse: dict = None  # key -> (steps, values): evaluations such as test accuracy
    run_id: str | None = None
    grad_evals: np.ndarray | None = None  # cumulative gradient evaluations per step, where not one per update


def held_out(steps: np.ndarray, vals: np.ndarray, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """A member's evaluations up to its stop step, ending with its stop step: a member that stopped keeps
    its point, so the batch's next evaluation after the stop (there always is one, at the batch's last
    step) is the value at the point it stopped at."""
    keep = steps <= stop
    s, v = steps[keep], vals[keep]
    after = np.flatnonzero(steps >= stop)
    if after.size and not (s.size and s[-1] == stop):
        s, v = np.append(s, stop), np.append(v, vals[after[0]])
    return s, v


def _functional_step(batch: Batch, x: torch.Tensor):
    """(step, set_lrs, preconditioner): the update, the lr setter, and the optimizer's current diagonal
    preconditioner for the instruments (None for an optimizer without one)."""
    state = batch.optimizer.init([x])

    def step(x, g):
        nonlocal state
        (x_new,), state = batch.optimizer.update([g], state, [x])
        return x_new

    def set_lrs(lrs: list[float]) -> None:
        lr = batch.optimizer.hyperparams["lr"]
        lr.copy_(torch.tensor(lrs, dtype=lr.dtype))

    if batch.optimizer.preconditioner is None:
        return step, set_lrs, None
    return step, set_lrs, lambda: batch.optimizer.preconditioner(state)


def _torch_step(batch: Batch, x: torch.Tensor):
    """A torch.optim optimizer driven through the same loop (one member, as for a class that
    couples elements). The closure hands
    over the gradient the loop already has on its first call, and re-evaluates on later
    calls (LBFGS's line search). Every closure call counts as a gradient evaluation, the first
    one too, as torch counts them (LBFGS's ``state['func_evals']``); the third function returned
    gives the count of the last update (for ``runner.run``'s ``step_evals``)."""
    p = x.detach().clone().requires_grad_(True)
    opt = batch.torch_class([p], **batch.torch_kwargs[0])
    calls = [0]

    def step(x, g):
        fresh = [True]

        def closure():
            calls[0] += 1
            if fresh[0]:
                fresh[0] = False
                p.grad = g.detach().clone()
                return batch.problem.loss(p.detach()).sum()
            opt.zero_grad()
            f = batch.problem.loss(p).sum()
            f.backward()
            return f

        with torch.no_grad():
            p.copy_(x)
        opt.step(closure)
        return p.detach().clone()

    def set_lrs(lrs: list[float]) -> None:
        opt.param_groups[0]["lr"] = lrs[0]

    def step_evals() -> int:
        n, calls[0] = calls[0], 0
        return n

    return step, set_lrs, step_evals


ONE_THREAD_BELOW = 2**18  # parameter elements of a batch below which its ops run on one thread


@contextmanager
def threads_for(x: torch.Tensor, data: bool):
    """One intra-op thread for a batch of small tensors on a problem without a dataset. torch hands an
    element-wise op of a few thousand elements (sqrt, exp) to its OpenMP threads, and on a busy machine
    that hand-off costs milliseconds per op where one thread takes microseconds (``bench/threads.py``
    measures it). A problem with a dataset (``data``: the CNN's convolutions over a mini-batch) keeps
    torch's threads: its work per step grows with the examples, not the parameters."""
    before = torch.get_num_threads()
    if x.numel() < ONE_THREAD_BELOW and not data:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_batch(batch: Batch) -> runner.BatchResult:
    """Run a batch's members together; on a device other than the CPU, every tensor made on the way lives there."""
    if batch.device == "cpu":  # no device context: it would add a Python call to every torch operation
        return _run_batch(batch)
    with torch.device(batch.device):
        return _run_batch(batch)


def _run_batch(batch: Batch) -> runner.BatchResult:
    x = batch.problem.init()
    with threads_for(x, data=getattr(batch.problem, "samples", None) is not None):
        return _run(batch, x)


def _run(batch: Batch, x: torch.Tensor) -> runner.BatchResult:
    step_evals = precond = None  # one gradient evaluation per update, unless the step counts its own
    if batch.torch_class is None:
        step, set_lrs, precond = _functional_step(batch, x)
    elif len(batch.members) > 1:  # an element-wise class: all members in one step() (optimizers/torch_batched.py)
        step, set_lrs = batched_step(batch.torch_class, batch.torch_kwargs, x)
    else:
        step, set_lrs, step_evals = _torch_step(batch, x)
    lrs = schedules.lr_stream(batch.schedule or {"name": "constant"}, [float(effective_lr(c)) for c in batch.members], batch.rules.steps)
    if lrs is not None:
        step = schedules.scheduled(step, lrs, set_lrs)
    p = batch.problem
    probes = [] if batch.instruments is None else [(batch.instruments.every, instruments.Probe(batch.instruments, p, precond))]
    with torch.no_grad():
        return runner.run(p.loss_and_grad, x, step, batch.rules, p.f_star, p.update_grad(), p.evaluate, p.eval_every, step_evals, probes)


def _compact(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_compact(x) for x in v) + "]"
    return str(v)


def run_name(c: dict, swept: list[str]) -> str:
    """``optimizer-problem-lr=..-seed=..`` plus ``key=value`` for every other key the sweep varies."""
    parts = [c["optimizer"]["name"], c["problem"]["name"], f"lr={effective_lr(c):g}", f"seed={c['seed']}"]
    for key in swept:
        if key in ("lr", "seed"):
            continue
        node = c
        for k in key.split("."):
            node = node.get(k, "?") if isinstance(node, dict) else "?"
        if isinstance(node, dict):  # a config group such as schedule or grid: its option's name
            node = node.get("name", "?")
        parts.append(f"{key}={_compact(node)}")
    return "-".join(str(p) for p in parts)


def results(batch: Batch, res: runner.BatchResult, swept: list[str] | None = None) -> list[MemberResult]:
    """Per member: its statistics, tags and curves. The member's config is completed with what
    actually ran (the lr also as ``optimizer.lr``, the resolved dtype), so params and config.yaml are true."""
    out = []
    minima = batch.problem.nearest_minimum(torch.as_tensor(res.final_x), batch.members[0]["stats"]["basin_tol"])
    for i, c in enumerate(batch.members):
        n = int(res.stop_step[i]) + 1
        loss, gn = res.loss[:n, i], res.grad_norm[:n, i]
        evals = None if res.grad_evals is None else res.grad_evals_of(i, n)  # None: one per update
        summary = member_stats(loss, gn, res.elapsed[:n], res.reason[i], batch.problem.f_star, list(c["stats"]["targets"]), evals)
        tags = {"problem": c["problem"]["name"], "optimizer": c["optimizer"]["name"], "stop_reason": res.reason[i]}
        if batch.problem.f_star is not None:
            tags["f_star"] = repr(float(batch.problem.f_star))
        if batch.hashes:
            tags[CONFIG_HASH] = batch.hashes[i]
        tags[CODE_HASH] = batch.code_hash
        if batch.problem.several_minima:  # a landscape with several minima: which one did the run end in?
            m = minima[i]
            tags["basin"] = m.name if m else "none"
            summary["global_min_reached"] = float(bool(m) and m.kind == "global")
        traj = None if res.trajectory is None else res.trajectory[:n, i]
        c["lr"] = float(effective_lr(c))
        if "lr" in c["optimizer"]:
            c["optimizer"]["lr"] = c["lr"]
        c["dtype"] = str(batch.dtype).removeprefix("torch.")
        p = batch.problem
        per_step = (getattr(p, "batch_size", None) or p.samples) / p.samples if p.samples else None
        sparse = {key: held_out(steps, vals[:, i], n - 1) for key, (steps, vals) in res.evals.items()}
        summary.update(metrics.curve_summaries(sparse))  # final_<key>, and the reductions harness/metrics.py declares (max_sharpness)
        if batch.instruments is not None:
            threshold = theory.sharpness_threshold(c["optimizer"])
            at = None if threshold is None else threshold.at(float(effective_lr(c)))
            summary.update(instruments.summary(sparse, at, threshold is not None and threshold.preconditioned))
        if per_step is not None:
            summary["epochs"] = (n - 1) * per_step
            # examples seen: the update's own gradient (a mini-batch, or the training set) at every
            # step, plus the training set at each further evaluation (a closure's line search)
            per_update = getattr(p, "batch_size", None) or p.samples
            summary["examples"] = float((n - 1) * per_update + (summary["grad_evals"] - (n - 1)) * p.samples)
        out.append(MemberResult(run_name(c, swept or []), c, loss, gn, traj, res.elapsed[:n], res.started_at, res.reason[i], summary, tags, per_step,
                                sparse, grad_evals=evals))
    return out


def flatten(d, prefix="") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def record(r: MemberResult, f_star: float | None, with_config: bool = True) -> RunRecord:
    """The MLflow run of one member: params (flattened resolved config), tags, curves (every step, for the
    batch's curves file, and the metric rows), and ``with_config`` its config.yaml. A sweep's members
    go without it: their params are the same config, and a file per run is what made a store of
    100,000 runs slow (the sweep's parent run holds its command line, `harness.command`)."""
    cfg = {k: v for k, v in r.config.items() if k not in ("tracking", "search") and not (k == "instruments" and not measured(r.config))}
    params = flatten(cfg)
    params.update(problem=cfg["problem"]["name"], optimizer=cfg["optimizer"]["name"])
    curves = {"loss": r.loss, "grad_norm": r.grad_norm}
    if r.epoch_per_step is not None:
        curves["epoch"] = np.arange(len(r.loss)) * r.epoch_per_step
    if f_star is not None:
        curves["suboptimality"] = np.maximum(r.loss - f_star, 0.0)
    artifacts = {"config.yaml": yaml.dump(r.config, Dumper=_Dumper, sort_keys=False)} if with_config else {}
    summary = {k: v for k, v in r.summary.items() if not (k == "linear_rate" and math.isnan(v))}
    return RunRecord(r.name, params, r.tags, summary, curves, r.started_at, r.elapsed, artifacts, r.sparse or {}, r.trajectory, r.grad_evals)


def tally(rows) -> dict[str, int]:
    """What a sweep counts of a job's runs (its progress line), from its rows (any iterable)."""
    out = {"runs": 0, "diverged": 0}
    for r in rows:
        out["runs"] += 1
        out["diverged"] += int(r.get("diverged", 0))
    return out


def run_job(cfg: DictConfig) -> list[dict]:
    """Run one job (a single run, or one group of sweep members); its result rows, one per member.
    Everything is validated before any MLflow run exists; a run is created only once its member has
    finished. A sweep's job counts its rows instead (``tally(job_rows(cfg))``): memory stays flat."""
    return list(job_rows(cfg))


def job_rows(cfg: DictConfig):
    """The result rows of a job's members, part by part; the generator ends once every run is stored."""
    parent = cfg.tracking.get("parent_run_id")
    parts = batches(cfg)  # built one at a time as the loop reaches them: a sweep validated its members already
    if parent is None:  # a single run (or members given by hand): all validated before the store is touched
        parts = iter(list(parts))
    uri = resolve_uri(cfg.tracking.uri)
    if parent is None:  # a sweep's launcher checked the store already
        check_reachable(uri)
    tracker = Tracker(uri, experiment_name(cfg.tracking.experiment))
    swept = list(cfg.tracking.get("swept") or [])
    try:
        for batch, _ in parts:  # one batch (or part of one) in memory at a time
            members = results(batch, run_batch(batch), swept)
            if parent is None:  # a single run carries its own provenance (a sweep's parent run has it otherwise)
                from harness.provenance import tags as provenance

                for r in members:
                    r.tags.update(provenance())
            ids = tracker.log_runs((record(r, batch.problem.f_star, with_config=parent is None) for r in members), parent)
            rows = [_row(r, run_id) for r, run_id in zip(members, ids)]
            del batch, members  # before the next part runs: memory holds one part's curves, not two
            yield from rows
    except BaseException:
        tracker.close(drop=True)  # the chunk being written is stored whole; those waiting are not
        raise
    tracker.close()  # every run of the job stored before the job reports them


def _row(r: MemberResult, run_id: str) -> dict:
    r.run_id = run_id
    return {"run_id": run_id, "name": r.name, "problem": r.config["problem"]["name"], "optimizer": r.config["optimizer"]["name"],
            "lr": r.config["lr"], "seed": r.config["seed"], "stop_reason": r.reason, **r.summary}
