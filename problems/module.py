"""Your own network on your own data: ``problem=module problem.model=<import path> problem.data=<file or import path>``.

- ``model``: the import path of an ``nn.Module`` factory (a class, or a function) called with no
  argument; every member builds its own copy from its seed (problems/network.py).
- ``data``: a ``.csv`` or ``.npz`` file (problems/datasets.py; a ``.npz`` array ``X`` may have any shape
  ``(n, ...)``), or the import path of ``(X, y)`` (arrays or tensors), of a ``torch.utils.data.Dataset``
  whose items are ``(x, y)`` pairs, or of a function with no argument that returns either.
- The examples are split into training, validation and test sets from ``data_seed`` (``val_fraction``,
  ``test_fraction``: 0.2 each, 0 for none) and, with ``standardize``, every feature is z-scored with
  the training split's mean and std.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from optimizers.base import ConfigError
from problems.data import split, standardize_columns
from problems.datasets import is_path, load
from problems.network import NetworkProblem

DATA = "a .csv or .npz file, or the import path of (X, y), of a torch Dataset of (x, y) pairs, or of a function returning one"


def imported(key: str, path, allowed: str):
    """The object a dotted import path names (``pkg.module.name``), or one line naming ``key``."""
    module, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as e:  # noqa: BLE001 - importing the user's module may fail in any way
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise ConfigError(f"{key}={path!r} cannot be imported ({why}); allowed: {allowed}") from None


def model_factory(model):
    if callable(model) and not isinstance(model, torch.nn.Module):
        return model
    if not isinstance(model, str) or "." not in model:
        raise ConfigError(
            f"problem.model={model!r} is not allowed; allowed: the import path of an nn.Module class or factory, such as examples.wine_mlp.WineNet"
        )
    factory = imported(
        "problem.model", model, "the import path of an nn.Module class or factory, such as examples.wine_mlp.WineNet"
    )
    if isinstance(factory, torch.nn.Module) or not callable(factory):
        raise ConfigError(
            f"problem.model={model!r} is a {type(factory).__name__}; allowed: a class or function that builds an nn.Module (each member builds its own)"
        )
    return factory


def examples(data, target) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [n, ...], labels or targets [n, ...]) as float64 numpy arrays from ``data`` (see the module docstring)."""
    if is_path(data):
        X, y, _ = load(data, target, key="problem.data", any_shape=True)
        return X, y
    if target is not None:
        raise ConfigError(
            f"problem.target={target!r} is not allowed with problem.data={data!r}; allowed: null (a target names a column of a .csv or an array of a .npz)"
        )
    obj = data
    if data is None:
        raise ConfigError(f"problem.data=None is not allowed; allowed: {DATA}")
    if isinstance(data, str):
        if "." not in data:
            raise ConfigError(f"problem.data={data!r} is not allowed; allowed: {DATA}")
        obj = imported("problem.data", data, DATA)
    if callable(obj) and not isinstance(obj, (torch.Tensor, torch.utils.data.Dataset)):
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001 - the user's code
            raise ConfigError(
                f"problem.data={data!r} failed when called ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); allowed: {DATA}"
            ) from None
    pair = _pair(obj)
    if pair is None:
        raise ConfigError(f"problem.data={data!r} is a {type(obj).__name__}; allowed: {DATA}")
    return _checked(data, *pair)


def _pair(obj):
    if isinstance(obj, torch.utils.data.TensorDataset) and len(obj.tensors) == 2:
        return obj.tensors
    if isinstance(obj, torch.utils.data.Dataset) and hasattr(obj, "__len__"):
        items = [obj[i] for i in range(len(obj))]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            return None
        return [torch.as_tensor(np.asarray(it[0])) for it in items], [
            torch.as_tensor(np.asarray(it[1])) for it in items
        ]
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return obj
    return None


def _checked(data, X, y) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, a in (("X", X), ("y", y)):
        try:
            a = torch.stack(list(a)) if isinstance(a, list) else a
            a = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(
                f"problem.data={data!r}: {name} is not an array of numbers ({str(e).splitlines()[0]}); allowed: {DATA}"
            ) from None
        if a.ndim < 1 or not np.all(np.isfinite(a)):
            raise ConfigError(
                f"problem.data={data!r}: {name} of shape {a.shape} holds non-finite values or no examples; allowed: finite numbers, one row per example"
            )
        arrays.append(a)
    X, y = arrays
    if len(X) != len(y) or len(y) < 1:
        raise ConfigError(
            f"problem.data={data!r} has {len(X)} inputs and {len(y)} labels; allowed: one label or target per example, at least one"
        )
    return X, y


class ModuleProblem(NetworkProblem):
    """Any nn.Module factory on any dataset (see the module docstring)."""

    name = "module"

    def __init__(
        self,
        model=None,
        data=None,
        target=None,
        loss="cross_entropy",
        standardize=True,
        val_fraction=0.2,
        test_fraction=0.2,
        data_seed=0,
        eval_every=100,
        **kw,
    ):
        if not isinstance(standardize, bool):
            raise ConfigError(f"problem.standardize={standardize!r} is not allowed; allowed: true or false")
        factory = model_factory(model)
        X, y = examples(data, target)
        train, val, test = split(len(y), val_fraction, test_fraction, data_seed, "data_split")
        if standardize:
            X = standardize_columns(X.reshape(len(X), -1), train).reshape(X.shape)
        self.sources = (factory,)  # whose code computes the members (harness/fingerprint.py)
        what = (
            f"problem.model={model!r}"
            if isinstance(model, str)
            else f"problem.model={getattr(model, '__qualname__', model)}"
        )
        super().__init__(factory, X, y, train, val, test, loss, eval_every, what=what, **kw)
