"""What keeps a big sweep's memory flat and its compute fast: a batch runs in parts that give every
member what the whole batch gives it, and a batch of small tensors on a problem without data runs on
one torch thread."""

from __future__ import annotations

import pytest
import torch

from harness import job, plan
from tests.conftest import make_cfg, members

GRID = [{"lr": lr, "seed": s} for lr in (0.001, 0.01) for s in range(3)]  # 6 members, one batch


def _final(rows):
    return {(r["lr"], r["seed"]): (r["final_loss"], r["steps"], r["stop_reason"]) for r in rows}


def test_a_batch_too_big_for_memory_runs_in_parts_with_the_same_results(tmp_path, monkeypatch):
    args = ["problem=rosenbrock", "optimizer=adam", "steps=50", members(*GRID)]
    whole = job.run_job(make_cfg(*args, f"tracking.uri=sqlite:///{tmp_path / 'a.db'}"))
    monkeypatch.setattr(plan, "CURVE_BYTES", 32 * 51 * 2)  # two members' curves: parts of 2
    cfg = make_cfg(*args, f"tracking.uri=sqlite:///{tmp_path / 'b.db'}")
    sizes = [len(b.members) for b, _ in plan.batches(cfg)]
    assert sizes == [2, 2, 2]
    parts = job.run_job(cfg)
    assert len(parts) == 6 and _final(parts) == _final(whole)


@pytest.fixture
def threads():
    """At least two torch threads (tests/conftest.py gives each pytest-xdist worker one), restored after."""
    was = torch.get_num_threads()
    torch.set_num_threads(max(2, was))
    yield
    torch.set_num_threads(was)


def test_small_batches_without_data_run_on_one_thread_and_give_the_threads_back(threads):
    before = torch.get_num_threads()
    assert before >= 2
    with job.threads_for(torch.zeros(2000, 2), data=False):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with job.threads_for(torch.zeros(2000, 2), data=True):  # a dataset's work grows with its examples
        assert torch.get_num_threads() == before
    with job.threads_for(torch.zeros(job.ONE_THREAD_BELOW), data=False):
        assert torch.get_num_threads() == before
