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


EDGES = [["lr=1e-05", "seed=0"], ["lr=1", "seed=7"], ["lr=0.5", "seed=123456789"], ["lr=1.83e-05", "seed=3", "optimizer.eps=1e-08"],
         ["lr=0.001", "seed=1", "optimizer.weight_decay=-0.25"], ["lr=3", "seed=2", "optimizer.betas=[0.8,0.99]"],
         ["lr=0.1", "seed=4", "optimizer.weight_decay=2"], ["lr=1e+300", "seed=5", "optimizer.eps=-1e-300"],
         ["lr=0.30000000000000004", "seed=6", "optimizer.betas=[0.5,1]"], ["seed=8"], ["lr=2.5e-7", "seed=9", "optimizer.amsgrad=true"]]


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_config_hashes_of_a_batch_are_the_reference_hashes_byte_for_byte(optimizer):
    """plan.config_hashes (a JSON template per batch) gives plan.config_hash of every member, for members
    that share the base config's sections and for members that do not (which take the reference path)."""
    cfg = make_cfg("problem=rosenbrock", f"optimizer={optimizer}", "steps=20")
    edges = EDGES if optimizer == "adam" else [o for o in EDGES if "optimizer." not in " ".join(o)]
    ms = [c for c, _ in plan.member_configs(cfg, edges + [[f"lr={lr}", f"seed={s}"] for lr in (1e-5, 0.0316, 1) for s in range(50)])]
    reference = [plan.config_hash(c) for c in ms]
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan, "config_hash", lambda c, f=plan.config_hash: calls.append(1) or f(c))
        assert plan.config_hashes(ms) == reference
    assert len(calls) < 5, "the template path was not taken"  # the check of the first member, and the odd ones (amsgrad=true)
    assert plan.config_hashes(ms[::-1]) == reference[::-1]  # another first member, another template
    copied = [__import__("copy").deepcopy(c) for c in ms[:5]]  # equal but not shared sections: the reference path
    copied[2]["stop"]["x_tol"] = 1e-9  # and a member that differs where no other does
    copied[3]["instruments"] = {"name": "curvature", "every": 10}
    assert plan.config_hashes(ms[:3] + copied) == [plan.config_hash(c) for c in ms[:3] + copied]
    assert plan.config_hashes(ms[:1]) == reference[:1] and plan.config_hashes([]) == []


def test_a_sweeps_batches_tag_the_reference_hashes():
    """What the sweeper validates (plan.batches) carries plan.config_hash of each member."""
    cfg = make_cfg("problem=rosenbrock", "optimizer=rmsprop", "steps=20")
    grid = [[f"lr={lr}", f"seed={s}"] for lr in ("1e-05", "0.000183", "1") for s in range(40)] + EDGES[:3]
    built = list(plan.batches(cfg, grid))
    got = [h for b, _ in built for h in b.hashes]
    want = [plan.config_hash(c) for b, _ in built for c in b.members]
    assert got == want and len(got) == len(grid)


def _sweep_job(tmp_path, n_lrs: int):
    """A sweep's job config (a parent run, as the sweeper makes it) of ``n_lrs`` lrs x 2 seeds, and the parent's id."""
    from omegaconf import OmegaConf

    from harness.store import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_cfg("problem=rosenbrock", "optimizer=adam", "steps=30", f"tracking.uri={uri}",
                   members(*[{"lr": 10.0 ** -k, "seed": s} for k in range(n_lrs) for s in range(2)]))
    t = Tracker(uri, "harness")
    parent = t.start_parent("sweep", {"harness.sweep": "true"})
    OmegaConf.update(cfg, "tracking.parent_run_id", parent, force_add=True)
    return cfg, t, parent


def _stored(t, parent) -> dict[str, str]:
    return t.tables.member_status(t.experiment_id, parent)


