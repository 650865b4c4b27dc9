"""Every problem's listed minima are stationary, strict, and carry the right f*; start points
are settable or seeded."""

from __future__ import annotations

import pytest
import torch

from harness.plan import import_target
from optimizers.base import ConfigError
from problems.double_well import DoubleWell
from problems.landscapes import Himmelblau, Rastrigin, SixHumpCamel, StyblinskiTang
from problems.quadratic import Quadratic
from problems.rosenbrock import Rosenbrock
from tests.conftest import ROOT

PROBLEMS = {
    "quadratic": lambda: Quadratic(dim=5, mu=0.5, L=10.0, center=[1, 2, 3, 4, 5], seeds=[0, 1]),
    "rosenbrock": lambda: Rosenbrock(dim=2),
    "rosenbrock5": lambda: Rosenbrock(dim=5),
    "himmelblau": Himmelblau,
    "rastrigin": Rastrigin,
    "styblinski_tang": StyblinskiTang,
    "six_hump_camel": SixHumpCamel,
    "double_well": DoubleWell,
}
# f* from the literature (independent of our Newton refinement)
KNOWN_F_STAR = {
    "quadratic": 0.0,
    "rosenbrock": 0.0,
    "himmelblau": 0.0,
    "rastrigin": 0.0,
    "styblinski_tang": 2 * -39.16616570377142,
    "six_hump_camel": -1.031628453489877,
}


@pytest.mark.parametrize("name", PROBLEMS)
def test_listed_minima_are_stationary_and_labelled(name):
    p = PROBLEMS[name]()
    assert p.minima and any(m.kind == "global" for m in p.minima)
    for m in p.minima:
        x = torch.tensor([m.x] * p.batch, dtype=torch.float64)
        f, g = p.loss_and_grad(x)
        assert g.abs().max().item() <= 1e-8, (m.name, g)
        assert abs(f[0].item() - m.f) <= 1e-12 * max(1.0, abs(m.f))
        if m.kind == "global":
            assert abs(m.f - p.f_star) <= 1e-12 * max(1.0, abs(p.f_star))
        else:
            assert m.f > p.f_star + 1e-6
    base = name.rstrip("0123456789")
    if base in KNOWN_F_STAR:
        assert abs(p.f_star - KNOWN_F_STAR[base]) <= 1e-12 * max(1.0, abs(p.f_star))


def test_minima_counts_match_the_literature():
    assert [m.kind for m in Himmelblau().minima] == ["global"] * 4
    assert len(Rastrigin().minima) == 121 and sum(m.kind == "global" for m in Rastrigin().minima) == 1
    assert sorted(m.kind for m in StyblinskiTang().minima) == ["global", "local", "local", "local"]
    assert sorted(m.kind for m in SixHumpCamel().minima) == ["global"] * 2 + ["local"] * 4
    assert [m.kind for m in Rosenbrock(dim=5).minima] == ["global", "local"]
    assert [m.name for m in DoubleWell().minima if m.kind == "global"] == ["left"]


@pytest.mark.parametrize("d", [1, 3, 7, 12])
def test_n_dimensional_landscapes_have_exact_f_star_and_minima_by_rule(d):
    st = StyblinskiTang(dim=d)
    assert st.f_star == pytest.approx(-39.16616570377142 * d, rel=1e-15)
    assert Rastrigin(dim=d).f_star == 0.0
    if d <= 7:  # 2^d listed: one global, the other sign patterns local, each stationary
        assert len(st.minima) == 2**d and [m.kind for m in st.minima].count("global") == 1
        x = torch.tensor([m.x for m in st.minima], dtype=torch.float64)
        f, g = st.loss_and_grad(x)
        assert g.abs().max() <= 1e-8 and torch.allclose(f, torch.tensor([m.f for m in st.minima], dtype=torch.float64), rtol=1e-14)
    # the rule: each coordinate's nearest 1-D minimum; global only when every coordinate is at the global one
    gen = torch.Generator().manual_seed(d)
    for p, lo, hi in ((st, -5.0, 5.0), (Rastrigin(dim=d), -5.12, 5.12)):
        ends = torch.stack([torch.tensor([m.x for m in random_minima(p, gen, 20)], dtype=torch.float64)]).squeeze(0)
        jitter = 1e-3 * torch.randn(ends.shape, generator=gen, dtype=torch.float64)
        found = p.nearest_minimum(ends + jitter, tol=0.05)
        for m, e in zip(found, ends):
            assert m is not None and torch.allclose(torch.tensor(m.x, dtype=torch.float64), e, atol=0)
            f, g = p.loss_and_grad(e[None])
            assert g.abs().max() <= 1e-8 and abs(float(f[0]) - m.f) <= 1e-12 * max(1.0, abs(m.f))  # a real minimum, its value right
            assert (m.kind == "global") == bool(torch.allclose(e, torch.tensor(p.minima[0].x if p.minima[0].kind == "global" else
                                                                               [x for x in p.minima if x.kind == "global"][0].x, dtype=torch.float64)))
        assert p.nearest_minimum(torch.full((1, d), 0.5 * (lo + hi) + 0.37), tol=1e-6) == [None]  # between basins: none


