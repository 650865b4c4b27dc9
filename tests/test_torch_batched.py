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
