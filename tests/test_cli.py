"""The quoted command end to end, into a real MLflow store; batching, fallback, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from harness.job import results, run_batch
from harness.plan import plan
from harness.store import ui_steps
from tests.conftest import ROOT, cli_here, make_cfg, members, parquet_curves, run_cli


def runs_of(uri: str):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness")
    return c, c.search_runs([exp.experiment_id], max_results=1000)


def test_quoted_multirun_as_typed(tmp_path):
    """`python -m harness optimizer=adam problem=rosenbrock -m lr=0.001,0.01,0.1`, in a fresh
    directory, lands in ./mlflow.db: one parent, three nested finished runs with params and curves."""
    p = run_cli("optimizer=adam problem=rosenbrock -m lr=0.001,0.01,0.1".split(), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Sweep done: 3 of 3 runs" in p.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, runs = runs_of(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    (batch_file,) = client.list_artifacts(parents[0].info.run_id, "curves")  # one file for the batch of 3
    curves_file = f"{parents[0].info.artifact_uri}/{batch_file.path}"
    assert sorted(float(r.data.params["lr"]) for r in children) == [0.001, 0.01, 0.1]
    for r in children:
        prm, m = r.data.params, r.data.metrics
        assert prm["problem"] == "rosenbrock" and prm["optimizer"] == "adam" and prm["seed"] == "0"
        assert prm["steps"] == "2000" and prm["optimizer.betas"] == "[0.9, 0.999]" and prm["problem.dim"] == "2"
        assert r.info.run_name == f"adam-rosenbrock-lr={float(prm['lr']):g}-seed=0"
        for key in ("final_loss", "best_loss", "final_suboptimality", "converged", "diverged", "linear_rate", "batch_wall_time_s", "batch_time_per_step_s"):
            assert key in m, key
        assert r.data.tags["stop_reason"] == "max_steps" and r.data.tags["f_star"] == "0.0"
        assert "basin" not in r.data.tags and "global_min_reached" not in m  # one minimum: no basin study
        assert prm["optimizer.lr"] == prm["lr"] and prm["dtype"] == "float64"  # what ran, not the defaults
        hist = client.get_metric_history(r.info.run_id, "loss")
        steps = sorted(h.step for h in hist)
        assert steps == ui_steps(2001).tolist() and steps[0] == 0 and steps[-1] == 2000  # 2000 steps -> sampled for the UI
        assert 11 <= len(steps) <= 15 and steps[:4] == [0, 1, 4, 13]  # dense at the start, then spread to the end
        assert [h.step for h in client.get_metric_history(r.info.run_id, "suboptimality")] == steps
        sub = {h.step: h.value for h in client.get_metric_history(r.info.run_id, "suboptimality")}
        assert sub[2000] == pytest.approx(m["final_suboptimality"], rel=1e-12)
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert arts == set()  # its curves are in the batch's file, among the parent's artifacts; its config is its params
        assert r.data.tags["harness.curves"] == curves_file
        full = parquet_curves(uri, r.info.run_id)
        assert full["step"].tolist() == list(range(2001))  # every step
        assert full[["loss", "grad_norm", "suboptimality"]].notna().all().all()
        assert full["suboptimality"].iloc[-1] == m["final_suboptimality"] and full["loss"].iloc[-1] == m["final_loss"]
        assert full[["time", "x0", "x1"]].notna().sum().tolist() == [501] * 3 and full["loss"][0] == pytest.approx(sub[0], rel=1e-7)
        assert f"runs/{r.data.tags['mlflow.parentRunId']}/artifacts/curves/" in r.data.tags["mlflow.note.content"]  # the UI's link
    exp = client.get_experiment_by_name("harness")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view
    assert f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}?workflowType=machine_learning" in p.stdout


def test_logged_curves_equal_the_computation_and_short_runs_log_every_step(tmp_path, store):
    args = ["problem=himmelblau", "optimizer=momentum", "steps=200", f"tracking.uri={store}", "-m", "lr=0.001,0.003", "seed=0,1"]
    p = cli_here(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    client, runs = runs_of(store)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    # recompute one member in-process and compare with what the store holds
    (batch,), (ov,) = plan(make_cfg("problem=himmelblau", "optimizer=momentum", "steps=200", members({"lr": 0.003, "seed": 1})))
    res = run_batch(batch)
    (run,) = [r for r in children if r.data.params["lr"] == "0.003" and r.data.params["seed"] == "1"]
    hist = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda h: h.step)
    assert [h.step for h in hist] == list(range(201))  # up to 200 steps: every step in the UI
    np.testing.assert_array_equal([h.value for h in hist], res.loss[:, 0])
    grad = sorted(client.get_metric_history(run.info.run_id, "grad_norm"), key=lambda h: h.step)
    np.testing.assert_array_equal([h.value for h in grad], res.grad_norm[:, 0])
    full = parquet_curves(store, run.info.run_id)  # and every step in the batch's curves file
    np.testing.assert_allclose(full["loss"], res.loss[:, 0], rtol=2.0**-24)  # float32's significand (harness.store.curves)
    np.testing.assert_allclose(full["grad_norm"], res.grad_norm[:, 0], rtol=2.0**-24)
    np.testing.assert_allclose(full[["x0", "x1"]], res.trajectory[:, 0], rtol=2.0**-24)
    np.testing.assert_array_equal(full[["x0", "x1"]].iloc[-1], res.trajectory[-1, 0])  # the final point exactly
    assert run.data.tags["basin"] == results(batch, res)[0].tags["basin"]


def test_batched_members_equal_members_run_alone():
    """Members of one batch (some diverging, some stopping early) give exactly the curves
    they give when run one by one."""
    grid = [{"lr": lr, "seed": s} for lr in (1e-4, 1e-3, 2e-3, 1e-2) for s in (0, 1)]
    common = ("problem=rosenbrock", "optimizer=gd", "steps=800", "stop.grad_tol=1e-3")
    (batch,), _ = plan(make_cfg(*common, members(*grid)))
    res = run_batch(batch)
    assert "diverged" in res.reason and "grad_tol" in res.reason or "max_steps" in res.reason
    assert len(set(res.reason)) >= 2, res.reason
    for i, g in enumerate(grid):
        (alone,), _ = plan(make_cfg(*common, members(g)))
        one = run_batch(alone)
        n = int(res.stop_step[i]) + 1
        assert one.reason[0] == res.reason[i]
        np.testing.assert_allclose(res.loss[:n, i], one.loss[:, 0], rtol=1e-6)
        np.testing.assert_allclose(res.trajectory[:n, i], one.trajectory[:, 0], rtol=1e-6)


def test_same_config_and_seed_give_identical_curves():
    cfg = ("problem=quadratic", "optimizer=adam", "lr=0.01", "steps=400", members({"seed": 3}, {"seed": 4}))
    a, b = (run_batch(plan(make_cfg(*cfg))[0][0]) for _ in range(2))
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.grad_norm, b.grad_norm)
    assert not np.array_equal(a.loss[:, 0], a.loss[:, 1])  # different seeds differ


def test_torch_optim_classes_and_mixed_sweeps_fall_back(tmp_path, store):
    """A torch.optim class via _target_ (NAdam, LBFGS) runs one member at a time in the same
    sweep as batched optimizers, with the same MLflow content."""
    args = ["problem=quadratic", "steps=50", f"tracking.uri={store}", "-m", "optimizer=adam,nadam,lbfgs", "lr=0.1,1"]
    p = cli_here(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    client, runs = runs_of(store)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted((r.data.params["optimizer"], r.data.params["lr"]) for r in children) == sorted(
        (o, lr) for o in ("adam", "nadam", "lbfgs") for lr in ("0.1", "1.0")
    )
    lbfgs = [r for r in children if r.data.params["optimizer"] == "lbfgs" and r.data.params["lr"] == "1.0"][0]
    assert lbfgs.data.metrics["final_suboptimality"] < 1e-10  # LBFGS solves a quadratic quickly
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 51 for r in children)


def test_nadam_through_target_matches_torch():
    import torch

    from problems.quadratic import Quadratic

    (batch,), _ = plan(make_cfg("problem=quadratic", "optimizer=nadam", "lr=0.05", "steps=30"))
    res = run_batch(batch)
    q = Quadratic(seeds=[0])
    x = q.init()[0].clone().requires_grad_(True)
    opt = torch.optim.NAdam([x], lr=0.05)
    for t in range(30):
        opt.zero_grad()
        f = q.loss(x[None])[0]
        assert f.item() == pytest.approx(res.loss[t, 0], rel=1e-12)
        f.backward()
        opt.step()


def test_a_failing_job_leaves_no_run_running(tmp_path, store):
    args = ["problem._target_=tests.broken_problem.Broken", f"tracking.uri={store}", "steps=10", "-m", "lr=0.1,0.01"]
    p = cli_here(args, cwd=ROOT)
    assert p.returncode != 0
    _, runs = runs_of(store)
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["FAILED"]


@pytest.mark.parametrize("text", ["lr=0.001", "lr=1e-3", "lr=1E5", "lr=-0.5", "lr=1.", "lr=.5", "lr=007.5", "seed=3", "seed=0", "seed=-2",
                                  "seed=007", "lr=00.5", "lr=00e5", "lr=1e05", "lr=0e5", "lr=1.e5", "lr=+1", "lr=1_000", "optimizer.momentum=0.9", "lr=inf", "lr=nan", "lr=0x10", "lr=1e", "lr=abc"])
def test_members_numbers_are_read_as_hydra_reads_them(text):
    """The fast path for plain numeric member overrides gives exactly Hydra's parse, or steps aside."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from harness.plan import _plain_number

    (o,) = OverridesParser.create().parse_overrides([text])
    fast = _plain_number(text)
    if text in ("lr=0.001", "lr=1e-3", "seed=3", "seed=0", "lr=-0.5", "optimizer.momentum=0.9"):
        assert fast is not None  # a sweep's usual members take the fast path
    if fast is not None:
        assert fast == (o.key_or_group, o.value()) and type(fast[1]) is type(o.value())
