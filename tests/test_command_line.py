"""What the command line shows and how it reads the learning rate, run in this process."""

from __future__ import annotations

from tests.conftest import sweep_runs


def test_help_describes_the_tool_the_groups_and_the_main_keys(harness_cli):
    p = harness_cli(["--help"])
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert text.startswith("python -m harness: run gradient-based optimizers")
    assert "-m KEY=A,B,C" in text and "a sweep over every combination" in text
    assert (
        "optimizer: adagrad, adam, adamw, gd," in text
        and "problem: cnn, double_well," in text
        and "grid: lr_decades, lr_seeds" in text
    )
    for key in ("lr=0.01", "steps=2000", "seed=0", "batch_size=N", "stop.grad_tol", "tracking.uri=", "--cfg job"):
        assert key in text, key
    assert "parent_run_id" not in text and "members" not in text and "powered by Hydra" not in text


def test_cfg_job_shows_no_internal_keys_and_lr_as_the_optimizers(harness_cli):
    p = harness_cli(["--cfg", "job"])
    assert p.returncode == 0, p.stderr
    assert "parent_run_id" not in p.stdout and "swept" not in p.stdout and "members" not in p.stdout
    assert "\nlr: ${oc.select:optimizer.lr,null}\n" in p.stdout and "lr: null" not in p.stdout
    resolved = harness_cli(["optimizer=momentum", "--cfg", "job", "--resolve"]).stdout
    assert "\nlr: 0.001\n" in resolved


def test_optimizer_lr_alone_is_the_lr_that_runs(harness_cli, tmp_path):
    """``optimizer.lr`` set or swept without ``lr``: runs at that lr (logged as both keys)."""
    assert harness_cli(["optimizer.lr=0.1", "steps=5"]).returncode == 0
    p = harness_cli(["steps=5", "-m", "optimizer.lr=0.2,0.3"])
    assert p.returncode == 0, p.stderr
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = MlflowClient(uri).search_runs(["1"])
    assert sorted(
        (r.data.params["lr"], r.data.params["optimizer.lr"]) for r in runs if r.data.tags.get("harness.sweep") != "true"
    ) == [("0.1", "0.1"), ("0.2", "0.2"), ("0.3", "0.3")]
    _, members = sweep_runs(uri)
    assert sorted(r.info.run_name for r in members) == [
        "adam-rosenbrock-lr=0.2-seed=0-optimizer.lr=0.2",
        "adam-rosenbrock-lr=0.3-seed=0-optimizer.lr=0.3",
    ]
