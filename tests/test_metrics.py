"""One place per metric (harness/metrics.py): a metric declared there, and computed, reaches MLflow, the
report's summary table and its figures without a presentation module naming it."""

from __future__ import annotations

import math
import re

import numpy as np
from mlflow import MlflowClient

from harness import analysis, metrics, summary
from harness.report.__main__ import main as report_main
from tests.conftest import ROOT, sweep_runs
from tests.test_protocol import grid, runs
from tests.test_report_matrix import md_table

EXTRA = metrics.Metric("max_val_loss", "worst val loss", "summary", True, "median_interval", ".4f", of="val_loss", reduce="max")


def test_a_metric_declared_only_in_the_registry_is_logged_and_reported(harness_cli, tmp_path, monkeypatch):
    # the declaration is the only change: the job derives it from the curve, MLflow stores it, the report shows it
    monkeypatch.setattr(metrics, "REGISTRY", (*metrics.REGISTRY, EXTRA))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = harness_cli([f"tracking.uri={uri}", "problem=logistic_regression", "optimizer=gd", "steps=30", "problem.eval_every=10", "-m",
                        "lr=0.1,1.0", "seed=0,1"])
    assert done.returncode == 0, done.stderr
    _, kids = sweep_runs(uri)
    assert len(kids) == 4
    for r in kids:
        history = [m.value for m in MlflowClient(uri).get_metric_history(r.info.run_id, "val_loss")]
        assert len(history) >= 3 and r.data.metrics["max_val_loss"] == max(history)  # every 10 steps and the last
    assert report_main(["--uri", uri, "--out", str(tmp_path / "reports"), "--name", "r", "--no-attach"]) == 0
    header, rows = md_table((tmp_path / "reports" / "r" / "report.md").read_text(), "problem")
    assert "worst val loss (median, interval)" in header and "val loss (median)" in header
    (row,) = rows
    at = [r.data.metrics["max_val_loss"] for r in kids if float(r.data.params["lr"]) == float(row[2])]  # two seeds tune and report
    assert dict(zip(header, row))["worst val loss (median, interval)"] == f"{np.median(at):.4f} [{min(at):.4f}, {max(at):.4f}] 50%"


def test_instruments_show_in_the_summary_table_when_present():
    # sparse curves' final values and summary metrics, as the instruments log them: each gets a column
    extra = dict(final_sharpness=9.5, max_sharpness=21.0, final_preconditioned_sharpness=30.0, max_preconditioned_sharpness=40.0,
                 final_noise_scale=120.0, stability_threshold=20.0, edge_ratio=1.05)
    a = analysis.analyse(runs(grid("gd", {0.1: 1e-3}, seeds=range(6), **extra) + grid("adam", {0.01: 1e-2}, seeds=range(6))), 1e-6)
    head, cells = summary.metric_columns(a.bests)
    assert head == [f"{metrics.label(k)} (median, interval)" for k in extra]
    gd = dict(zip(head, cells[list(a.bests["config"]).index("gd")]))
    assert gd["edge ratio (sharpness / threshold, last third) (median, interval)"] == "1.05 [1.05, 1.05] 75%"  # 3 reporting seeds
    assert all(c == "–" for c in cells[list(a.bests["config"]).index("adam")])
    assert not metrics.selectable().keys() & {"sharpness", "preconditioned_sharpness", "noise_scale"}  # flatter is not better: never ranks


def test_curve_summaries_are_the_last_value_and_the_declared_reductions():
    sparse = {"sharpness": (np.array([0, 50, 100]), np.array([3.0, np.nan, 2.5])), "val_loss": (np.array([], int), np.array([]))}
    assert metrics.curve_summaries(sparse) == {"final_sharpness": 2.5, "max_sharpness": 3.0}
    assert metrics.get("final_sharpness").label == "final sharpness λmax(H)" and metrics.get("final_val_loss").label == "val loss"


def test_every_declaration_is_complete():
    for m in metrics.REGISTRY:
        assert m.kind in ("curve", "summary") and m.aggregate in ("median", "median_interval"), m
        assert not m.rank or m.lower_is_better is not None, m  # ranking needs a direction
        assert not m.of or (metrics.get(m.of) is not None and m.reduce in metrics.REDUCTIONS), m
        assert m.format(math.nan) == "–"
    assert len({m.name for m in metrics.per_run()}) == len(metrics.per_run())


def test_no_presentation_module_names_a_declared_metric():
    names = [m.name for m in (*metrics.REGISTRY, *metrics.per_run())]
    for path in sorted((ROOT / "harness" / "report").glob("*.py")) + [ROOT / "harness" / "summary.py"]:
        src = path.read_text()
        for name in names:
            assert not re.search(rf"[\"'`]{name}[\"'`]|\b{name}\b" if "_" in name else rf"[\"'`]{name}[\"'`]", src), (path.name, name)


def test_optimizer_colours_and_order_come_from_its_display_line(monkeypatch):
    from harness.report import figures
    from optimizers import display

    monkeypatch.setitem(display.OPTIMIZERS, "lion", "#17becf")
    assert figures.colours(["adam", "lion", "gd"]) == {"adam": ("#8c564b", "-"), "lion": ("#17becf", "-"), "gd": ("#1f77b4", "-")}
    assert sorted(["lion", "mine", "adam", "gd"], key=display.order) == ["gd", "adam", "lion", "mine"]


def test_selection_offers_the_ranked_metrics():
    from harness.protocol import selectable

    assert list(selectable()) == ["final", "val_loss", "val_accuracy", "train_loss"]
