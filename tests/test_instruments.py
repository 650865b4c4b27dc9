"""The instruments against references that are not the harness's own code: numpy's eigvalsh of
autograd's Hessian, closed forms, scipy's eigsh, torch.optim's own optimizer state, and numpy
per-example gradients; then the path through a sweep into the store."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
from omegaconf import OmegaConf

from harness import instruments as ins
from harness import theory
from harness.job import results, run_batch
from harness.plan import config_hash, plan
from optimizers.adam import adam
from problems.data import LinearRegression, LogisticRegression
from problems.mlp import MLP
from problems.quadratic import Quadratic
from problems.rosenbrock import Rosenbrock
from tests.conftest import CONF, make_cfg, members, parquet_curves, sweep_runs

EXACT = ins.settings({"name": "curvature", "every": 1, "measures": ["sharpness"], "iters": 60, "tol": 1e-10})
ANALYTIC = ["quadratic", "rosenbrock", "himmelblau", "rastrigin", "styblinski_tang", "six_hump_camel", "double_well"]


def _problem(name: str, seeds):
    """An analytic problem as its config builds it (the conf/problem/<name>.yaml defaults)."""
    spec = OmegaConf.to_container(OmegaConf.load(f"{CONF}/problem/{name}.yaml"))
    target = spec.pop("_target_")
    spec.pop("name", None)
    module, _, cls = target.rpartition(".")
    return getattr(__import__(module, fromlist=[cls]), cls)(**spec, seeds=seeds)


def _eigvalsh_top(problem, x: torch.Tensor) -> np.ndarray:
    """numpy's largest eigenvalue of autograd's Hessian, one member at a time."""
    return np.array([np.linalg.eigvalsh(torch.autograd.functional.hessian(lambda z: problem.loss(z[None])[0], xi).numpy()).max() for xi in x])


def test_the_quadratic_sharpness_is_L_at_every_point():
    q = Quadratic(dim=10, mu=1.0, L=100.0, seeds=list(range(4)))
    probe = ins.Probe(EXACT, q)
    for scale in (1e-3, 1.0, 50.0):
        x = scale * torch.randn(4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        np.testing.assert_allclose(probe(x)["sharpness"].numpy(), 100.0, rtol=1e-8)


def test_rosenbrock_at_its_minimum_is_the_top_eigenvalue_of_its_hessian():
    r = Rosenbrock(seeds=[0])
    got = ins.Probe(EXACT, r)(torch.tensor([[1.0, 1.0]], dtype=torch.float64))["sharpness"].item()
    want = np.linalg.eigvalsh(np.array([[802.0, -400.0], [-400.0, 200.0]])).max()  # 1001.6006...
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(1001.6006, abs=1e-4)


@pytest.mark.parametrize("name", ANALYTIC)
def test_every_analytic_problem_at_random_points_matches_numpys_eigvalsh(name):
    p = _problem(name, seeds=list(range(5)))
    lo, hi = p.box[:, 0], p.box[:, 1]
    x = torch.tensor(lo + (hi - lo) * np.random.default_rng(3).random((5, p.dim)), dtype=torch.float64)
    np.testing.assert_allclose(ins.Probe(EXACT, p)(x)["sharpness"].numpy(), _eigvalsh_top(p, x), rtol=1e-6, atol=1e-9)


def test_logistic_regression_is_the_top_eigenvalue_of_XtDX_over_n_plus_the_penalty():
    p = LogisticRegression(seeds=[0, 1])
    x = 0.1 * torch.randn(2, p.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = np.column_stack([np.ones(p.samples), p.X.numpy()])
    want = []
    for th in x.numpy():
        s = 1 / (1 + np.exp(-A @ th))
        H = (A * (s * (1 - s))[:, None]).T @ A / p.samples + np.diag([0.0] + [p.l2] * (p.dim - 1))
        want.append(np.linalg.eigvalsh(H).max())
    np.testing.assert_allclose(ins.Probe(EXACT, p)(x)["sharpness"].numpy(), want, rtol=1e-10)


def test_a_sample_of_examples_measures_the_hessian_and_noise_of_that_samples_loss():
    p = LogisticRegression(seeds=[0, 1])
    s = ins.settings({"name": "full", "every": 1, "measures": ["sharpness", "noise_scale"], "iters": 60, "tol": 1e-10, "examples": 50})
    probe = ins.Probe(s, p)
    rows = probe.rows.numpy()
    assert len(rows) == 50 and len(set(rows)) == 50 and rows.max() < p.samples
    x = 0.1 * torch.randn(2, p.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = probe(x)
    A, y = np.column_stack([np.ones(p.samples), p.X.numpy()])[rows], p.y.numpy()[rows]
    reg = np.array([0.0] + [p.l2] * (p.dim - 1))
    for i, th in enumerate(x.numpy()):
        s_ = 1 / (1 + np.exp(-A @ th))
        H = (A * (s_ * (1 - s_))[:, None]).T @ A / 50 + np.diag(reg)
        assert got["sharpness"][i].item() == pytest.approx(np.linalg.eigvalsh(H).max(), rel=1e-10)
        g = (s_ - y)[:, None] * A + reg * th  # each example's gradient of its log-loss plus the penalty
        G = g.mean(0)
        assert got["noise_scale"][i].item() == pytest.approx(((g - G) ** 2).sum(1).mean() / (G @ G), rel=1e-9)


def test_a_network_matches_scipys_eigsh_on_the_same_hessian_vector_product():
    p = MLP(width=16, depth=1, activation="tanh", loss="mse", seeds=[0, 1])  # float32, as the network runs
    x = p.init()
    got = ins.Probe(ins.settings({"name": "c", "every": 1, "measures": ["sharpness"], "iters": 80, "tol": 1e-6}), p)(x)["sharpness"]
    for i in range(2):
        hvp = ins.hessian_vector_products(p.loss, x[i : i + 1])
        op = sla.LinearOperator((p.dim, p.dim), dtype=np.float64,
                                matvec=lambda v, hvp=hvp: hvp(torch.tensor(v.reshape(1, -1), dtype=x.dtype)).double().numpy().ravel())
        want = sla.eigsh(op, k=1, which="LA", tol=1e-8)[0][0]
        assert got[i].item() == pytest.approx(want, rel=1e-4)


def test_preconditioned_sharpness_is_that_of_torch_adams_own_state():
    """After 30 Adam steps on Rosenbrock, lambda_max(P^-1 H) with P built from torch.optim.Adam's
    exp_avg_sq and step, against the harness's batched measure on its own Adam."""
    r, steps, lr, (b1, b2), eps = Rosenbrock(seeds=[0, 1]), 30, 0.01, (0.9, 0.999), 1e-8
    x0 = torch.tensor([[-1.0, 1.5], [0.5, -0.5]], dtype=torch.float64)
    opt = adam(lr=lr, batch=2)
    state, x = opt.init([x0]), x0.clone()
    for _ in range(steps):
        _, g = r.loss_and_grad(x)
        (x,), state = opt.update([g], state, [x])
    s = ins.settings({"name": "c", "every": 1, "measures": ["preconditioned_sharpness"], "iters": 10, "tol": 1e-12})
    got = ins.Probe(s, r, lambda: opt.preconditioner(state))(x)["preconditioned_sharpness"].numpy()
    for i in range(2):
        p = x0[i].clone().requires_grad_(True)
        t_opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
        for _ in range(steps):
            t_opt.zero_grad()
            r.loss(p[None]).sum().backward()
            t_opt.step()
        st = t_opt.state[p]
        t = int(st["step"])
        P = (1 - b1**t) * (np.sqrt(st["exp_avg_sq"].numpy() / (1 - b2**t)) + eps)
        H = torch.autograd.functional.hessian(lambda z: r.loss(z[None])[0], p.detach()).numpy()
        np.testing.assert_allclose(p.detach().numpy(), x[i].numpy(), rtol=1e-12)
        assert got[i] == pytest.approx(np.linalg.eigvals(np.diag(1 / P) @ H).real.max(), rel=1e-9)


