"""Every functional optimizer matches torch.optim step for step in float64 (table-driven),
including batches whose members each have their own hyperparameters."""

from __future__ import annotations

import inspect

import pytest
import torch
from omegaconf import OmegaConf

from harness.plan import import_target
from optimizers.adagrad import adagrad
from optimizers.adam import adam, adamw
from optimizers.base import ConfigError
from optimizers.rmsprop import rmsprop
from optimizers.sgd import sgd
from problems.rosenbrock import rosenbrock
from tests.conftest import ROOT

# (ours, torch class, member-wise kwargs for a batch of 3)
CASES = [
    ("gd", sgd, torch.optim.SGD, [dict(lr=1e-4), dict(lr=3e-4), dict(lr=1e-3)]),
    ("sgd_wd", sgd, torch.optim.SGD, [dict(lr=1e-4, weight_decay=0.1), dict(lr=2e-4, weight_decay=0.0), dict(lr=1e-4, weight_decay=1.0)]),
    ("momentum", sgd, torch.optim.SGD, [dict(lr=1e-4, momentum=0.9), dict(lr=1e-4, momentum=0.5, dampening=0.3), dict(lr=2e-4, momentum=0.0, dampening=0.5)]),
    ("nesterov", sgd, torch.optim.SGD, [dict(lr=1e-4, momentum=0.9, nesterov=True), dict(lr=3e-4, momentum=0.7, nesterov=True), dict(lr=1e-4, momentum=0.99, nesterov=True, weight_decay=0.01)]),
    ("adagrad", adagrad, torch.optim.Adagrad, [dict(lr=0.1), dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1), dict(lr=0.2, weight_decay=0.01, eps=1e-6)]),
    ("rmsprop", rmsprop, torch.optim.RMSprop, [dict(lr=1e-3), dict(lr=1e-3, alpha=0.9, momentum=0.5), dict(lr=3e-4, weight_decay=0.01, eps=1e-6)]),
    ("rmsprop_centered", rmsprop, torch.optim.RMSprop, [dict(lr=1e-3, centered=True), dict(lr=1e-3, centered=True, momentum=0.9), dict(lr=3e-4, centered=True, alpha=0.5)]),
    ("adam", adam, torch.optim.Adam, [dict(lr=1e-2), dict(lr=3e-2, betas=(0.8, 0.99)), dict(lr=1e-2, weight_decay=0.1, eps=1e-6)]),
    ("amsgrad", adam, torch.optim.Adam, [dict(lr=1e-2, amsgrad=True), dict(lr=3e-2, betas=(0.5, 0.9), amsgrad=True), dict(lr=1e-3, amsgrad=True)]),
    ("adamw", adamw, torch.optim.AdamW, [dict(lr=1e-2), dict(lr=3e-2, weight_decay=0.1), dict(lr=1e-2, betas=(0.9, 0.9))]),
]
FLAGS = ("nesterov", "centered", "amsgrad")
STEPS = 300


def torch_trajectory(cls, kwargs, x0):
    x = x0.clone().requires_grad_(True)
    opt = cls([x], **kwargs)
    out = []
    for _ in range(STEPS):
        opt.zero_grad()
        rosenbrock(x).backward()
        opt.step()
        out.append(x.detach().clone())
    return torch.stack(out)


def stack(members: list[dict], fn) -> dict:
    """Per-member hyperparameters as lists; flags (booleans) stay scalars."""
    defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}
    keys = {k for m in members for k in m}
    out = {}
    for k in keys:
        vals = [m.get(k, defaults[k]) for m in members]
        out[k] = vals[0] if k in FLAGS else [list(v) if isinstance(v, tuple) else v for v in vals]
    return out


@pytest.mark.parametrize("name,ours,theirs,members", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_optim_step_for_step(name, ours, theirs, members):
    x0 = torch.tensor([[-1.2, 1.0], [0.5, -0.5], [1.5, 2.0]], dtype=torch.float64)
    opt = ours(**stack(members, ours), batch=3)
    params = [x0.clone()]
    state = opt.init(params)
    traj = []
    for _ in range(STEPS):
        x = params[0].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(rosenbrock(x).sum(), x)
        params, state = opt.update([g], state, params)
        traj.append(params[0])
    ours_traj = torch.stack(traj)  # [STEPS, 3, 2]
    for i, kw in enumerate(members):
        ref = torch_trajectory(theirs, kw, x0[i])
        rel = ((ours_traj[:, i] - ref).abs() / ref.abs().clamp_min(1e-12)).max().item()
        assert rel <= 1e-10, f"member {i} ({kw}) differs from torch by {rel:.2e}"


@pytest.mark.parametrize("name,torch_cls", [("gd", torch.optim.SGD), ("adagrad", torch.optim.Adagrad), ("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_yaml_defaults_are_torch_defaults(name, torch_cls):
    """The configs carry torch.optim's names and defaults (momentum/nesterov presets aside)."""
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "optimizer" / f"{name}.yaml"))
    torch_defaults = {k: p.default for k, p in inspect.signature(torch_cls).parameters.items()}
    for key, value in cfg.items():
        if key in ("_target_", "name"):
            continue
        expected = torch_defaults[key]
        assert value == (list(expected) if isinstance(expected, tuple) else expected), key
    assert callable(import_target("optimizer._target_", cfg["_target_"]))


@pytest.mark.parametrize(
    "fn,kwargs,message",
    [
        (adam, dict(betas=(0.9, 1.0)), "optimizer.betas[1]=1.0"),
        (adam, dict(betas=(-0.1, 0.9)), "optimizer.betas[0]=-0.1"),
        (adam, dict(eps=-1e-8), "optimizer.eps=-1e-08"),
        (sgd, dict(momentum=-0.5), "optimizer.momentum=-0.5"),
        (sgd, dict(momentum=0.0, nesterov=True), "momentum > 0 when nesterov"),
        (rmsprop, dict(alpha=1.0), "optimizer.alpha=1.0"),
        (adagrad, dict(lr=0.0), "lr=0.0"),
        (adagrad, dict(lr=[0.1, -1.0], batch=2), "lr=-1.0"),
    ],
)
def test_out_of_range_hyperparameters_name_key_and_value(fn, kwargs, message):
    with pytest.raises(ConfigError, match=None) as e:
        fn(**kwargs)
    assert message in str(e.value) and "allowed" in str(e.value) and "\n" not in str(e.value)
