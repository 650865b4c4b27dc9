"""torch.optim classes run batched: members with different hyperparameters in one step() per step,
equal in float64 to the same members run one at a time; classes that couple elements are detected
and keep the one-at-a-time path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.job import run_batch
from harness.plan import plan
from optimizers.torch_batched import elementwise
from tests.conftest import make_cfg, members


class NormalizedSGD(torch.optim.Optimizer):
    """x <- x - lr * g / ||g||, the norm over the whole tensor: couples every element."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad / (p.grad.norm() + 1e-12), alpha=-group["lr"])


# class, its extra hyperparameter varied per member
ELEMENTWISE = [
    ("torch.optim.SGD", {"momentum": [0.0, 0.9]}),
    ("torch.optim.Adam", {"weight_decay": [0.0, 0.1]}),
    ("torch.optim.AdamW", {"weight_decay": [0.01, 0.1]}),
    ("torch.optim.NAdam", {"momentum_decay": [0.004, 0.01]}),
    ("torch.optim.RAdam", {"weight_decay": [0.0, 0.1]}),
    ("torch.optim.Adamax", {"eps": [1e-8, 1e-6]}),
    ("torch.optim.ASGD", {"lambd": [1e-4, 1e-3]}),
    ("torch.optim.Rprop", {}),
    ("torch.optim.Adagrad", {"lr_decay": [0.0, 0.01]}),
    ("torch.optim.RMSprop", {"alpha": [0.9, 0.99]}),
    ("torch.optim.Adadelta", {"rho": [0.9, 0.95]}),
]


def grid(extra: dict) -> list[dict]:
    """2 lrs x 2 seeds x the extra key's values: members that differ in every hyperparameter."""
    (key, values), = extra.items() if extra else (("", [None]),)
    return [{"lr": lr, "seed": s, **({f"+optimizer.{key}": v} if key else {})} for lr in (1e-3, 1e-2) for s in (0, 1) for v in values]