def test_noise_scale_on_linear_regression_matches_numpy_per_example_gradients():
    p = LinearRegression(seeds=[0, 1, 2])
    x = torch.randn(3, p.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    got = ins.noise_scale(p, x).numpy()
    A, y = np.column_stack([np.ones(p.samples), p.X.numpy()]), p.y.numpy()
    for i, th in enumerate(x.numpy()):
        g = 2 * (A @ th - y)[:, None] * A  # each example's gradient of (a.th - y)^2
        G = g.mean(0)
        assert got[i] == pytest.approx(((g - G) ** 2).sum(1).mean() / (G @ G), rel=1e-10)


def test_noise_scale_with_gradient_noise_is_dim_sigma_squared_over_the_gradient():
    q = Quadratic(dim=10, grad_noise=0.5, seeds=[0, 1])
    x = torch.ones(2, 10, dtype=torch.float64)
    _, g = q.loss_and_grad(x)
    np.testing.assert_allclose(ins.noise_scale(q, x).numpy(), 10 * 0.25 / (g**2).sum(1).numpy(), rtol=1e-12)


@pytest.mark.parametrize("opt", ["gd", "adam"])
def test_a_batch_with_instruments_equals_its_members_run_alone(opt):
    common = ("problem=rosenbrock", f"optimizer={opt}", "steps=60", "instruments=full", "instruments.every=7")
    grid = [{"lr": 1e-3, "seed": 0}, {"lr": 3e-4, "seed": 1}, {"lr": 1e-3, "seed": 2}]
    (batch,), _ = plan(make_cfg(*common, members(*grid)))
    together = results(batch, run_batch(batch))
    for i, m in enumerate(grid):
        (alone_batch,), _ = plan(make_cfg(*common, members(m)))
        (alone,) = results(alone_batch, run_batch(alone_batch))
        for key in ("sharpness", "preconditioned_sharpness") if opt == "adam" else ("sharpness",):
            np.testing.assert_array_equal(together[i].sparse[key][0], alone.sparse[key][0])
            np.testing.assert_allclose(together[i].sparse[key][1], alone.sparse[key][1], rtol=1e-9, equal_nan=True)
        assert together[i].summary["edge_ratio"] == pytest.approx(alone.summary["edge_ratio"], rel=1e-9)


def test_thresholds_follow_each_members_own_hyperparameters():
    at = lambda opt, lr: theory.sharpness_threshold(opt).at(lr)  # noqa: E731
    sgd = "optimizers.sgd.sgd"
    assert at({"_target_": sgd, "momentum": 0.0}, 0.01) == pytest.approx(200.0)
    assert at({"_target_": sgd, "momentum": 0.9}, 0.01) == pytest.approx(380.0)
    assert at({"_target_": sgd, "momentum": 0.9, "nesterov": True}, 0.01) == pytest.approx(3.8 / 2.8 / 0.01)
    assert at({"_target_": "optimizers.adam.adam", "betas": [0.9, 0.999]}, 0.01) == pytest.approx(3800.0)  # 38/lr
    assert theory.sharpness_threshold({"_target_": "optimizers.adam.adam", "betas": [0.9, 0.999]}).preconditioned
    assert theory.sharpness_threshold({"_target_": "torch.optim.LBFGS"}) is None


def test_gd_on_the_quadratic_reads_its_edge_ratio_from_its_lr(tmp_path, harness_cli):
    """Through the command line into a store: GD on a quadratic of L = 100 at lr 0.01, 0.019 and 0.021 has
    sharpness 100 everywhere, thresholds 2/lr, edge ratios 0.5, 0.95 and 1.05; the sharpness is a
    sparse curve in the run's Parquet rows and its metric rows."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = harness_cli(["problem=quadratic", "optimizer=gd", "instruments=curvature", "instruments.every=10", "instruments.tol=1e-9", "steps=50",
                       f"tracking.uri={uri}", "-m", "lr=0.01,0.019,0.021"])
    assert res.returncode == 0, res.stderr
    _, runs = sweep_runs(uri)
    by_lr = {float(r.data.params["lr"]): r for r in runs}
    for lr, ratio in ((0.01, 0.5), (0.019, 0.95), (0.021, 1.05)):
        m = by_lr[lr].data.metrics
        assert m["final_sharpness"] == pytest.approx(100.0, rel=1e-8) and m["max_sharpness"] == pytest.approx(100.0, rel=1e-8)
        assert m["stability_threshold"] == pytest.approx(2 / lr) and m["edge_ratio"] == pytest.approx(ratio, rel=1e-6)
        assert by_lr[lr].data.params["instruments.name"] == "curvature"
    rows = parquet_curves(uri, by_lr[0.01].info.run_id)
    measured = rows.dropna(subset=["sharpness"])
    assert list(measured["step"])[:3] == [0, 10, 20] and np.allclose(measured["sharpness"], 100.0, rtol=1e-6)


def test_instruments_off_leave_a_members_identity_and_params_as_before():
    c = OmegaConf.to_container(make_cfg("problem=quadratic"), resolve=True)
    without = {k: v for k, v in c.items() if k != "instruments"}
    assert config_hash(c) == config_hash(without)
    on = dict(c, instruments={"name": "curvature", "every": 16, "measures": ["sharpness"], "iters": 20, "tol": 1e-4})
    assert config_hash(on) != config_hash(c)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["instruments=curvature", "instruments.every=0"], "instruments.every=0 is not allowed; allowed: an integer >= 1"),
        (["instruments=curvature", "instruments.measures=[hessian]"], "instruments.measures=['hessian'] is not allowed; allowed: a non-empty list of sharpness"),
        (["instruments=curvature", "instruments.tol=2"], "instruments.tol=2 is not allowed; allowed: a number in (0, 1)"),
        (["instruments=sharpness"], "instruments=sharpness"),
        (["instruments=curvature", "instruments.examples=64"], "instruments.examples=64 is not allowed for problem rosenbrock; allowed: null"),
        (["problem=linear_regression", "instruments=noise", "instruments.examples=5000"], "instruments.examples=5000 is not allowed for problem linear_regression; allowed: null or an integer 2..120"),
    ],
)
def test_bad_instrument_settings_are_one_line(tmp_path, harness_cli, args, expected):
    res = harness_cli([*args, "steps=5", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr


EDGE = ["problem=mlp", "problem.activation=tanh", "problem.loss=mse", "optimizer=gd", "instruments=curvature", "instruments.every=50"]


@pytest.mark.slow
def test_gd_on_a_tanh_mlp_reaches_the_edge_of_stability_and_hovers_there(tmp_path, harness_cli):
    """Cohen et al. (2021) on the bundled digits, full batch, three lrs in one batch (the README's command,
    a third as long): the sharpness starts below 2/lr and rises to it; for at least two lrs it stays
    within 20% of 2/lr over the last third of the run, while the training loss keeps falling."""
    uri, steps = f"sqlite:///{tmp_path / 'mlflow.db'}", 1000
    res = harness_cli([*EDGE, f"steps={steps}", f"tracking.uri={uri}", "-m", "lr=0.4,0.5,0.6667"])
    assert res.returncode == 0, res.stderr
    _, runs = sweep_runs(uri)
    hovering = 0
    for r in runs:
        lr = float(r.data.params["lr"])
        rows = parquet_curves(uri, r.info.run_id)
        m = rows.dropna(subset=["sharpness"])
        ratio = m["sharpness"].to_numpy() / (2 / lr)
        late = m["step"].to_numpy() >= 2 * steps / 3
        loss = rows.set_index("step")["loss"]
        assert ratio[0] < 0.8 and ratio.max() > 0.85, (lr, ratio)  # progressive sharpening towards the edge
        assert loss[steps] < loss[2 * steps // 3] < loss[steps // 3], lr  # the loss keeps falling (not monotonically)
        assert r.data.metrics["edge_ratio"] == pytest.approx(np.median(ratio[late]), rel=1e-6)
        hovering += bool(np.all(np.abs(ratio[late] - 1) <= 0.2))
    assert len(runs) == 3 and hovering >= 2


def test_held_out_metrics_and_instruments_read_back_each_on_its_own_steps(tmp_path, harness_cli):
    """Validation loss every 10 steps, the noise scale every 7: the harness's reader gives each curve its
    own steps, and the values it gives are the ones pandas reads from the run's Parquet rows."""
    from harness.store import read_curves, read_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = harness_cli(["problem=linear_regression", "optimizer=gd", "steps=30", "problem.eval_every=10",
                       "instruments=noise", "instruments.every=7", f"tracking.uri={uri}", "-m", "lr=0.1"])
    assert res.returncode == 0, res.stderr
    rs = read_runs(uri, "harness")
    (rid,) = list(rs.runs["run_id"])
    got = read_curves(rs, [rid], ("val_loss", "noise_scale"))
    assert list(got[got.key == "val_loss"].step) == [0, 10, 20, 30]
    assert list(got[got.key == "noise_scale"].step) == [0, 7, 14, 21, 28, 30]
    rows = parquet_curves(uri, rid).set_index("step")
    np.testing.assert_allclose(got[got.key == "noise_scale"].value, rows["noise_scale"].loc[[0, 7, 14, 21, 28, 30]], rtol=1e-6)
    assert np.isfinite(got.value).all()


def test_measuring_a_batch_norm_network_leaves_its_run_as_it_was():
    """Batch norm in training mode updates its running statistics on every forward pass; the measurements'
    passes must not, so the run (its loss and its held-out metrics, evaluated with those statistics) is
    the same with instruments as without."""
    common = ("problem=module", "problem.model=tests.networks.BatchNormNet", "problem.data=examples.wine_mlp.wine",
              "optimizer=momentum", "steps=12", "problem.eval_every=4", members({"lr": 0.05, "seed": 0}, {"lr": 0.1, "seed": 1}))
    runs = []
    for extra in ((), ("instruments=full", "instruments.every=3", "instruments.examples=16")):
        (batch,), _ = plan(make_cfg(*common, *extra))
        runs.append(results(batch, run_batch(batch)))
    for plain, measured in zip(*runs):
        np.testing.assert_array_equal(plain.loss, measured.loss)
        np.testing.assert_array_equal(plain.sparse["val_loss"][1], measured.sparse["val_loss"][1])
        assert np.isfinite(measured.sparse["sharpness"][1]).all() and np.isfinite(measured.sparse["noise_scale"][1]).all()
