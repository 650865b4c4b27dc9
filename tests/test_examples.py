"""The README's bring-your-own examples, outside the project's packages: Lion (examples/lion.py) and
Booth's function (examples/booth.py), each with its own YAML in examples/conf, selected through
hydra.searchpath; and the public checkers they are held to (harness/check.py)."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from examples.booth import Booth
from examples.lion import lion
from harness.check import batched_equals_alone, problem_batched_equals_alone
from optimizers.base import Optimizer, per_member
from problems.base import Minimum
from tests.conftest import ROOT, cli_here

SEARCH = f"hydra.searchpath=[file://{ROOT / 'examples' / 'conf'}]"


def test_your_optimizer_and_problem_run_from_the_command_line_with_a_schedule(tmp_path, store):
    p = cli_here([SEARCH, "optimizer=lion", "problem=booth", "schedule=cosine", "steps=300", f"tracking.uri={store}", "-m",
                 "lr=0.01,0.1", "optimizer.weight_decay=0,0.01", "seed=0,1"], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert "Sweep: 8 runs in 1 batched job(s)" in p.stdout  # your rule is batched like the built-ins
    c = MlflowClient(store)
    kids = [r for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(kids) == 8 and all(r.info.status == "FINISHED" and r.data.params["optimizer"] == "lion" for r in kids)
    assert {r.data.params["problem._target_"] for r in kids} == {"examples.booth.Booth"}
    assert min(r.data.metrics["final_suboptimality"] for r in kids) < 1e-3  # Lion with a cosine schedule settles at (1, 3)
    bad = cli_here([SEARCH, "optimizer=lio"], cwd=tmp_path)
    assert bad.returncode == 2 and "allowed:" in bad.stderr and "lion" in bad.stderr.split("allowed:")[1]


def test_lion_and_booth_pass_the_checkers():
    batched_equals_alone(lion, [{"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0},
                                {"lr": 1e-2, "betas": [0.5, 0.9], "weight_decay": 0.1},
                                {"lr": 3e-2, "betas": [0.9, 0.999], "weight_decay": 0.0}])
    problem_batched_equals_alone(Booth, seeds=[0, 1, 2])


def coupled(lr=0.1, *, batch=1, dtype=torch.float64):
    """Steps by the gradient over the norm of the whole batch's gradient: members see each other."""
    lr = per_member(lr, batch, dtype, "lr")
    return Optimizer(lambda params: None, lambda grads, state, params: ([params[0] - lr[:, None] * grads[0] / grads[0].norm()], None))


class WrongMinimum(Booth):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.minima = [Minimum("(1,2)", (1.0, 2.0), 0.0, "global")]


def test_the_checkers_name_what_is_wrong():
    with pytest.raises(AssertionError, match=r"coupled: member 0 \{'lr': 0.1\} differs from the same member run alone at update 1: .*must not see each other"):
        batched_equals_alone(coupled, [{"lr": 0.1}, {"lr": 0.2}])
    batched_equals_alone(coupled, [{"lr": 0.1}])  # alone it is trivially consistent
    with pytest.raises(AssertionError, match=r"WrongMinimum: listed minimum \(1,2\) at \[1.0, 2.0\] has f = 5.0 \(listed 0.0\)"):
        problem_batched_equals_alone(WrongMinimum)