def random_minima(p, gen, n):
    """n minima of ``p`` drawn by picking a 1-D minimum per coordinate at random."""
    picks = torch.randint(len(p.m1), (n, p.dim), generator=gen).tolist()
    picks[0] = [min(range(len(p.m1)), key=lambda i: p.m1[i][1])] * p.dim  # and the global one
    return [p._minimum(tuple(i)) for i in picks]


def test_n_dimensional_landscape_from_the_command_line_tags_basins(tmp_path, store):
    from mlflow import MlflowClient

    from tests.conftest import cli_here

    p = cli_here(["problem=styblinski_tang", "problem.dim=6", "optimizer=adam", "steps=400", f"tracking.uri={store}", "-m", "lr=0.1", "seed=range(8)"],
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    c = MlflowClient(store)
    runs = [r for r in c.search_runs([c.get_experiment_by_name("harness").experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 8
    for r in runs:
        basin = r.data.tags["basin"]
        coords = [float(v) for v in basin.strip("()").split(",")]
        assert len(coords) == 6 and all(v in (-2.904, 2.747) for v in coords)
        assert r.data.metrics["global_min_reached"] == float(all(v == -2.904 for v in coords))
        assert r.data.metrics["final_loss"] == pytest.approx(sum(-39.16616570377142 if v < 0 else -25.029446655283177 for v in coords), abs=0.05)


def test_quadratic_spectrum_and_rotation_follow_config_and_seed():
    q = Quadratic(dim=6, mu=2.0, L=50.0, seeds=[0, 1, 0])
    for A in q.A:
        assert torch.allclose(torch.linalg.eigvalsh(A), torch.linspace(2.0, 50.0, 6, dtype=torch.float64))
    assert torch.equal(q.A[0], q.A[2]) and not torch.allclose(q.A[0], q.A[1])


def test_start_point_is_settable_or_seeded_in_the_box():
    p = Rosenbrock(dim=2, x0=[-1.5, 2.0], seeds=[0, 1])
    assert p.init().tolist() == [[-1.5, 2.0], [-1.5, 2.0]]
    p = SixHumpCamel(seeds=[0, 1, 2, 0])
    x = p.init()
    assert torch.equal(x[0], x[3]) and not torch.equal(x[0], x[1])
    assert (x[:, 0].abs() <= 3).all() and (x[:, 1].abs() <= 2).all()
    with pytest.raises(ConfigError, match=r"problem.x0=\[1.0\] has 1 numbers; allowed: 2 numbers"):
        Rosenbrock(dim=2, x0=[1.0])


@pytest.mark.parametrize("path", sorted((ROOT / "conf" / "problem").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_problem_config_builds(path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(path))
    cls = import_target("problem._target_", cfg.pop("_target_"))
    assert cfg.pop("name") == path.stem == cls.name
    if cls.name == "module":  # your own network and data: none by default
        assert cfg["model"] is None and cfg["data"] is None
        cfg.update(model="examples.wine_mlp.WineNet", data="examples.wine_mlp.wine")
    p = cls(**cfg, seeds=[0])
    assert p.init().shape == (1, p.dim)
    assert (p.f_star is None) == (not p.minima)  # f* is known exactly when the minima are (all but the CNN)
