"""Per-run cost at scale, measured in one run: time, validation, store size and peak memory of sweeps
of 100 to 100,000 runs (1,000,000 with --million), the report over the largest (whole, and with
--filter over a fifth of it), and one run into an existing store against `import torch`.

The sweep (issue 10's): 5 optimizers (gd, momentum, nesterov, rmsprop, adam) x 20 learning rates
(1e-5 ... 1, log-spaced) x S seeds on 2-D Rosenbrock, 2,000 steps, from the command line into a fresh
sqlite store. Printed per size: wall time, the sweep's own "validated in" time, the store (database
file plus artifact files, in bytes; and `du` of both, which counts whole disk blocks) per run, and the
peak resident memory of the process and its children together; then the growth from one size to the next (time and memory
against runs: linear time is x10 per x10 runs, flat memory x1.0). Then, on the largest store: reading
the runs back (from the run tables and from MLflow's tables), the sweep's closing summary alone (read
and analyse, its time and peak memory), the report end to end (`python -m harness.report`, median of --reps) and with `--filter
"params.optimizer = 'adam'"`, and one more run (`python -m harness`) against `python -c "import
torch"` (medians of --reps, interleaved).

Targets (issue 18): 100,000 runs <= 60 s, <= 1 GB peak (flat in the number of runs), <= 25 KB per run,
validation <= 2 s, report <= 10 s (also with --filter); 1,000,000 runs <= 10 min, <= 1.5 GB; one run
<= 1 s beyond importing torch.

    .venv/bin/python bench/scale.py [--reps 3] [--sizes 1,10,100,1000] [--million] [--against COMMIT]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

OPTIMIZERS = "gd,momentum,nesterov,rmsprop,adam"
LRS = ",".join(f"{v:.3g}" for v in np.logspace(-5, 0, 20))


READ = """
from pathlib import Path
from harness.store.reader import _sweep_frame
from harness.store.tables import Tables
t = Tables.open_sqlite(Path({db!r}))
sweep = t.latest_sweep("1")
df = _sweep_frame(t, "1", sweep) if {how!r} == "run_tables" else t.frame(t.members("1", sweep))
assert len(df) > 0
"""

SUMMARY = """
from harness import analysis
from harness.store import read_runs
from harness.store.reader import NOT_ANALYSED
rs = read_runs("sqlite:///{db}", "harness", skip=NOT_ANALYSED)
a = analysis.analyse(rs.runs, analysis.DEFAULT_TARGET)
assert len(a.bests) > 0
"""


def timed(cmd: list[str], cwd: str, env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak resident bytes, stdout) of a command, failing loudly. The peak is that of the
    command and its child processes together (a sqlite store's writer process): the most their resident
    memory summed to, sampled every 0.1 s, or the command's own peak if that is more."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tree, done = [0], threading.Event()
    sampler = threading.Thread(target=_sample_tree, args=(p.pid, tree, done), daemon=True)
    sampler.start()
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out[-3000:]}")
    return dt, max(usage.ru_maxrss * 1024, tree[0]), out


def _sample_tree(pid: int, peak: list[int], done: threading.Event) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    while not done.wait(0.1):
        stats = {}
        for d in os.listdir("/proc"):
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split() if d.isdigit() else None
            except OSError:
                continue
            if fields:
                stats[int(d)] = (int(fields[1]), int(fields[21]) * page)  # parent pid, resident bytes
        tree, grew = {pid}, True
        while grew:
            more = {p for p, (parent, _) in stats.items() if parent in tree} - tree
            tree, grew = tree | more, bool(more)
        peak[0] = max(peak[0], sum(stats[p][1] for p in tree if p in stats))


def sweep_cmd(tmp: str, seeds: int) -> list[str]:
    return [sys.executable, "-m", "harness", "problem=rosenbrock", "steps=2000", f"tracking.uri=sqlite:///{tmp}/s.db", "-m",
            f"optimizer={OPTIMIZERS}", f"lr={LRS}", f"seed=range({seeds})"]


def against(commit: str) -> None:
    """10,000 runs on ``commit`` (a detached worktree, first on PYTHONPATH) and on this tree, interleaved
    old, new, new, old: time, bytes per run and peak memory, medians and the ratio."""
    root = Path(__file__).resolve().parent.parent
    old = tempfile.mkdtemp(prefix="scale-commit-")
    subprocess.run(["git", "worktree", "add", "--detach", old, commit], cwd=root, check=True, capture_output=True)
    got: dict[str, list] = {"old": [], "new": []}
    try:
        for which in ("old", "new", "new", "old"):
            tmp = tempfile.mkdtemp(prefix="scale-")
            env = {**os.environ, "PYTHONPATH": old if which == "old" else str(root)}
            dt, peak, _ = timed(sweep_cmd(tmp, 100), tmp, env)
            got[which].append((dt, size(tmp)[0] / 10_000, peak))
            subprocess.run(["rm", "-rf", tmp])
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", old], cwd=root, capture_output=True)
    med = {w: [statistics.median(v[i] for v in got[w]) for i in range(3)] for w in got}
    (to, bo, mo), (tn, bn, mn) = med["old"], med["new"]
    print(f"10,000 runs, {commit} against this tree (interleaved, medians of 2): {to:.1f} s vs {tn:.1f} s (x{to / tn:.2f} faster), "
          f"{bo / 1024:.1f} vs {bn / 1024:.1f} KB per run, {mo / 2**20:.0f} vs {mn / 2**20:.0f} MB peak")


def size(tmp: str) -> tuple[int, int]:
    """(bytes of files, disk usage) of the database and the artifacts."""
    files = [Path(tmp) / "s.db", *[p for p in (Path(tmp) / "mlruns").rglob("*") if p.is_file()]]
    out = subprocess.run(["du", "-s", "--block-size=1", f"{tmp}/s.db", f"{tmp}/mlruns"], capture_output=True, text=True).stdout
    du = sum(int(line.split()[0]) for line in out.splitlines())
    return sum(p.stat().st_size for p in files), du


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="1,10,100,1000", help="seeds per size (runs = 100 x seeds)")
    ap.add_argument("--million", action="store_true", help="also 1,000,000 runs (10,000 seeds; ~15 GB of disk)")
    ap.add_argument("--against", metavar="COMMIT", help="also time 10,000 runs on this git commit and on the working tree, interleaved")
    a = ap.parse_args()
    seeds = [int(s) for s in a.sizes.split(",")] + ([10000] if a.million else [])
    print(f"5 optimizers x 20 lrs x seeds, rosenbrock, 2,000 steps, fresh sqlite store ({os.cpu_count()} cores)")
    print(f"{'runs':>7} {'wall s':>7} {'ms/run':>7} {'validate s':>10} {'KB/run':>7} {'du KB/run':>9} {'peak MB':>8}")
    rows, keep = [], None
    for s in seeds:
        tmp = tempfile.mkdtemp(prefix="scale-")
        dt, peak, out = timed(sweep_cmd(tmp, s), tmp)
        n = 100 * s
        valid = float(re.search(r"validated in ([0-9.]+) s", out).group(1))
        b, du = size(tmp)
        rows.append((n, dt, valid, b / n, du / n, peak))
        print(f"{n:>7} {dt:>7.1f} {1000 * dt / n:>7.2f} {valid:>10.1f} {b / n / 1024:>7.1f} {du / n / 1024:>9.1f} {peak / 2**20:>8.0f}", flush=True)
        if keep is not None:
            subprocess.run(["rm", "-rf", keep])
        keep = tmp
    for (n0, t0, *_, m0), (n1, t1, *_, m1) in zip(rows, rows[1:]):
        print(f"  {n0} -> {n1} runs: x{t1 / t0:.1f} time, x{m1 / m0:.2f} peak memory for x{n1 / n0:.0f} runs")
    if a.against:
        against(a.against)
    n, dt, valid, per, du, peak = rows[-1]
    uri = f"sqlite:///{keep}/s.db"
    report = [sys.executable, "-m", "harness.report", "--uri", uri, "--no-attach"]
    rep, flt, one, imp = [], [], [], []
    for i in range(a.reps):
        rep.append(timed([*report, "--out", f"{keep}/reports/all{i}"], keep)[0])
        flt.append(timed([*report, "--filter", "params.optimizer = 'adam'", "--out", f"{keep}/reports/adam{i}"], keep)[0])
        one.append(timed([sys.executable, "-m", "harness", f"tracking.uri={uri}", "seed=12345"], keep)[0])
        imp.append(timed([sys.executable, "-c", "import torch"], keep)[0])
    R, F, ONE, IMP = (statistics.median(v) for v in (rep, flt, one, imp))
    reads = {how: timed([sys.executable, "-c", READ.format(db=f"{keep}/s.db", how=how)], keep) for how in ("run_tables", "mlflow_tables")}
    (t_rt, m_rt, _), (t_ml, m_ml, _) = reads["run_tables"], reads["mlflow_tables"]
    print(f"reading the {n} runs back (process start included): from the run tables {t_rt:.1f} s, {m_rt / 2**20:.0f} MB peak; "
          f"from MLflow's tables {t_ml:.1f} s, {m_ml / 2**20:.0f} MB peak: x{t_ml / t_rt:.1f} the time")
    t_su, m_su, _ = timed([sys.executable, "-c", SUMMARY.format(db=f"{keep}/s.db")], keep)
    print(f"the sweep's closing summary alone (read and analyse the {n} runs, as harness/summary.py does): {t_su:.1f} s, {m_su / 2**20:.0f} MB peak")
    print(f"report over {n} runs: {R:.1f} s; with --filter over the {n // 5} adam runs: {F:.1f} s (medians of {a.reps}, process start included)")
    print(f"one run into that store: {ONE:.2f} s; `import torch` alone {IMP:.2f} s -> {ONE - IMP:.2f} s beyond it, x{ONE / IMP:.2f} (medians of {a.reps})")
    at = {r[0]: r for r in rows}
    print()
    if 100_000 in at:
        _, dt1, v1, per1, du1, pk1 = at[100_000]
        print(f"targets at 100,000 runs: {dt1:.1f} s <= 60 s, {per1 / 1024:.1f} KB/run (du {du1 / 1024:.1f}) <= 25 KB, "
              f"{pk1 / 2**30:.2f} GB <= 1 GB, validation {v1:.1f} s <= 2 s")
    if 1_000_000 in at:
        _, dt2, _, _, _, pk2 = at[1_000_000]
        print(f"targets at 1,000,000 runs: {dt2 / 60:.1f} min <= 10 min, {pk2 / 2**30:.2f} GB <= 1.5 GB")
    print(f"report over {n} runs {R:.1f} s, filtered {F:.1f} s <= 10 s; one run +{ONE - IMP:.2f} s <= 1 s")
    subprocess.run(["rm", "-rf", keep])


if __name__ == "__main__":
    main()
