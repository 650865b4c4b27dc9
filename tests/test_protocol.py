"""The comparison protocol (harness/protocol.py, comparisons.py, findings.py): each result counted once
and from the code that ran, tuning and reporting seeds apart, cost in the unit that costs, paired tests
with Holm's correction, and findings that are true sentences."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
from mlflow import MlflowClient

from harness import analysis
from harness.findings import findings
from harness.protocol import ProtocolError
from harness.report.__main__ import main as report_main
from tests.conftest import ROOT, cli_here, run_cli


# ---- 1. each result counted once, from the code that ran (real sweeps) -----------------------
def test_an_edited_optimizer_reruns_and_an_untouched_one_resumes(tmp_path):
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "lion.py", tmp_path / "myopt.py")
    (tmp_path / "conf" / "optimizer" / "myopt.yaml").write_text("_target_: myopt.lion\nname: myopt\nlr: 1.0e-4\nbetas: [0.9, 0.99]\nweight_decay: 0.0\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"tracking.uri={uri}", "problem=quadratic", "steps=50", "-m",
            "optimizer=myopt,gd", "lr=0.01,0.02"]
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    first = run_cli(args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    src = (tmp_path / "myopt.py").read_text()
    (tmp_path / "myopt.py").write_text(src.replace("bcast(lr, p) * (torch.sign", "0.5 * bcast(lr, p) * (torch.sign"))  # halve the step
    assert src != (tmp_path / "myopt.py").read_text()
    second = run_cli(args, cwd=tmp_path, env=env)
    out = second.stdout + second.stderr
    assert second.returncode == 0, second.stderr
    assert "2 of 4 runs stored from the current code; myopt.py changed since the stored runs: 2 runs to rerun" in out
    assert "Sweep already complete" in (run_cli(args, cwd=tmp_path, env=env).stdout)  # and then nothing is stale
    c = MlflowClient(uri)
    kids = [r for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(kids) == 6 and sum(r.data.params["optimizer"] == "gd" for r in kids) == 2  # gd was not rerun
    assert report_main(["--uri", uri, "--out", str(tmp_path / "reports"), "--name", "r", "--no-attach"]) == 0
    md = (tmp_path / "reports" / "r" / "report.md").read_text()
    assert "4 finished runs counted" in md and "2 run(s) of quadratic / myopt ran older code" in md


def test_overlapping_sweeps_count_each_seed_once(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for seeds in ("range(2)", "range(4)"):
        p = cli_here([f"tracking.uri={uri}", "problem=quadratic", "optimizer=gd", "steps=50", "-m", "lr=0.001,0.01", f"seed={seeds}"], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    flt = "params.problem = 'quadratic'"
    assert report_main(["--uri", uri, "--filter", flt, "--out", str(tmp_path / "reports"), "--name", "r"]) == 0
    md = (tmp_path / "reports" / "r" / "report.md").read_text()
    assert "8 finished runs counted" in md and "4 run(s) repeated a (problem, configuration, lr, seed) already counted" in md
    assert "| seeds | 4 | 0, 1, 2, 3 |" in md and "diverged at best lr" in md and "| 0/2 |" in md  # 2 reporting seeds, not 4 or 6
    capsys.readouterr()
    for bad, why in ((["--select", "val_loss"], "--select=val_loss is not allowed for problem quadratic: its runs logged no val_loss; allowed: final"),
                     (["--tune-seeds", "9"], "--tune-seeds=9 is not allowed; allowed: half, all, or an integer 0..3 (these runs have 4 seeds)")):
        assert report_main(["--uri", uri, "--filter", flt, "--out", str(tmp_path / "bad"), *bad]) == 2
        assert capsys.readouterr().err == f"error: {why}\n" and not (tmp_path / "bad").exists()


# ---- runs as the store returns them, for the rules themselves ---------------------------------
def runs(rows: list[dict]) -> pd.DataFrame:
    """Each row: optimizer, lr, seed, final (f - f*, inf = diverged) and any extra metric or param."""
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        final = r.pop("final")
        d = {"run_id": f"r{i}", "start_time": i, "params.problem": r.pop("problem", "p"), "params.optimizer": r.pop("opt"),
             "params.lr": str(r.pop("lr")), "params.seed": str(r.pop("seed")), "metrics.diverged": float(math.isinf(final)),
             "metrics.final_suboptimality": final, "metrics.final_loss": final, "metrics.steps": 100.0, "tags.f_star": "0.0",
             "params.stats.targets": "[1e-06]"}
        d.update({k if k.startswith(("params.", "tags.")) else f"metrics.{k}": v for k, v in r.items()})
        out.append(d)
    return pd.DataFrame(out)


def grid(opt: str, values: dict, seeds=range(4), **extra) -> list[dict]:
    """values: lr -> a final value per seed (a list) or one for all."""
    return [{"opt": opt, "lr": lr, "seed": s, "final": v[s] if isinstance(v, list) else v, **extra} for lr, v in values.items() for s in seeds]


# ---- 2. tune on some seeds, report on others --------------------------------------------------
def test_count_once_keeps_the_newest_of_each_experiment_from_the_newest_code_in_any_row_order():
    """Rule 1 on a frame in no particular order, with repeated index labels (as concatenated reads give):
    the newest run of each experiment is kept, never a run of older code, rows in index order."""
    from harness.protocol import Protocol, count_once

    rows = [  # (index label, seed, code, start_time)
        (5, 0, "new", 30), (5, 0, "new", 10),  # the same experiment twice: the later one stays
        (2, 1, "new", 20),
        (9, 2, "old", 2),  # older code (the newest run is of "new"): set aside
        (1, 2, "new", 5),
        (7, 3, "old", 1),  # older code of an experiment without a run of the newest code: set aside too
    ]
    df = pd.DataFrame({"params.problem": "quadratic", "params.optimizer": "adam", "params.lr": "0.1",
                       "params.seed": [str(r[1]) for r in rows], "tags.harness.code_hash": [r[2] for r in rows],
                       "start_time": [r[3] for r in rows], "marker": range(len(rows))}, index=[r[0] for r in rows])
    proto = Protocol()
    kept = count_once(df, proto)
    assert list(kept["marker"]) == [4, 2, 0]  # start times 5, 20 and 30, in index order 1, 2, 5
    assert proto.duplicates == 1 and proto.older_code == {"quadratic / adam": 2}
    assert len(df) == 6 and "tuning" not in df  # the caller's frame is left as it was


def test_the_lr_is_chosen_on_tuning_seeds_and_reported_on_the_others():
    # seeds 0, 1 (tuning) favour lr=0.1; on seeds 2, 3 (reporting) it did worse: the report says so
    a = analysis.analyse(runs(grid("gd", {0.1: [1e-9, 1e-9, 1e-2, 3e-2], 0.01: [1e-4] * 4})), 1e-6)
    b = a.bests.iloc[0]
    assert b["best_lr"] == 0.1 and b["tune_median"] == 1e-9 and b["median"] == pytest.approx(2e-2) and b["seeds"] == 2
    assert a.protocol.tune_seeds["p"] == [0, 1] and a.protocol.report_seeds["p"] == [2, 3]
    shared = analysis.analyse(runs(grid("gd", {0.1: 1e-3}, seeds=range(3))), 1e-6)  # too few seeds to split
    assert shared.protocol.shared("p") and shared.bests.iloc[0]["seeds"] == 3
    chosen = analysis.analyse(runs(grid("gd", {0.1: 1e-3}, seeds=range(6))), 1e-6, tune=2)
    assert chosen.protocol.tune_seeds["p"] == [0, 1] and chosen.protocol.report_seeds["p"] == [2, 3, 4, 5]
    with pytest.raises(ProtocolError, match=r"--tune-seeds=6 is not allowed; allowed: half, all, or an integer 0..5"):
        analysis.analyse(runs(grid("gd", {0.1: 1e-3}, seeds=range(6))), 1e-6, tune=6)


def test_a_network_is_selected_by_validation_loss_and_reported_on_test():
    # adam ends lower on the training loss, gd on the validation loss: the CNN ranks by validation
    rows = grid("adam", {0.01: 0.01}, final_val_loss=0.30, final_test_loss=0.27, final_test_accuracy=0.967)
    rows += grid("gd", {0.1: 0.05}, final_val_loss=0.08, final_test_loss=0.07, final_test_accuracy=0.983)
    df = runs(rows).drop(columns=["metrics.final_suboptimality", "tags.f_star"])
    a = analysis.analyse(df, 1e-6)
    assert a.protocol.select["p"] == "val_loss" and list(a.bests["config"]) == ["gd", "adam"]
    assert a.bests.set_index("config").loc["gd", "metrics.final_test_accuracy"] == 0.983  # declared metrics: their run-table column
    assert list(analysis.analyse(df, 1e-6, select="train_loss").bests["config"]) == ["adam", "gd"]
    with pytest.raises(ProtocolError, match="--select=val_accuracy is not allowed for problem p: its runs logged no val_accuracy"):
        analysis.analyse(df, 1e-6, select="val_accuracy")


# ---- 3. cost in the unit that costs -----------------------------------------------------------
def test_lbfgs_is_compared_in_gradient_evaluations():
    rows = grid("lbfgs", {1.0: 0.0}, **{"steps_to_1e-06": 2.0, "evals_to_1e-06": 44.0, "grad_evals": 300.0})
    rows += grid("adam", {0.1: 1e-13}, **{"steps_to_1e-06": 30.0, "grad_evals": 100.0})  # both solved: cost decides
    a = analysis.analyse(runs(rows), 1e-6)
    assert a.protocol.unit["p"] == "evals"
    cost = a.bests.set_index("config")["steps"]
    assert cost["lbfgs"] == 44.0 and cost["adam"] == 30.0 and list(a.bests["config"]) == ["adam", "lbfgs"]


def test_batch_sizes_are_compared_in_examples():
    # full batch (455 examples a step) reaches the target in 10 steps, batch size 1 in 500: 4,550 vs 500 examples
    rows = grid("gd", {0.1: 1e-8}, **{"steps_to_1e-06": 10.0, "examples": 45500.0, "params.batch_size": "None"})
    rows += grid("gd", {0.1: 1e-8}, **{"steps_to_1e-06": 500.0, "examples": 100.0, "params.batch_size": "1"})
    a = analysis.analyse(runs(rows), 1e-6)
    assert a.protocol.unit["p"] == "examples"
    assert dict(zip(a.bests["config"], a.bests["steps"])) == {"gd (batch_size=1)": 500.0, "gd (batch_size=full)": 4550.0}
    assert a.bests.iloc[0]["config"] == "gd (batch_size=1)"


# ---- 4. paired tests with Holm's correction -----------------------------------------------------
def test_paired_wins_with_holm_and_the_probability_of_improvement():
    seeds = range(20)  # 10 reporting seeds
    rows = grid("adam", {0.1: [1e-8] * 20}, seeds) + grid("gd", {0.1: [1e-3] * 20}, seeds)
    rows += grid("momentum", {0.1: [1e-8 if s % 2 else 1e-3 for s in seeds]}, seeds)  # wins half the seeds against adam's 1e-8
    a = analysis.analyse(runs(rows), 1e-6)
    c = a.comparisons.set_index("other")
    assert c.loc["gd", "wins"] == 10 and c.loc["gd", "p"] == pytest.approx(2 / 1024) and c.loc["gd", "p_holm"] == pytest.approx(4 / 1024)
    assert bool(c.loc["gd", "better"]) and not bool(c.loc["momentum", "better"])
    assert (c.loc["gd", "win_lo"], c.loc["gd", "win_hi"]) == pytest.approx((0.6915, 1.0), abs=1e-4)  # Clopper-Pearson, 10/10
    text = findings(a)
    assert any("adam beat gd on 10 of 10 paired seeds" in f and "after Holm's correction" in f for f in text)
    assert any("momentum is indistinguishable from adam on 10 paired seeds" in f for f in text)
    few = analysis.analyse(runs(grid("adam", {0.1: 1e-8}) + grid("gd", {0.1: 1e-3})), 1e-6)  # 2 reporting seeds
    assert not few.comparisons["better"].any() and any("no sign test can reach p < 0.05" in f for f in findings(few))


# ---- 5. findings are true sentences --------------------------------------------------------------
def test_findings_on_the_shapes_that_produced_wrong_ones():
    # momentum never converged and is flat in lr: as flat as adam, but it must not be called robust
    rows = grid("adam", {0.01: 1e-13, 0.1: 1e-13, 1.0: 1e-13}, **{"steps_to_1e-06": 40.0})
    rows += grid("momentum", {0.01: 1.02, 0.1: 1.02, 1.0: 1.03})
    rows += grid("gd", {0.01: 0.0, 0.1: 0.0}, **{"steps_to_1e-06": 5.0})  # exactly at f*
    rows += grid("nesterov", {0.1: math.inf})  # never reached the target: diverged everywhere
    text = findings(analysis.analyse(runs(rows), 1e-6))
    robust = [f for f in text if "robust" in f]
    assert robust == ["On p, of the configurations whose best median is within 10x of the best (or <= 1e-12), adam was the most robust to the lr: "
                      "within 10x of its own best over 2.0 decades (tuning seeds)."]
    assert "On p, gd at lr=0.1 ranked first: it reached f - f* <= 1e-06 in a median 5 steps (2/2 reporting seeds)." in text
    assert "On p, nesterov diverged at every lr >= 0.1 (4/4 runs)." in text
    one_lr = analysis.analyse(runs(grid("adam", {0.1: 1e-3, 1.0: 1.0}) + grid("gd", {0.1: 2e-3, 1.0: 1.0})), 1e-6)
    assert not [f for f in findings(one_lr) if "robust" in f]  # within 10x at their best lr alone: 0 decades, no claim
    joined = " ".join(text)
    assert "where it did not" not in joined and "inf" not in joined and " than " not in joined
