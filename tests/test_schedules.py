"""Learning-rate schedules: each member of a batch follows torch.optim.lr_scheduler's schedule for its
own lr, stepped after each update, equal to a torch optimizer and scheduler run member by member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.job import run_batch
from harness.plan import plan
from tests.conftest import cli_here, make_cfg, members

STEPS = 40
SCHEDULES = {
    "step": (["schedule=step", "schedule.step_size=7", "schedule.gamma=0.5"],
             lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    "cosine": (["schedule=cosine"], lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0)),
    "warmup_cosine": (
        ["schedule=warmup_cosine", "schedule.warmup_steps=10", "schedule.start_factor=0.1"],
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o, [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS - 10, eta_min=0.0)], milestones=[10]),
    ),
}
# harness optimizer -> (torch class, its kwargs besides lr), lrs that converge on Rosenbrock
OPTIMIZERS = {
    "gd": (torch.optim.SGD, {}, (1e-4, 3e-4)),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}, (1e-5, 1e-4)),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, (1e-5, 1e-4)),
    "adagrad": (torch.optim.Adagrad, {}, (0.05, 0.1)),
    "rmsprop": (torch.optim.RMSprop, {}, (1e-3, 1e-2)),
    "adam": (torch.optim.Adam, {}, (1e-2, 3e-2)),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.01}, (1e-2, 3e-2)),
    "nadam": (torch.optim.NAdam, {}, (1e-2, 3e-2)),  # a torch.optim class, batched through param groups
}


def reference(cls, kwargs, make_scheduler, x0, loss):
    """torch's own loop: update, then scheduler.step(); the loss after each update."""
    x = x0.clone().requires_grad_(True)
    opt = cls([x], **kwargs)
    sched = make_scheduler(opt)
    out = [float(loss(x.detach()[None])[0])]
    for _ in range(STEPS):
        opt.zero_grad()
        loss(x[None]).sum().backward()
        opt.step()
        sched.step()
        out.append(float(loss(x.detach()[None])[0]))
    return np.array(out), x.detach()


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_member_follows_torch_schedulers_for_its_own_lr(optimizer, schedule):
    cls, kwargs, lrs = OPTIMIZERS[optimizer]
    overrides, make_scheduler = SCHEDULES[schedule]
    common = ("problem=rosenbrock", f"optimizer={optimizer}", f"steps={STEPS}", "dtype=float64", *overrides)
    grid = [{"lr": lr, "seed": s} for lr in lrs for s in (0, 1)]
    (batch,), _ = plan(make_cfg(*common, members(*grid)))
    assert len(batch.members) == 4  # one batch, every member its own lr
    res = run_batch(batch)
    x0 = batch.problem.init()
    for i, m in enumerate(grid):
        want, x_end = reference(cls, {"lr": m["lr"], **kwargs}, make_scheduler, x0[i], batch.problem.loss)
        n = int(res.stop_step[i]) + 1
        np.testing.assert_allclose(res.loss[:n, i], want[:n], rtol=1e-10, atol=1e-300)
        if n == STEPS + 1:
            np.testing.assert_allclose(res.final_x[i], x_end.numpy(), rtol=1e-10)
    assert (res.stop_step == STEPS).sum() >= 2  # most members ran the whole schedule


def test_the_schedule_changes_the_run_and_constant_changes_nothing():
    common = ("problem=rosenbrock", "optimizer=adam", "lr=0.01", "steps=60")
    (flat,), _ = plan(make_cfg(*common))
    (const,), _ = plan(make_cfg(*common, "schedule=constant"))
    (cos,), _ = plan(make_cfg(*common, "schedule=cosine"))
    a, b, c = run_batch(flat), run_batch(const), run_batch(cos)
    assert np.array_equal(a.loss, b.loss) and not np.allclose(a.loss, c.loss)


def test_a_schedule_is_a_configuration_in_the_sweep_summary_and_report(tmp_path, store):
    p = cli_here(["problem=quadratic", "optimizer=gd", "steps=200", f"tracking.uri={store}", "-m", "schedule=constant,cosine,step",
                 "schedule.step_size=50", "lr=0.001,0.01", "seed=0,1"], cwd=tmp_path)
    assert p.returncode != 0 and "schedule.step_size" in p.stderr  # step_size is not a key of every schedule: one line
    p = cli_here(["problem=quadratic", "optimizer=gd", "steps=200", f"tracking.uri={store}", "-m", "schedule=constant,cosine",
                 "lr=0.001,0.01", "seed=0,1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "gd (schedule=constant)" in p.stdout and "gd (schedule=cosine)" in p.stdout
    from harness.report.__main__ import main as report_main

    assert report_main(["--uri", store, "--out", str(tmp_path / "r")]) == 0
    md = next((tmp_path / "r").rglob("report.md")).read_text()
    assert "schedule cosine (eta_min=0)" in md and "gd (schedule=cosine)" in md
    from mlflow import MlflowClient

    c = MlflowClient(store)
    names = {r.info.run_name for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id])}
    assert "gd-quadratic-lr=0.01-seed=1-schedule=cosine" in names


BAD = {
    "gamma above 1": (["schedule=step", "schedule.gamma=2"], "schedule.gamma=2 is not allowed; allowed: a number in (0, 1]"),
    "zero step_size": (["schedule=step", "schedule.step_size=0"], "schedule.step_size=0 is not allowed; allowed: an integer >= 1"),
    "warm-up as long as the run": (["schedule=warmup_cosine", "schedule.warmup_steps=50"], "schedule.warmup_steps=50 is not allowed; allowed: an integer 1..49"),
    "negative eta_min": (["schedule=cosine", "schedule.eta_min=-1"], "schedule.eta_min=-1 is not allowed; allowed: a number >= 0"),
    "a key of another schedule": (["schedule=cosine", "+schedule.gamma=0.5"], "unknown key 'schedule.gamma' for schedule=cosine; allowed: eta_min"),
}


@pytest.mark.parametrize("args, expected", BAD.values(), ids=BAD.keys())
def test_bad_schedule_settings_are_refused_in_one_line(args, expected):
    from optimizers.base import ConfigError

    with pytest.raises(ConfigError) as e:
        plan(make_cfg("steps=50", *args))
    assert str(e.value) == expected or expected in str(e.value), str(e.value)


@pytest.mark.parametrize("args, expected", [(["schedule=linear"], "error: schedule=linear is not allowed; allowed: constant, cosine, step, warmup_cosine"),
                                            (["schedule=step", "schedule.gamma=2"], "error: schedule.gamma=2 is not allowed; allowed: a number in (0, 1]")])
def test_bad_schedules_from_the_command_line_exit_2_and_store_nothing(tmp_path, args, expected):
    p = cli_here(["steps=50", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *args], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == expected and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "mlflow.db").exists()
