"""A report for every sweep shape users make, each checked against the store.

For each shape: real sweeps through the CLI into a temporary sqlite store, then
``python -m harness.report``. Every figure must be a valid image that the markdown links, every
summary-table number must equal what ``MlflowClient.search_runs`` returns (recomputed here, without
the harness's analysis), the chosen lr must obey the best-lr rule, and the sweep's printed summary
must show exactly the report's cells.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from harness.report.__main__ import main as report_main
from tests.conftest import cli_here, terminal_sigint

SUMMARY_COLS = 10  # the cells the sweep's printed summary shares with the report's table


# ---- reading what the report and the CLI printed ---------------------------------------------
def md_table(md: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    lines = md.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    split = lambda ln: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]]  # noqa: E731
    rows = []
    for ln in lines[i + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append(split(ln))
    return split(lines[i]), rows


def printed_table(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("problem "))
    rows = []
    for ln in lines[i + 1 :]:
        if not ln.strip():
            break
        rows.append(re.split(r"\s{2,}", ln.strip()))
    return rows


WORDS = {"= f*": 0.0, "diverged": math.inf, "never": math.inf, "–": math.nan}


def num(cell: str) -> float:
    cell = re.sub(r" (steps|evals|examples)$", "", cell.split(" (")[0])
    return WORDS[cell] if cell in WORDS else float(cell.rstrip("%"))


def bounds(cell: str) -> tuple[float, float, float]:
    """``[lo, hi] 75%`` -> (lo, hi, 0.75); ``–`` -> nans."""
    if cell == "–":
        return math.nan, math.nan, math.nan
    inner, level = cell[1:].split("] ")
    lo, hi = (num(v) for v in inner.split(", "))
    return lo, hi, float(level.rstrip("%")) / 100


def split_seeds(runs: list) -> dict[str, tuple[set, set]]:
    """The protocol's default split, recomputed: per problem name, the lower half of its seeds tune and
    the rest report, from 4 seeds on; below that all seeds do both."""
    out = {}
    for prob in {r.data.params["problem"] for r in runs}:
        seeds = sorted({int(r.data.params["seed"]) for r in runs if r.data.params["problem"] == prob})
        k = len(seeds) // 2 if len(seeds) >= 4 else 0
        out[prob] = (set(seeds[:k] or seeds), set(seeds[k:]))
    return out


def same(cell: str, expected: float, digits: int = 3) -> bool:
    got = num(cell)
    if math.isnan(expected) or math.isinf(expected) or expected == 0:
        return got == expected or (math.isnan(got) and math.isnan(expected))
    return got == pytest.approx(float(f"{expected:.{digits}g}"), rel=1e-9)


# ---- recomputing from the store, independently of harness.analysis ---------------------------
def value_of(v):
    def norm(p):
        if isinstance(p, bool) or p is None:
            return p
        if isinstance(p, (int, float)):
            return float(p)
        if isinstance(p, list):
            return [norm(x) for x in p]
        return p

    if v in ("None", "True", "False"):  # params are str() of Python values
        return {"None": None, "True": True, "False": False}[v]
    return norm(yaml.safe_load(v) if isinstance(v, str) else v)


def parse_label(label: str) -> tuple[str, dict]:
    m = re.fullmatch(r"(.+?) \((.*)\)", label)
    if not m:
        return label, {}
    return m.group(1), dict(p.split("=", 1) for p in re.split(r", (?=[\w.]+=)", m.group(2)))


def matches(run, problem: str, config: str) -> bool:
    p = run.data.params
    pname, pkeys = parse_label(problem)
    cname, ckeys = parse_label(config)
    if p["problem"] != pname or p["optimizer"] != cname:
        return False
    for k, v in pkeys.items():
        if value_of(p.get(f"problem.{k}")) != value_of("null" if v == "random" else v):
            return False
    for k, v in ckeys.items():
        key = f"optimizer.{k}" if f"optimizer.{k}" in p else k
        if value_of(p.get(key)) != value_of("null" if (k, v) == ("batch_size", "full") else v):
            return False
    return True


def score(run) -> float:
    m = run.data.metrics
    if m.get("diverged"):
        return math.inf
    return m["final_suboptimality"] if "final_suboptimality" in m else m["final_loss"]


def check_report(d, uri: str, runs: list, report_args: list[str], printed: str | None = None, target: float = 1e-6) -> tuple[str, list[list[str]]]:
    """Write the report and check its figures and every summary number against ``runs`` (from search_runs)."""
    out = d / "reports"
    assert report_main(["--uri", uri, "--out", str(out), "--name", "r", *report_args]) == 0
    md = (out / "r" / "report.md").read_text()
    linked = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", md)
    assert linked, "a report without figures"
    for name in linked:
        img = mpimg.imread(out / "r" / name)  # a valid PNG
        assert img.ndim == 3 and min(img.shape[:2]) > 300, name
    assert sorted(linked) == sorted(p.name for p in (out / "r").glob("*.png"))
    assert "1e-300" not in md and not re.search(r"\bnan\b", md.lower())
    header, rows = md_table(md, "problem")
    assert header[:SUMMARY_COLS] == ["problem", "configuration", "best lr", "median final", "interval (level)", "IQM", f"cost to {target:.0e}",
                                     "diverged at best lr", "diverged (all lrs)", "global min (best lr)"]
    seeds = split_seeds(runs)
    covered = 0
    for row in rows:
        problem, config, best_lr = row[0], row[1], float(row[2])
        mine = [r for r in runs if matches(r, problem, config)]
        assert mine, (problem, config)
        covered += len(mine)
        tune, report = seeds[mine[0].data.params["problem"]]
        at_all = [r for r in mine if float(r.data.params["lr"]) == pytest.approx(best_lr, rel=5e-3)]
        at = [r for r in at_all if int(r.data.params["seed"]) in report]  # every number at the best lr: reporting seeds
        assert at, (problem, config, best_lr)
        # rule 1, on the tuning seeds: an lr with a divergence only when every lr had one
        by_lr: dict[float, list] = {}
        for r in mine:
            if int(r.data.params["seed"]) in tune:
                by_lr.setdefault(float(r.data.params["lr"]), []).append(r)
        clean = [lr for lr, rs in by_lr.items() if not any(x.data.metrics.get("diverged") for x in rs)]
        if clean:
            assert any(best_lr == pytest.approx(c, rel=5e-3) for c in clean), f"{config} on {problem}: best lr {best_lr} has divergences on tuning seeds while {clean} had none"
        n_div = sum(int(r.data.metrics.get("diverged", 0)) for r in at)
        scores = [score(r) for r in at]
        assert same(row[3], float(np.median(scores))), (row, scores)
        lo, hi, level = bounds(row[4])
        if not math.isnan(lo):
            assert lo <= num(row[3]) <= hi or (math.isinf(num(row[3])) and math.isinf(hi))
            n, xs = len(at), sorted(scores)  # [x(k), x(n-k+1)], k the largest whose binomial coverage is >= 95%, else [min, max]
            cover = lambda k, n=n: 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n  # noqa: E731
            k = max([k for k in range(1, n // 2 + 1) if cover(k) >= 0.95] or [1])
            assert same(row[4][1:].split(", ")[0], xs[k - 1]) and level == pytest.approx(cover(k), abs=0.0051), (row[4], xs, k)
        else:
            assert len(at) == 1
        if len(at) > 1 and all(math.isfinite(v) for v in scores):
            from scipy.stats import trim_mean

            assert same(row[5], float(trim_mean(scores, 0.25))), (row, scores)
        fstar = "final_suboptimality" in at[0].data.metrics or any("f_star" in r.data.tags for r in at)
        col = f"steps_to_{target:.0e}"
        if fstar:
            steps = [r.data.metrics.get(col, math.inf) * r.data.metrics.get("grad_evals", 1) / max(r.data.metrics["steps"], 1)
                     if "lbfgs" not in config else r.data.metrics.get(col.replace("steps_", "evals_"), math.inf) for r in at]
            if row[6].endswith(" steps"):
                steps = [r.data.metrics.get(col, math.inf) for r in at]
            elif " examples" in row[6]:  # batch sizes differ: examples seen by the target step
                steps = [r.data.metrics.get(col, math.inf) * r.data.metrics["examples"] / r.data.metrics["steps"] for r in at]
            assert same(row[6], float(np.median(steps)), digits=12), (row, steps)
            reached = sum(math.isfinite(s) for s in steps)
            if 0 < reached < len(at):
                assert f"({reached}/{len(at)})" in row[6]
        else:
            assert row[6] == "–"
        assert row[7] == f"{n_div}/{len(at)}"
        assert row[8] == f"{sum(int(r.data.metrics.get('diverged', 0)) for r in mine)}/{len(mine)}"
        if "global_min_reached" in at[0].data.metrics:
            assert row[9] == f"{np.mean([r.data.metrics['global_min_reached'] for r in at]):.0%}"
        else:
            assert row[9] == "–"
        extra = dict(zip(header, row))
        cost_ci = extra["interval of the cost (level)"]
        if cost_ci != "–":  # the interval brackets the median cost
            slo, shi, _ = bounds(cost_ci)
            assert slo <= num(row[6]) <= shi
        else:
            assert not fstar or len(at) == 1
        for k in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            if f"{k.replace('_', ' ')} (median)" in extra:
                vals = [r.data.metrics["final_" + k] for r in at if "final_" + k in r.data.metrics]
                assert extra[f"{k.replace('_', ' ')} (median)"] == (f"{np.median(vals):.3f}" if vals else "–")
    assert covered == len(runs), "every run belongs to exactly one row"
    check_tuning(md, runs, rows, seeds)
    if printed is not None:  # one analysis, two views: the same cells, the same order
        assert printed_table(printed) == [r[:SUMMARY_COLS] for r in rows]
    return md, rows


def check_tuning(md: str, runs: list, rows: list[list[str]], seeds: dict) -> None:
    """Each problem's tuning-budget table against the store: "tuned" is the summary's median final, and
    the expected best of 1 trial is the (geometric, where f* is known) mean over the lrs of their medians
    on the reporting seeds, recomputed here."""
    for section in md.split("\n## ")[1:]:
        problem = section.splitlines()[0]
        if "### Tuning budget" not in section:
            continue
        part = section.split("### Tuning budget")[1]
        assert ("sampled from the search space" in part) != ("points of the lr grid" in part)
        _, table = md_table(part, "configuration")
        summary = {r[1]: r for r in rows if r[0] == problem}
        assert {r[0] for r in table} == set(summary)
        for r in table:
            config, e1, tuned = r[0], r[2], r[5]
            assert tuned == summary[config][3] or (tuned.startswith("≤") and num(summary[config][3]) <= 1e-12), (tuned, summary[config][3])
            mine = [x for x in runs if matches(x, problem, config)]
            report = seeds[mine[0].data.params["problem"]][1]
            by_lr: dict[str, list] = {}
            for x in mine:
                if int(x.data.params["seed"]) in report:
                    by_lr.setdefault(x.data.params["lr"], []).append(score(x))
            meds = [float(np.median(v)) for v in by_lr.values()]
            assert int(r[1]) == len({x.data.params["lr"] for x in mine})
            fstar = "final_suboptimality" in mine[0].data.metrics
            if not all(math.isfinite(m) for m in meds):
                assert e1 == "∞"
            elif fstar and not e1.startswith("≤"):
                assert same(e1, 10 ** float(np.mean([math.log10(max(m, 1e-12)) for m in meds]))), (r, meds)


def sweep(d, uri: str, args: list[str]) -> str:
    p = cli_here([f"tracking.uri={uri}", *args], cwd=d)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def children(uri: str, flt: str | None = None) -> list:
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("harness").experiment_id
    if flt is None:
        parent = c.search_runs([exp], "tags.`harness.sweep` = 'true'", order_by=["attributes.start_time DESC"], max_results=1)[0]
        flt = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    return [r for r in c.search_runs([exp], flt, max_results=10000) if r.data.tags.get("harness.sweep") != "true" and r.info.status == "FINISHED"]


@pytest.fixture
def where(tmp_path):
    return tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}"


# ---- the matrix --------------------------------------------------------------------------------
def test_several_problems_one_never_reaches_the_target(where):
    d, uri = where
    out = sweep(d, uri, ["-m", "problem=rastrigin,quadratic", "optimizer=gd", "lr=0.001,0.01", "steps=1000"])
    md, rows = check_report(d, uri, children(uri), [], out)
    assert {r[0] for r in rows} == {"rastrigin", "quadratic"}
    assert [r[6] for r in rows if r[0] == "rastrigin"] == ["never"]
    md, _ = check_report(d, uri, children(uri), ["--target", "1e-2"], target=1e-2)  # crashed before
    assert "| cost to 1e-02 |" in md


def test_every_run_diverged(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=gd", "steps=50", "-m", "lr=1,2", "seed=0,1"])
    md, rows = check_report(d, uri, children(uri), [], out)
    assert rows[0][3] == "diverged" and rows[0][7] == "2/2"
    assert "every run diverged at every learning rate tried" in md


def test_runs_ending_exactly_at_fstar(where):
    d, uri = where
    # A = I (no rotation): one GD step with lr = 1 lands exactly on x* = 0
    out = sweep(d, uri, ["problem=quadratic", "problem.dim=2", "problem.mu=1", "problem.L=1", "problem.rotate=false", "optimizer=gd", "steps=50", "-m", "lr=0.5,1.0", "seed=0,1,2"])
    runs = children(uri)
    assert any(r.data.metrics["final_suboptimality"] == 0.0 for r in runs)
    md, rows = check_report(d, uri, runs, [], out)
    assert rows[0][2] == "1" and rows[0][3] == "= f*"


def test_one_seed_one_lr(where):
    d, uri = where
    out = sweep(d, uri, ["problem=rosenbrock", "steps=200", "-m", "optimizer=adam,gd", "lr=0.01"])
    md, rows = check_report(d, uri, children(uri), [], out)
    assert len(rows) == 2 and all(r[4] == "–" for r in rows)  # one seed: no interval
    assert " beat " not in md  # no comparison claimed on one seed


def test_cnn_test_metrics_and_no_fstar_panels(where):
    d, uri = where
    out = sweep(d, uri, ["problem=cnn", "optimizer=momentum", "batch_size=64", "steps=60", "problem.eval_every=20", "-m", "lr=0.05,0.1", "seed=0,1"])
    md, rows = check_report(d, uri, children(uri), [], out)
    header, _ = md_table(md, "problem")
    assert "test accuracy (median)" in header and "test loss (median)" in header
    assert rows[0][6] == "–" and "ecdf_" not in md and "f - f* <=" not in md.split("## How to read")[0]
    setup = md.split("## Set-up")[1]  # what ran: torch's initialisation of the network, mini-batches of 64
    assert "x0=the problem's own initialisation, from the seed" in setup and "random in box" not in setup
    assert "dtype float32; batch_size 64 |" in setup


def test_regressions_have_no_basins_and_no_empty_profile(where):
    d, uri = where
    out = sweep(d, uri, ["-m", "problem=logistic_regression,linear_regression", "optimizer=gd,adam", "lr=0.01,0.1", "seed=0,1", "steps=200"])
    runs = children(uri)
    assert not any("global_min_reached" in r.data.metrics or "basin" in r.data.tags for r in runs)
    md, rows = check_report(d, uri, runs, [], out)
    assert all(r[9] == "–" for r in rows) and "### Where runs ended" not in md
    from harness import analysis
    from harness.store import read_runs

    a = analysis.analyse(read_runs(uri, "harness").runs, 1e-6)
    prof = analysis.performance_profile(a.df, a.bests, 1e-6, np.array([1.0, 2.0, 8.0]), a.protocol.unit)
    assert ("profile.png" in md) == bool(prof)
    assert not prof or any(v.any() for v in prof.values())  # never a profile of zeros


def test_swept_optimizer_hyperparameter_is_not_pooled(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=momentum", "-m", "optimizer.momentum=0.5,0.9,0.99", "lr=0.001,0.003,0.01", "seed=range(5)", "steps=1000"])
    runs = children(uri)
    assert {r.info.run_name for r in runs if r.data.params["lr"] == "0.01" and r.data.params["seed"] == "4"} == {
        f"momentum-quadratic-lr=0.01-seed=4-optimizer.momentum={m}" for m in ("0.5", "0.9", "0.99")}
    assert all(r.data.params["optimizer.lr"] == r.data.params["lr"] for r in runs)
    md, rows = check_report(d, uri, runs, [], out)
    assert [r[1] for r in rows if r[1].startswith("momentum")] and len(rows) == 3
    assert {r[1] for r in rows} == {"momentum (momentum=0.5)", "momentum (momentum=0.9)", "momentum (momentum=0.99)"}
    setup = md.split("## Set-up")[1].split("## quadratic")[0]
    assert "momentum=0.5" in setup and "momentum=0.99" in setup


def test_swept_problem_parameter_is_not_pooled(where):
    d, uri = where
    out = sweep(d, uri, ["problem=rosenbrock", "optimizer=adam", "steps=300", "-m", "problem.grad_noise=0,1.0", "lr=0.001,0.01", "seed=0,1,2"])
    runs = children(uri)
    assert any(r.info.run_name.endswith("-problem.grad_noise=1") for r in runs)
    md, rows = check_report(d, uri, runs, [], out)
    assert {r[0] for r in rows} == {"rosenbrock (grad_noise=0)", "rosenbrock (grad_noise=1)"}


def test_filter_over_two_sweeps_and_single_runs(where):
    d, uri = where
    for steps in (300, 500):
        sweep(d, uri, ["problem=rosenbrock", "optimizer=gd", f"steps={steps}", "-m", "lr=0.001,0.002", "seed=0,1"])
    for extra in (["problem.x0=[-1.5,2]"], ["optimizer=adam", "lr=0.01"]):
        p = cli_here([f"tracking.uri={uri}", "problem=rosenbrock", "optimizer=gd", "lr=0.001", "steps=300", *extra], cwd=d)
        assert p.returncode == 0, p.stderr
    flt = "params.problem = 'rosenbrock'"
    runs = children(uri, flt)
    assert len(runs) == 10
    md, rows = check_report(d, uri, runs, ["--filter", flt])
    assert {(r[0], r[1]) for r in rows} == {("rosenbrock (x0=random)", "gd (steps=300)"), ("rosenbrock (x0=random)", "gd (steps=500)"),
                                            ("rosenbrock (x0=random)", "adam"), ("rosenbrock (x0=[-1.5, 2])", "gd")}
    setup = md.split("## Set-up")[1]
    assert "8 runs from 2 sweep(s) and 2 single run(s)" in setup
    assert setup.count("# sweep ") == 2 and setup.count("# single run") == 2
    assert "steps=300" in setup and "steps=500" in setup and "x0=[-1.5, 2]" in setup
    assert "| steps (max) | 300, 500 |" in setup  # numbers sorted as numbers
    assert "x0=[-1.5, 2], random in box, from the seed" in setup or "random in box, from the seed" in setup
    assert "batch_size" not in setup.split("Reproduce with")[0]  # analytic problems: no mini-batches to speak of


def test_local_minima_ties_summary_equals_report(where):
    """Medians tie at local-minimum values here; the printed summary and the report still agree cell for cell."""
    d, uri = where
    out = sweep(d, uri, ["-m", "problem=double_well,six_hump_camel", "optimizer=gd,momentum,adam", "lr=0.001,0.01,0.1", "seed=range(8)", "steps=500"])
    runs = children(uri)
    medians = {}
    for r in runs:
        medians.setdefault((r.data.params["problem"], r.data.params["optimizer"], r.data.params["lr"]), []).append(score(r))
    rounded = [f"{np.median(v):.5e}" for v in medians.values()]
    assert len(rounded) > len(set(rounded)), "the sweep must contain tied medians"
    md, rows = check_report(d, uri, runs, [], out)
    assert "global minimum from" in md and "### Where runs ended" in md
    assert "### Stability" not in md and "stability_" not in md and "at the edge" not in md  # instruments off: no section, no marks


def test_stopped_sweep_is_reported_as_partial(where):
    d, uri = where
    args = [sys.executable, "-m", "harness", f"tracking.uri={uri}", "-m", "problem=rosenbrock,himmelblau,rastrigin,six_hump_camel,styblinski_tang,quadratic",
            "optimizer=gd", "lr=0.001,0.002", "steps=50000"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"PYTHONUNBUFFERED": "1"}  # progress lines as they happen
    p = subprocess.Popen(args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=terminal_sigint)
    deadline = time.time() + 240
    for line in p.stdout:
        if "runs]" in line or time.time() > deadline:
            break
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=120)
    runs = children(uri)
    assert 0 < len(runs) < 12
    md, _ = check_report(d, uri, runs, [])
    assert f"Partial sweep: {len(runs)} of 12 runs finished" in md


def test_twenty_configurations_stay_readable(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=momentum", "steps=200", "-m", "optimizer.momentum=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95",
                         "optimizer.dampening=0,0.5", "lr=0.001,0.01"])
    md, rows = check_report(d, uri, children(uri), [], out)
    assert len(rows) == 20 and len({r[1] for r in rows}) == 20
    assert all(len(r[1]) <= 45 for r in rows)



def test_lbfgs_against_adam_in_gradient_evaluations(where):
    d, uri = where
    out = sweep(d, uri, ["problem=rosenbrock", "steps=100", "-m", "optimizer=lbfgs,adam", "lr=0.1,1", "seed=0,1"])
    md, rows = check_report(d, uri, children(uri), [], out)
    lbfgs = next(r for r in rows if r[1] == "lbfgs")
    assert lbfgs[6].endswith(" evals") and "cost in gradient evaluations" in md
    assert "gradient evaluations" in md.split("## Findings")[1].split("## Summary")[0]


def test_batch_sizes_in_examples(where):
    d, uri = where
    out = sweep(d, uri, ["problem=logistic_regression", "optimizer=gd", "steps=400", "-m", "batch_size=16,null", "lr=0.3,1", "seed=0,1"])
    md, rows = check_report(d, uri, children(uri), [], out)
    assert {r[1] for r in rows} == {"gd (batch_size=16)", "gd (batch_size=full)"} and "cost in examples" in md
    assert "; batch_size 16, full |" in md.split("## Set-up")[1]
    assert any(r[6].endswith(" examples") for r in rows)


def test_random_search_only(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=momentum", "steps=300", "search.trials=8", "-m", "lr=tag(log, interval(1e-4, 0.3))", "seed=range(4)"])
    runs = children(uri)
    assert len(runs) == 32 and len({r.data.params["lr"] for r in runs}) == 8
    md, rows = check_report(d, uri, runs, [], out)
    assert "sampled from the search space (lr=tag(log, interval(0.0001, 0.3)); 8 Sobol trials, seed 0)" in md
    assert "tuning_quadratic.png" in md and "Stability edges" in md


def test_random_search_crossed_with_a_grid(where):
    d, uri = where
    out = sweep(d, uri, ["problem=rosenbrock", "steps=300", "search.trials=6", "-m", "optimizer=gd,adam", "lr=tag(log, interval(1e-4, 0.1))", "seed=range(4)"])
    runs = children(uri)
    lrs = {o: {r.data.params["lr"] for r in runs if r.data.params["optimizer"] == o} for o in ("gd", "adam")}
    assert len(runs) == 48 and lrs["gd"] == lrs["adam"] and len(lrs["gd"]) == 6  # the same points for every grid cell
    md, rows = check_report(d, uri, runs, [], out)
    assert {r[1] for r in rows} == {"gd", "adam"} and "tuning_rosenbrock.png" in md


def landscape_cells(uri: str, prob: str) -> list:
    from harness import analysis, landscape
    from harness.store import read_runs

    return landscape.landscapes(analysis.analyse(read_runs(uri, "harness").runs, 1e-6).df, prob)


def test_two_keys_on_a_grid_give_a_heatmap(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=momentum", "steps=200", "-m", "lr=0.003,0.01,0.03", "optimizer.momentum=0,0.5,0.9", "seed=range(3)"])
    runs = children(uri)
    md, rows = check_report(d, uri, runs, [], out)
    assert "landscape_quadratic.png" in md and "### Two-hyperparameter landscape" in md
    (land,) = landscape_cells(uri, "quadratic")
    assert land.grid and land.name == "momentum" and len(land.cells) == 9
    for c in land.cells.itertuples():  # each cell: the median over its seeds, from the store
        scores = [score(r) for r in runs if float(r.data.params["lr"]) == c.lr and float(r.data.params["optimizer.momentum"]) == c.value]
        assert c.median == float(np.median(scores)) and c.runs == 3
    assert (land.best()["lr"], land.best()["value"]) == (0.01, 0.9)


def test_two_sampled_keys_give_a_scatter(where):
    d, uri = where
    out = sweep(d, uri, ["problem=quadratic", "optimizer=momentum", "steps=100", "search.trials=8", "-m", "lr=tag(log, interval(1e-3, 0.05))",
                         "optimizer.momentum=interval(0, 0.95)", "seed=range(2)"])
    md, rows = check_report(d, uri, children(uri), [], out)
    (land,) = landscape_cells(uri, "quadratic")
    assert not land.grid and len(land.cells) == 8 and "landscape_quadratic.png" in md


def test_batch_sizes_scale(where):
    d, uri = where
    sweep(d, uri, ["problem=logistic_regression", "optimizer=gd", "steps=150", "-m", "batch_size=8,32,128", "lr=0.3,1", "seed=range(4)"])
    runs = children(uri)
    md, rows = check_report(d, uri, runs, ["--target", "1e-2"], target=1e-2)
    assert "### Batch-size scaling" in md and "batch_logistic_regression.png" in md
    _, table = md_table(md.split("### Batch-size scaling")[1], "optimizer")
    summary = {r[1]: r for r in rows}
    assert [r[1] for r in table] == ["8", "32", "128"]
    for r in table:  # steps to target at that batch size's best lr, over the reporting seeds, from the store
        best_lr = float(summary[f"gd (batch_size={r[1]})"][2])
        at = [x for x in runs if x.data.params["batch_size"] == r[1] and float(x.data.params["lr"]) == best_lr and int(x.data.params["seed"]) >= 2]
        steps = [x.data.metrics.get("steps_to_1e-02", math.inf) for x in at]
        assert same(r[3], float(np.median(steps)), digits=12) and r[2] == summary[f"gd (batch_size={r[1]})"][2]
        assert same(r[4], float(np.median(steps)) * int(r[1]), digits=12)
    assert "B_crit" in md or "no fit" in md


def test_instruments_stability_section_against_the_store(where):
    """Instruments on a local-minimum landscape, an adaptive optimizer among them: the Stability table's
    threshold, edge ratio, class and divergences per (configuration, lr), the minima's sharpness and the
    edge finding, each recomputed from MlflowClient's metrics."""
    d, uri = where
    out = sweep(d, uri, ["problem=six_hump_camel", "instruments=curvature", "instruments.every=10", "steps=200", "-m", "optimizer=gd,momentum,adam",
                         "lr=0.01,0.05,0.1", "seed=range(5)"])
    runs = children(uri)
    md, rows = check_report(d, uri, runs, [], out)
    header, _ = md_table(md, "problem")
    assert {"edge ratio (sharpness / threshold, last third) (median, interval)", "final sharpness λmax(H) (median, interval)",
            "final preconditioned sharpness λmax(P⁻¹H) (median, interval)", "stability threshold on sharpness (median, interval)"} <= set(header)
    section = md.split("### Stability")[1].split("\n### ")[0]
    assert "![stability on six_hump_camel](stability_six_hump_camel.png)" in section
    _, table = md_table(section, "configuration")
    assert {(r[0], float(r[1])) for r in table} == {(o, lr) for o in ("gd", "momentum", "adam") for lr in (0.01, 0.05, 0.1)}
    edge = []
    for config, lr, threshold, ratio, _, cls, diverged in table:
        at = [r for r in runs if r.data.params["optimizer"] == config and float(r.data.params["lr"]) == float(lr)]
        ok = [r for r in at if not r.data.metrics.get("diverged")]
        k = len(at) - len(ok)
        assert diverged == f"{k}/{len(at)}" and len(at) == 5
        assert same(threshold.split(" = ")[1], at[0].data.metrics["stability_threshold"], digits=4)
        assert threshold.startswith({"gd": "2/lr", "momentum": "2(1+b)/lr, b=0.9", "adam": "(2+2b1)/((1-b1)lr), b1=0.9"}[config])
        med = float(np.median([r.data.metrics["edge_ratio"] for r in ok]))
        assert same(ratio, med)
        assert cls == ("diverged" if 2 * k > len(at) else "at the edge" if k or med >= 0.8 else "stable"), (config, lr, med, k)
        if cls != "diverged" and med >= 0.8:
            edge.append(f"{config} at lr {lr}: {med:.2f} x ")
    assert edge, "the sweep must hold an lr at the edge (GD at 0.1 in a global minimum: 16.49 x 0.1 / 2 = 0.82)"
    finding = next(ln for ln in md.splitlines() if "sat at the edge of stability" in ln)
    assert all(e in finding for e in edge) and finding.count(" at lr ") == len(edge)
    minima = md.split("### Where runs ended")[1].split("\n### ")[0]
    _, mrows = md_table(minima, "configuration")
    for config, minimum, n, sharp, _ in mrows:
        basin = minimum.rsplit(" (", 1)[0]
        ended = [r.data.metrics["final_sharpness"] for r in runs if r.data.params["optimizer"] == config and r.data.tags.get("basin") == basin
                 and not r.data.metrics.get("diverged")]
        assert int(n) == len(ended) and same(sharp, float(np.median(ended)))
    kinds = {r[1].rsplit(" (", 1)[1] for r in mrows}
    assert kinds == {"local)", "global)"} and any(r[4] == "flattest" for r in mrows)
