"""Reports from a real sweep in a temporary store: files, numbers equal to the store, diverged runs."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest
from mlflow import MlflowClient

from harness.report.__main__ import main as report_main
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A small sweep with divergence (gd at large lr) and several minima (six-hump camel)."""
    d = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    args = ["problem=six_hump_camel", "steps=300", f"tracking.uri={uri}", "-m", "optimizer=gd,momentum,adam", "lr=0.001,0.01,0.1,1", "seed=0,1,2"]
    p = run_cli(args, cwd=d)
    assert p.returncode == 0, p.stderr
    return d, uri


def test_report_files_and_attachment(sweep_store):
    d, uri = sweep_store
    assert report_main(["--uri", uri, "--out", str(d / "reports"), "--name", "t"]) == 0
    out = d / "reports" / "t"
    md = (out / "report.md").read_text()
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"curves_six_hump_camel.png", "lr_six_hump_camel.png", "minima_six_hump_camel.png", "trajectories_six_hump_camel.png", "profile.png"} <= names
    for p in pngs:
        img = mpimg.imread(p)  # a valid PNG
        assert img.ndim == 3 and min(img.shape[:2]) > 300
        assert f"({p.name})" in md
    for section in ("## Findings", "## Set-up", "## Summary", "## How to read this report", "Reproduce with:"):
        assert section in md
    assert "python -m harness -m problem=six_hump_camel steps=300" in md  # the recorded command
    client = MlflowClient(uri)
    parent = [r for r in client.search_runs([client.get_experiment_by_name("harness").experiment_id]) if r.data.tags.get("harness.sweep") == "true"][0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/report.md", "report/profile.png"}


def test_summary_numbers_equal_the_store(sweep_store):
    d, uri = sweep_store
    from harness.report import analysis
    from harness.report.data import load

    sweep = load(uri, "harness")
    summ = analysis.summary(sweep.runs, 1e-6).set_index("optimizer")
    exp = MlflowClient(uri).get_experiment_by_name("harness").experiment_id
    runs = MlflowClient(uri).search_runs([exp], f"tags.`mlflow.parentRunId` = '{sweep.parent.info.run_id}'", max_results=1000)
    assert len(runs) == 36 == len(sweep.runs)
    for opt, row in summ.iterrows():
        at = [r for r in runs if r.data.params["optimizer"] == opt and float(r.data.params["lr"]) == row["best_lr"]]
        vals = [math.inf if r.data.metrics["diverged"] else r.data.metrics["final_suboptimality"] for r in at]
        assert row["median"] == pytest.approx(float(np.median(vals)), rel=1e-12, abs=0)
        div = sum(int(r.data.metrics["diverged"]) for r in runs if r.data.params["optimizer"] == opt)
        assert row["diverged"] == div
    assert report_main(["--uri", uri, "--out", str(d / "reports"), "--name", "n", "--no-attach"]) == 0
    md = (d / "reports" / "n" / "report.md").read_text()
    for opt, row in summ.iterrows():  # the markdown table shows the same numbers
        line = [ln for ln in md.splitlines() if ln.startswith(f"| six_hump_camel | {opt} |")][0]
        assert f"| {row['best_lr']:.3g} | {row['median']:.3g} |" in line and f"| {row['diverged']}/12 |" in line


def test_diverged_runs_are_reported_not_dropped(sweep_store):
    d, uri = sweep_store
    from harness.report import analysis
    from harness.report.data import load

    sweep = load(uri, "harness")
    gd = sweep.runs[sweep.runs.optimizer == "gd"]
    assert gd["diverged"].any() and len(gd) == 12  # lr=1 diverges on six-hump camel, and is still there
    shares = analysis.outcome_shares(sweep.runs)
    big = shares[(shares.optimizer == "gd") & (shares.lr == 1.0)]
    assert float(big["diverged"].iloc[0]) == 1.0
    assert any("gd diverged at lr >= " in f for f in analysis.findings(sweep.runs, analysis.summary(sweep.runs, 1e-6), 1e-6))


def test_report_on_empty_store_fails_clearly(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(uri).search_experiments()  # an empty, valid store
    assert report_main(["--uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no experiment 'harness'") and len(err.splitlines()) == 1