@pytest.mark.parametrize("target, extra", ELEMENTWISE, ids=[t.rsplit(".", 1)[1] for t, _ in ELEMENTWISE])
def test_an_elementwise_class_runs_its_members_as_one_batch_equal_to_each_alone(target, extra):
    common = ("problem=rosenbrock", "optimizer=torch", f"optimizer._target_={target}", "steps=150", "dtype=float64")
    g = grid(extra)
    batches, _ = plan(make_cfg(*common, members(*g)))
    assert len(batches) == 1 and len(batches[0].members) == len(g)  # one program, hyperparameters per member
    res = run_batch(batches[0])
    for i, m in enumerate(g):
        (alone,), _ = plan(make_cfg(*common, members(m)))
        one = run_batch(alone)
        n = int(res.stop_step[i]) + 1  # a diverged member stops where it would have alone
        assert n == int(one.stop_step[0]) + 1 and res.reason[i] == one.reason[0]
        np.testing.assert_allclose(res.loss[:n, i], one.loss[:n, 0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(res.final_x[i], one.final_x[0], rtol=1e-12, atol=0)
    assert not np.allclose(res.loss[:, 0], res.loss[:, -1])  # the members did differ


def test_a_bad_value_leaves_no_verdict_on_the_class():
    """A setting the class refuses says nothing about the class: later members with good settings
    still batch (the verdict is cached per process, which the in-process command-line tests share)."""
    assert not elementwise(torch.optim.NAdam, {"lr": 0.01, "momentum_decay": -1.0, "decoupled_weight_decay": True})
    assert elementwise(torch.optim.NAdam, {"lr": 0.01, "momentum_decay": 0.004, "decoupled_weight_decay": True})


def test_a_coupled_class_is_detected_and_runs_one_member_at_a_time():
    assert not elementwise(NormalizedSGD, {"lr": 0.01})
    assert not elementwise(torch.optim.LBFGS, {"lr": 1.0})  # needs a closure
    assert elementwise(torch.optim.SGD, {"lr": 0.01})
    common = ("problem=rosenbrock", "optimizer=torch", "optimizer._target_=tests.test_torch_batched.NormalizedSGD", "steps=50")
    g = [{"lr": lr, "seed": 0} for lr in (1e-3, 1e-2, 1e-1)]
    batches, _ = plan(make_cfg(*common, members(*g)))
    assert [len(b.members) for b in batches] == [1, 1, 1]
    # what batching it would have given is wrong: the probe is not a formality
    from optimizers.torch_batched import batched_step

    x = batches[0].problem.init()
    x3 = torch.cat([x, x + 1, x - 1])
    g3 = torch.cat([x, 2 * x + 1, x * x])
    together = batched_step(NormalizedSGD, [{"lr": 0.1}] * 3, x3)[0](x3, g3)
    alone = torch.cat([batched_step(NormalizedSGD, [{"lr": 0.1}], x3[i : i + 1])[0](x3[i : i + 1], g3[i : i + 1]) for i in range(3)])
    assert not torch.allclose(together, alone)


def _reference(cls, member_kwargs, x):
    """The batched update written plainly: one param group per distinct setting (its rows gathered into
    a tensor of their own), ``opt.step()`` through torch's own wrappers, rows scattered back."""
    import json

    settings: dict[str, list[int]] = {}
    for i, kw in enumerate(member_kwargs):
        settings.setdefault(json.dumps(kw, sort_keys=True), []).append(i)
    rows = [torch.tensor(idx) for idx in settings.values()]
    params = [x[r].detach().clone().requires_grad_(True) for r in rows]
    opt = cls([{"params": [p], **json.loads(s)} for p, s in zip(params, settings)], **member_kwargs[0])

    def step(x, g):
        with torch.no_grad():
            for p, r in zip(params, rows):
                p.copy_(x[r])
                p.grad = g[r].clone()
        opt.step()
        out = torch.empty_like(x)
        for p, r in zip(params, rows):
            out[r] = p.detach()
        return out

    def set_lrs(lrs):
        for group, r in zip(opt.param_groups, rows):
            group["lr"] = lrs[int(r[0])]

    return step, set_lrs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target, extra", ELEMENTWISE, ids=[t.rsplit(".", 1)[1] for t, _ in ELEMENTWISE])
def test_the_batched_step_is_the_class_step_bit_for_bit(target, extra, dtype):
    """Groups as views of one buffer, members interleaved across groups, torch's step wrappers skipped,
    a schedule's lr change half-way: every step equal, bit for bit, to the plain per-group ``opt.step()``."""
    from optimizers.torch_batched import batched_step

    cls = eval(target, {"torch": torch})
    (key, values), = extra.items() if extra else (("", [None]),)
    kws = [{"lr": lr, **({key: v} if key else {})} for _ in range(3) for v in values for lr in (1e-3, 1e-2, 1e-1)]  # interleaved
    x = torch.randn(len(kws), 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    fast, fast_lrs = batched_step(cls, kws, x)
    ref, ref_lrs = _reference(cls, kws, x)
    xf = xr = x
    for t in range(30):
        if t == 15:
            lrs = [kw["lr"] / 3 for kw in kws]
            fast_lrs(lrs), ref_lrs(lrs)
        xf_new = fast(xf, torch.sin(3 * xf) + 0.1 * xf**3)
        xr = ref(xr, torch.sin(3 * xr) + 0.1 * xr**3)
        assert xf_new is not xf and torch.equal(xf_new, xr), f"step {t}"
        xf = xf_new
    assert not torch.equal(xf, x)


def test_step_hooks_still_run_and_the_profiler_still_sees_the_step():
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from optimizers.torch_batched import batched_step

    kws = [{"lr": lr} for lr in (0.1, 0.2, 0.1)]
    x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = torch.cos(x)
    calls = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(type(opt).__name__))
    try:
        with_hook = batched_step(torch.optim.NAdam, kws, x)[0](x, g)
    finally:
        handle.remove()
    assert calls == ["NAdam"]
    assert torch.equal(with_hook, batched_step(torch.optim.NAdam, kws, x)[0](x, g))
    step = batched_step(torch.optim.NAdam, kws, x)[0]
    with torch.profiler.profile() as prof:
        step(x, g)
    assert any("Optimizer.step#NAdam.step" in e.name for e in prof.events())


def test_a_batched_sweep_does_not_import_torch_dynamo(tmp_path):
    """torch.optim imports torch._dynamo (~1 s) on first construction and on every step() only to mark
    its methods for torch.compile; the batched path does without (optimizers/torch_batched.py), and once
    torch._dynamo is imported anyway, torch's own wrappers take over again."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import sys, torch
from tests.conftest import make_cfg, members
from harness.plan import plan
from harness.job import run_batch
g = [{"lr": lr, "seed": s} for lr in (0.001, 0.01, 0.1) for s in range(3)]
(b,), _ = plan(make_cfg("problem=rosenbrock", "optimizer=nadam", "steps=50", members(*g)))
before = run_batch(b).final_x
print("imported:", "torch._dynamo" in sys.modules)
import torch._dynamo
(b,), _ = plan(make_cfg("problem=rosenbrock", "optimizer=nadam", "steps=50", members(*g)))
print("same after importing it:", (run_batch(b).final_x == before).all())
fn = torch.optim.Optimizer.add_param_group.__wrapped__
print("torch's own wrapper back:", getattr(fn, "__dynamo_disable").__module__.startswith("torch"))
"""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "imported: False" in p.stdout and "same after importing it: True" in p.stdout and "torch's own wrapper back: True" in p.stdout, p.stdout
