"""Reports from a real sweep in a temporary store: files, numbers equal to the store, diverged runs."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest
from mlflow import MlflowClient

from harness.report.__main__ import main as report_main
from tests.conftest import cli_here


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A small sweep with divergence (gd at large lr) and several minima (six-hump camel)."""
    d = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    args = ["problem=six_hump_camel", "steps=300", f"tracking.uri={uri}", "-m", "optimizer=gd,momentum,adam", "lr=0.001,0.01,0.1,1", "seed=0,1,2"]
    p = cli_here(args, cwd=d)
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
    from harness import analysis
    from harness.store import read_runs

    rs = read_runs(uri, "harness")
    summ = analysis.analyse(rs.runs, 1e-6).bests.set_index("config")
    exp = MlflowClient(uri).get_experiment_by_name("harness").experiment_id
    runs = MlflowClient(uri).search_runs([exp], f"tags.`mlflow.parentRunId` = '{rs.sweep}'", max_results=1000)
    assert len(runs) == 36 == len(rs.runs)
    for opt, row in summ.iterrows():
        at = [r for r in runs if r.data.params["optimizer"] == opt and float(r.data.params["lr"]) == row["best_lr"]]
        vals = [math.inf if r.data.metrics["diverged"] else r.data.metrics["final_suboptimality"] for r in at]
        assert row["median"] == pytest.approx(float(np.median(vals)), rel=1e-12, abs=0)
        div = sum(int(r.data.metrics["diverged"]) for r in runs if r.data.params["optimizer"] == opt)
        assert row["diverged_all"] == div
    assert report_main(["--uri", uri, "--out", str(d / "reports"), "--name", "n", "--no-attach"]) == 0
    md = (d / "reports" / "n" / "report.md").read_text()
    for opt, row in summ.iterrows():  # the markdown table shows the same numbers
        line = [ln for ln in md.splitlines() if ln.startswith(f"| six_hump_camel | {opt} |")][0]
        assert line.startswith(f"| six_hump_camel | {opt} | {row['best_lr']:.3g} | {'= f*' if row['median'] == 0 else format(row['median'], '.3g')} |") and f"| {row['diverged_all']}/12 |" in line


def test_diverged_runs_are_reported_not_dropped(sweep_store):
    d, uri = sweep_store
    from harness import analysis
    from harness.findings import findings
    from harness.store import read_runs

    a = analysis.analyse(read_runs(uri, "harness").runs, 1e-6)
    df = a.df
    gd = df[df.config == "gd"]
    assert gd["diverged"].any() and len(gd) == 12  # lr=1 diverges on six-hump camel, and is still there
    shares = analysis.outcome_shares(df)
    big = shares[(shares.config == "gd") & (shares.lr == 1.0)]
    assert float(big["diverged"].iloc[0]) == 1.0
    assert any("gd diverged at every lr >= 1 (3/3 runs)" in f for f in findings(a))


def test_report_on_empty_store_fails_clearly(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(uri).search_experiments()  # an empty, valid store
    capsys.readouterr()  # MLflow's own log lines from creating it
    assert report_main(["--uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no experiment 'harness'") and len(err.splitlines()) == 1


def frame(rows: list[tuple]):
    """Runs as the store returns them: (lr, seed, final f - f*, diverged, global or None, steps to 1e-6 or None)."""
    import pandas as pd

    out = []
    for lr, seed, final, div, glob, steps in rows:
        r = {"run_id": f"r{len(out)}", "params.lr": str(lr), "params.seed": str(seed), "params.problem": "p", "params.optimizer": "o",
             "metrics.final_suboptimality": final, "metrics.final_loss": final, "metrics.diverged": float(div), "tags.f_star": "0.0"}
        if glob is not None:
            r["metrics.global_min_reached"] = float(glob)
        if steps is not None:
            r["metrics.steps_to_1e-06"] = float(steps)
        out.append(r)
    return pd.DataFrame(out)


BEST_LR_CASES = [
    # (why, runs, expected best lr)
    ("an lr where a seed diverged loses to one where none did",
     [(0.1, 0, 1e-9, 0, None, None), (0.1, 1, 1e-9, 0, None, None), (0.1, 2, math.inf, 1, None, None),
      (0.01, 0, 1e-3, 0, None, None), (0.01, 1, 1e-3, 0, None, None), (0.01, 2, 1e-3, 0, None, None)], 0.01),
    ("when every lr had a divergence, the lowest median wins",
     [(0.1, 0, 1e-9, 0, None, None), (0.1, 1, math.inf, 1, None, None), (0.1, 2, 1e-9, 0, None, None),
      (0.01, 0, 1e-3, 0, None, None), (0.01, 1, math.inf, 1, None, None), (0.01, 2, 1e-3, 0, None, None)], 0.1),
    ("more global minima beat a lower median",
     [(0.1, 0, 0.0, 0, 1, None), (0.1, 1, 2.0, 0, 0, None), (0.01, 0, 0.5, 0, 0, None), (0.01, 1, 0.5, 0, 0, None)], 0.1),
    ("solved medians tie, then fewer steps to target",
     [(0.1, 0, 1e-20, 0, None, 50), (0.1, 1, 1e-30, 0, None, 60), (0.01, 0, 1e-40, 0, None, 300), (0.01, 1, 1e-45, 0, None, 400)], 0.1),
    ("medians equal to 6 digits tie, then the larger lr",
     [(0.1, 0, 12.9340121, 0, None, None), (0.01, 0, 12.934012, 0, None, None), (0.001, 0, 12.9340122, 0, None, None)], 0.1),
]


@pytest.mark.parametrize("why,rows,expected", BEST_LR_CASES, ids=[c[0] for c in BEST_LR_CASES])
def test_best_lr_rule(why, rows, expected):
    from harness import analysis

    b = analysis.analyse(frame(rows), 1e-6).bests
    assert float(b["best_lr"].iloc[0]) == expected, why


def test_report_against_a_dead_server_fails_fast(capsys):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    t0 = time.perf_counter()
    assert report_main(["--uri", f"http://127.0.0.1:{port}"]) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unreachable" in err and len(err.splitlines()) == 1


def test_report_against_a_missing_sqlite_file_creates_nothing(tmp_path, capsys):
    db = tmp_path / "missing.db"
    assert report_main(["--uri", f"sqlite:///{db}", "--out", str(tmp_path / "reports")]) == 2
    assert not db.exists() and not (tmp_path / "reports").exists()
    assert "does not exist" in capsys.readouterr().err
