"""What ``python -m harness`` does around the run itself. Hydra composes the config once per command
(harness/composition.py): every config made from an earlier composition equals the one Hydra composes from
the files, and a sweep or a run composes from the files once. A single run imports no module it does not use."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.utils import JobRuntime
from hydra.types import RunMode
from omegaconf import OmegaConf

import hydra_plugins.harness_sweeper.batch_sweeper  # noqa: F401  (hydra/sweeper=batch, as Hydra's plugin scan registers it)
from harness.composition import ComposeOnce

from .conftest import CONF, run_cli, sweep_runs

MULTI, RUN = RunMode.MULTIRUN, RunMode.RUN


def loaders(conf: str = CONF) -> tuple[ConfigLoaderImpl, ComposeOnce]:
    JobRuntime().set("name", "__main__")
    path = create_config_search_path(f"file://{conf}")
    return ConfigLoaderImpl(config_search_path=path), ComposeOnce(config_search_path=path)


def outcome(loader, config_name, overrides, mode, validate=True):
    """The config as text with its flags, or the error: what a caller can tell apart."""
    try:
        cfg = loader.load_configuration(config_name=config_name, overrides=list(overrides), run_mode=mode, validate_sweep_overrides=validate)
    except Exception as e:
        return type(e).__name__, str(e)
    return OmegaConf.to_yaml(cfg), OmegaConf.is_struct(cfg), OmegaConf.is_readonly(cfg.hydra), dict(cfg._metadata.flags)


CLI = ["optimizer=adam", "problem=rosenbrock", "tracking.uri=sqlite:////tmp/x/s.db", "lr=0.001,0.01,1", "seed=range(3)"]
SWEEPER = ["hydra.mode=MULTIRUN", "optimizer=adam", "problem=rosenbrock", "tracking.uri=sqlite\\:////tmp/x/s.db"]  # as split_arguments spells them
LAUNCHER = SWEEPER + ["tracking.uri='sqlite:////tmp/x/s.db'", "+tracking.parent_run_id=01a22f6b788e0000", "+tracking.swept=['lr','seed']",
                      "+members='/tmp/x/.members/job0-abc.json'"]

# (config_name, overrides, run mode, validate sweep overrides) in the order Hydra asks for them
SEQUENCES = {
    "sweep": [("config", CLI, MULTI, False), ("config", CLI + ["hydra.mode=MULTIRUN"], MULTI, True), ("config", SWEEPER, RUN, True),
              ("config", LAUNCHER, RUN, True)],
    "run": [("config", ["lr=0.1", "steps=10"], MULTI, False), ("config", ["lr=0.1", "steps=10", "hydra.mode=RUN"], RUN, True)],
    "run with a sweep override": [("config", ["lr=0.1,0.2"], MULTI, False), ("config", ["lr=0.1,0.2", "hydra.mode=RUN"], RUN, True)],
    "another group appended": [("config", ["lr=0.1"], RUN, True), ("config", ["lr=0.1", "problem=quadratic"], RUN, True),
                               ("config", ["lr=0.1", "problem=quadratic", "problem.dim=3"], RUN, True)],
    "hydra settings appended": [("config", ["lr=0.1"], RUN, True), ("config", ["lr=0.1", "hydra.job.chdir=true"], RUN, True),
                                ("config", ["lr=0.1", "hydra/launcher=joblib"], RUN, True), ("config", ["lr=0.1", "hydra.mode=RUN"], RUN, True)],
    "numbers of another type": [("config", ["steps=10"], RUN, True), ("config", ["steps=10.0"], RUN, True), ("config", ["steps=10", "seed=1"], RUN, True)],
    "deletes and adds": [("config", [], RUN, True), ("config", ["~stop.x_tol"], RUN, True), ("config", ["~stop.x_tol", "+foo=1"], RUN, True),
                         ("config", ["~stop.x_tol", "+foo=1", "+foo=2"], RUN, True), ("config", ["++foo={a: 1}"], RUN, True)],
    "bad overrides": [("config", ["lr=0.1"], RUN, True), ("config", ["lr=0.1", "nokey=1"], RUN, True), ("config", ["lr=0.1", "x=[1"], RUN, True),
                      ("config", ["lr=0.1", "+stop.grad_tol=1"], RUN, True)],
    "order kept": [("config", ["lr=0.1", "steps=5"], RUN, True), ("config", ["lr=0.1", "steps=5", "lr=0.2", "steps=7"], RUN, True)],
    "searchpath": [("config", [], RUN, True), ("config", ["hydra.searchpath=[file:///nonexistent]"], RUN, True)],
    "dirname keys": [("config", ["lr=0.1"], RUN, True), ("config", ["lr=0.1", "hydra.job.config.override_dirname.kv_sep=:"], RUN, True),
                     ("config", ["lr=0.1", "hydra.job.config.override_dirname.kv_sep=:", "seed=3"], RUN, True)],
}


@pytest.mark.filterwarnings("ignore:provider=hydra.searchpath")
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_each_config_equals_hydras_own_composition(name):
    plain, once = loaders()
    for step in SEQUENCES[name]:
        assert outcome(once, *step) == outcome(plain, *step), step


def test_a_sweep_composes_from_the_files_once_and_a_run_too():
    for name, n in (("sweep", 1), ("run", 1), ("another group appended", 2)):
        _, once = loaders()
        for step in SEQUENCES[name]:
            outcome(once, *step)
        assert (once.composed, once.derived) == (n, len(SEQUENCES[name]) - n), name


def test_a_group_left_missing_is_composed_again(tmp_path):
    """A multirun composition skips a config group left ``???``; a run's fails on it: not made from the first."""
    (tmp_path / "foo").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - foo: ???\n  - _self_\nx: 1\n")
    (tmp_path / "foo" / "one.yaml").write_text("a: 1\n")
    plain, once = loaders(str(tmp_path))
    steps = [("config", ["x=2"], MULTI, False), ("config", ["x=2", "hydra.mode=RUN"], RUN, True), ("config", ["x=2", "foo=one"], RUN, True)]
    for step in steps:
        assert outcome(once, *step) == outcome(plain, *step), step
    assert "You must specify 'foo'" in outcome(once, *steps[1])[1]
    assert once.derived == 0


