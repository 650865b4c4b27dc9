"""The report's command line: where it writes, bad arguments, and Ctrl-C leaving nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.report.__main__ import main as report_main
from tests.conftest import ROOT, cli_here, terminal_sigint


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("report_cli")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    p = cli_here(
        [
            "problem=six_hump_camel",
            "steps=200",
            f"tracking.uri={uri}",
            "-m",
            "optimizer=gd,adam",
            "lr=0.01,0.1",
            "seed=0,1,2,3",
        ],
        cwd=d,
    )
    assert p.returncode == 0, p.stderr
    return d, uri


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_unknown_sweep_is_named(sweep, tmp_path, capsys):
    _, uri = sweep
    assert report_main(["--uri", uri, "--sweep", "deadbeef", "--out", str(tmp_path)]) == 2
    assert one_line(capsys).startswith(
        f"error: no sweep deadbeef in experiment 'harness' of {uri}; allowed: the id of a sweep's parent run"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_is_one_line(sweep, capsys):
    _, uri = sweep
    assert report_main(["--uri", uri, "--out", "/proc/nope", "--no-attach"]) == 2
    assert one_line(capsys).startswith("error: --out=/proc/nope cannot hold a report (")


def test_the_default_out_is_an_ignored_folder(sweep, tmp_path, monkeypatch, capsys):
    """Without --out, reports go to outputs/reports, which git ignores (the tracked reports/ holds only
    the committed example)."""
    _, uri = sweep
    monkeypatch.chdir(tmp_path)
    assert report_main(["--uri", uri, "--name", "d", "--no-attach"]) == 0
    assert "Report: outputs/reports/d/report.md" in capsys.readouterr().out
    assert (tmp_path / "outputs/reports/d/report.md").is_file()
    assert [p.name for p in (tmp_path / "outputs/reports").iterdir()] == ["d"]  # no staging folder left
    ignored = subprocess.run(["git", "check-ignore", "-q", "outputs/reports/d/report.md"], cwd=ROOT)
    assert ignored.returncode == 0


def test_ctrl_c_leaves_the_previous_report_whole(sweep, tmp_path):
    """Ctrl-C (to the whole process group, as a terminal sends it) while figures are being drawn: one
    line, exit 130, the previous report untouched, no partial folder left."""
    d, uri = sweep
    out = tmp_path / "reports"
    args = [sys.executable, "-m", "harness.report", "--uri", uri, "--out", str(out), "--name", "r", "--no-attach"]
    assert subprocess.run(args, cwd=d, capture_output=True).returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "r").iterdir()}
    p = subprocess.Popen(
        args,
        cwd=d,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=terminal_sigint,
    )
    deadline = time.time() + 120
    while not any(s.glob("*.png") for s in out.glob(".report-*")):  # mid-write: some figures drawn
        assert p.poll() is None and time.time() < deadline, "the report ended before it could be interrupted"
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert stderr.strip() == f"interrupted: no report was written (nothing changed under {out})"
    assert [x.name for x in out.iterdir()] == ["r"]
    assert {x.name: x.read_bytes() for x in (out / "r").iterdir()} == before


def test_figure_titles_fit_their_figures(sweep, tmp_path, monkeypatch):
    """Every figure's title lies within its figure, down to one narrow panel (the trajectories of one
    configuration), where a one-line title was clipped on both sides."""
    from harness.report import figures

    save = figures._save

    def checked(fig, path):
        fig.canvas.draw()
        if fig._suptitle is not None:
            box = fig._suptitle.get_window_extent()
            assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (path.name, fig._suptitle.get_text())
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", checked)
    _, uri = sweep
    args = ["--uri", uri, "--filter", "params.optimizer = 'adam'", "--out", str(tmp_path), "--name", "one"]
    assert report_main(args) == 0
    assert (tmp_path / "one" / "trajectories_six_hump_camel.png").is_file()