def _writer_processes() -> list[int]:
    """Pids of this process's children running the store's writer process."""
    import os
    from pathlib import Path

    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid() and \
                    b"harness.store.process" in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def test_a_sweeps_chunks_are_inserted_by_a_writer_process_and_all_stored_when_the_job_returns(tmp_path, monkeypatch):
    from harness.store import tables as tables_module
    from harness.store import writer

    monkeypatch.setattr(writer, "CHUNK", 3)  # 10 runs: 4 chunks
    cfg, t, parent = _sweep_job(tmp_path, 5)
    here = []
    real = tables_module.Tables.insert_runs
    monkeypatch.setattr(tables_module.Tables, "insert_runs", lambda self, runs, *rest: (here.append(len(runs)), real(self, runs, *rest)))
    rows = job.job_rows(cfg)
    first = next(rows)  # the first part is computed and handed to the writers
    assert len(_writer_processes()) == 1
    assert job.tally([first, *rows]) == {"runs": 10, "diverged": 0}
    assert here == []  # no member row was inserted by the job's own process
    assert list(_stored(t, parent).values()) == ["FINISHED"] * 10  # every run in the store when the job returned
    assert _writer_processes() == []  # the process ended with the job


def test_a_failure_in_the_writer_process_fails_the_job_and_leaves_whole_chunks_only(tmp_path, monkeypatch):
    import sqlite3

    from harness.store import writer
    from harness.store.process import WriterError

    monkeypatch.setattr(writer, "CHUNK", 3)
    cfg, t, parent = _sweep_job(tmp_path, 5)
    with sqlite3.connect(t.tables.source) as db:  # the second chunk's inserts fail inside the writer process
        db.execute("CREATE TRIGGER full BEFORE INSERT ON runs WHEN (SELECT count(*) FROM runs) >= 4 BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(WriterError, match="disk full"):
        job.run_job(cfg)
    status = _stored(t, parent)
    assert len(status) == 3 and set(status.values()) == {"FINISHED"}  # the first chunk whole, the failed one not at all
    assert _writer_processes() == []


def test_the_summary_reads_fewer_columns_into_object_arrays_and_ranks_the_same(tmp_path):
    """The sweep's summary leaves the columns the analysis never reads unread (a million runs' frame must fit), and
    every reader gets string columns as object arrays (pandas 3's Arrow strings made each row
    selection a take per column); the analysis of either frame is the same."""
    import pandas as pd

    from harness import analysis
    from harness.store import read_runs
    from harness.store.reader import NOT_ANALYSED
    from tests.conftest import cli_here

    p = cli_here(["tracking.uri=sqlite:///mlflow.db", "problem=rosenbrock", "steps=50", "-m", "optimizer=gd,adam", "lr=0.001,0.01",
                  "seed=range(3)"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    whole, light = read_runs(uri, "harness").runs, read_runs(uri, "harness", skip=NOT_ANALYSED).runs
    assert len(whole) == len(light) == 12
    assert set(NOT_ANALYSED) <= set(whole.columns) and not set(NOT_ANALYSED) & set(light.columns)
    assert "tags.mlflow.note.content" not in whole  # the UI's link is never read back
    strings = [c for c in whole.columns if c.startswith(("params.", "tags.")) or c == "run_id"]
    assert strings and all(whole[c].dtype == object for c in strings)
    adam = read_runs(uri, "harness", filter_string="params.optimizer = 'adam'").runs  # filtered on the run tables' frame
    assert len(adam) == 6 and set(adam["params.optimizer"]) == {"adam"} and adam["params.optimizer"].dtype == object
    a, b = analysis.analyse(whole, 1e-6), analysis.analyse(light, 1e-6)
    pd.testing.assert_frame_equal(a.bests.reset_index(drop=True), b.bests.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.comparisons, b.comparisons)
    assert set(a.df.columns) - set(b.df.columns) == set(NOT_ANALYSED)  # every column the analysis adds, from either frame
    pd.testing.assert_frame_equal(a.df[b.df.columns], b.df)