def test_the_command_line_composes_once(tmp_path, harness_cli, monkeypatch):
    """``python -m harness`` and ``python -m harness -m ...``: Hydra reads and merges the config files once."""
    calls = []
    compose = ConfigLoaderImpl._load_configuration_impl

    def counted(self, *args, **kwargs):
        calls.append(kwargs["overrides"])
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted)
    uri = f"sqlite:///{tmp_path}/s.db"
    r = harness_cli(["optimizer=adam", "problem=rosenbrock", "steps=20", f"tracking.uri={uri}", "-m", "lr=0.01,0.1", "seed=range(2)"])
    assert r.returncode == 0, r.stderr
    assert len(sweep_runs(uri)[1]) == 4
    assert len(calls) == 1
    calls.clear()
    assert harness_cli(["steps=20", f"tracking.uri={uri}"]).returncode == 0
    assert len(calls) == 1
    assert Path(tmp_path / "outputs").is_dir()
    calls.clear()  # another Hydra: composed as Hydra composes, every time
    import hydra

    monkeypatch.setattr(hydra, "__version__", "1.3.9")
    assert harness_cli(["steps=20", f"tracking.uri={uri}"]).returncode == 0
    assert len(calls) == 2


def test_a_single_run_imports_no_analysis_and_no_mlflow(tmp_path):
    """pandas (the sweep's summary), MLflow's client and SQLAlchemy (the report, a tracking server) and
    matplotlib: none is imported by a run that does not use it. ``-X importtime`` lists every module imported."""
    uri = f"sqlite:///{tmp_path}/s.db"
    assert run_cli(["steps=5", f"tracking.uri={uri}"], tmp_path).returncode == 0  # a new store
    p = run_cli(["steps=5", f"tracking.uri={uri}"], tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "hydra", "harness.job"} <= imported
    assert not {m.split(".")[0] for m in imported} & {"pandas", "mlflow", "sqlalchemy", "matplotlib", "scipy"}
