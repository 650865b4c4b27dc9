"""Any ``torch.nn.Module`` trained on a dataset, as a batched problem: every member of a batch is its own network.

1. Member i's network is what the factory builds with torch's global generator seeded by the member's
   seed (``torch.manual_seed(seed); factory()``, on the CPU, in ``torch.random.fork_rng`` so nothing
   outside changes): the module's own initialisation, and exactly where a plain torch script that seeds
   the same way starts.
2. ``torch.func.stack_module_state`` stacks the members' parameters and buffers. The parameters are
   one row per member of the harness's ``[B, P]`` tensor (what the optimizers update), in
   ``named_parameters`` order, and every layer's weights are views of it; each member keeps its own
   buffers (batch norm's running statistics).
3. A step runs ``functional_call`` of the module under ``torch.func.vmap`` over the members, each on its
   own mini-batch (``DataProblem.batches``: every member shuffles with its own seed, every epoch). A
   batch of one member runs without vmap.
4. A module that cannot run under vmap (data-dependent control flow, in-place writes into a tensor the
   module makes, random operations such as dropout) is found when the problem is built, by one
   forward and backward pass of two members on two examples; its members then run one at a time, with
   one logged line saying why.

Loss (``loss``): ``cross_entropy`` on class labels, or ``mse`` (``torch.nn.MSELoss``: the mean over
examples and outputs), where labels 0..k-1 and an output of width k > 1 mean one-hot targets. The
recorded loss is that of the step's mini-batch (the whole training split when ``batch_size`` is null).
Validation and test loss (and accuracy, on classes) are evaluated every ``eval_every`` steps and at
the last step, with the module in eval mode. f* is unknown. Float32 by default.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from optimizers.base import ConfigError
from problems.data import DataProblem, check_eval_every

LOSSES = ("cross_entropy", "mse")
log = logging.getLogger("harness")


class NetworkProblem(DataProblem):
    """``factory()`` builds one member's ``nn.Module``; ``X [n, ...]`` and ``y [n]`` (labels) or
    ``y [n, ...]`` (targets) are every example, ``train``, ``val`` and ``test`` their row indices.
    ``what`` names the model in messages (``problem.model='pkg.net'``)."""

    name = "network"
    fixed = ("dim", "box", "factory", "train", "val", "test", "what")  # set by the subclass, not by the config
    default_dtype = torch.float32
    classes = True  # the targets are class labels (accuracy is logged)

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        X: np.ndarray,
        y: np.ndarray,
        train,
        val,
        test,
        loss="cross_entropy",
        eval_every=100,
        what: str = "problem.model",
        **kw,
    ):
        if loss not in LOSSES:
            raise ConfigError(f"problem.loss={loss!r} is not allowed; allowed: {', '.join(LOSSES)}")
        self.eval_every, self.loss_name, self.factory, self.what = check_eval_every(eval_every), loss, factory, what
        kw.setdefault("dtype", self.default_dtype)  # built directly (not by the harness): the problem's default
        dtype, seeds = kw["dtype"], kw.get("seeds", (0,))
        nets = [self._network(s, dtype) for s in seeds]
        self.module = nets[0]
        params, buffers = stack_module_state(nets)
        self.shapes = {k: v.shape[1:] for k, v in params.items()}
        self.sizes = {k: math.prod(s) for k, s in self.shapes.items()}
        self._buffers0 = {k: v.detach() for k, v in buffers.items()}
        self.buffers = self._buffers0
        y = self._targets(X, y)
        X, y = self._hold_out(X, y, train, val, test)
        super().__init__(X, y, dim=sum(self.sizes.values()), **kw)
        if self.classes:
            self.y = self.y.long()
        self._start = self._start_rows(params)
        # validation then test examples, evaluated in one pass; ``held_out`` keeps each split's share
        self.X_eval = torch.cat([v[0] for v in self.held_out.values()]) if self.held_out else None
        self.y_eval = torch.cat([v[1] for v in self.held_out.values()]) if self.held_out else None
        self.f_star, self.minima = None, []
        self.stream = self.batches() if self.batch_size else None
        self.one_at_a_time = self._why_not_batched() if self.batch > 1 else None

    # -- building -----------------------------------------------------------------------------------
    def _network(self, seed: int, dtype: torch.dtype) -> nn.Module:
        """The member's module: ``torch.manual_seed(seed); factory()`` on the CPU, then on the batch's device."""
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed)
            try:
                net = self.factory()
            except Exception as e:  # noqa: BLE001 - the user's code: any failure is one line
                raise ConfigError(
                    f"{self.what} cannot build a network ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "allowed: a class or function that builds an nn.Module with no argument"
                ) from None
        if not isinstance(net, nn.Module):
            raise ConfigError(
                f"{self.what} built a {type(net).__name__}; allowed: a class or function that builds a torch.nn.Module"
            )
        if not any(True for _ in net.parameters()):
            raise ConfigError(
                f"{self.what} built a network without parameters; allowed: a network with parameters to train"
            )
        return net.to(dtype=dtype, device=torch.get_default_device()).train()

    def _start_rows(self, params: dict[str, Tensor]) -> Tensor:
        """Each member's initial parameters, flattened in ``named_parameters`` order: ``[B, P]``."""
        return torch.cat([v.detach().flatten(1) for v in params.values()], 1)

    def _targets(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Checks the targets against the loss and the network's output; class labels come back as int64."""
        out = self._try_one(X[:1])
        width = out.shape[-1] if out.dim() >= 2 else 1
        labels = y.ndim == 1 and (self.loss_name == "cross_entropy" or (width > 1 and out.dim() == 2))
        if labels:
            ok = (
                np.issubdtype(y.dtype, np.number)
                and np.all(np.isfinite(y))
                and np.all(y == np.round(y))
                and y.min() >= 0
                and y.max() < width
            )
            if not ok:
                raise ConfigError(
                    f"problem.loss={self.loss_name} with {self.what}: labels {_some(y)} for an output of width {width}; "
                    f"allowed: class labels 0..{width - 1}"
                    + (", or targets shaped like the output with loss mse" if self.loss_name == "cross_entropy" else "")
                )
            return y.astype(np.int64)
        self.classes = False
        shape = tuple(out.shape[1:])
        if y.shape[1:] != shape and not (y.ndim == 1 and shape == (1,)):
            raise ConfigError(
                f"problem.loss=mse with {self.what}: targets of shape {y.shape[1:]} per example for an output of shape {shape}; "
                "allowed: targets shaped like the output, or class labels 0..k-1 for an output of width k"
            )
        return y.reshape(len(y), *shape)

    def _try_one(self, inputs: np.ndarray) -> Tensor:
        """The first member's output on ``inputs``, or one line saying why the module fails on the data."""
        x = torch.tensor(inputs, dtype=next(self.module.parameters()).dtype)
        try:
            with torch.no_grad(), _Mode(self.module):  # eval mode: a single example passes batch norm
                return self.module(x)
        except Exception as e:  # noqa: BLE001 - the user's code: any failure is one line
            raise ConfigError(
                f"{self.what} fails on the data's examples of shape {tuple(inputs.shape[1:])} ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); allowed: a network whose forward takes a batch of examples"
            ) from None

    def _why_not_batched(self) -> str | None:
        """None when two members run under vmap (forward and backward, train and eval mode), else why not."""
        x, buffers = self._start[:2].clone().requires_grad_(True), self.buffers
        self.buffers = {k: v[:2].clone() for k, v in buffers.items()}  # a probe must not move running statistics
        try:
            (g,) = torch.autograd.grad(
                self._per_example(self._batched(x, self.X[:2]), self.y[:2].expand(2, *self.y[:2].shape)).sum(), x
            )
            with self._eval_mode():
                self._batched(x.detach(), self.X[:2])
        except Exception as e:  # noqa: BLE001 - whatever vmap refuses
            return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        finally:
            self.buffers = buffers
        return None

    # -- running --------------------------------------------------------------------------------------
    def init(self) -> Tensor:
        """Each member's own initialisation (the module's, from its seed), unless ``x0`` is given; buffers restart too.
        A run starts here, so this is where a batch that runs one member at a time says so (once per run, not
        again when a sweep validates its members)."""
        if self.one_at_a_time:
            log.warning(
                f"{self.what} cannot run batched under torch.func.vmap ({self.one_at_a_time}); its {self.batch} members run one at a time"
            )
        self.buffers = {k: v.clone() for k, v in self._buffers0.items()}
        if self.x0 is not None:
            return torch.tensor(self.x0, dtype=self.dtype).expand(self.batch, self.dim).clone()
        return self._start.clone()

    def _params(self, x: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for k, shape in self.shapes.items():
            out[k] = x[:, i : i + self.sizes[k]].view(x.shape[0], *shape)
            i += self.sizes[k]
        return out

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """One member's network on ``inputs [k, ...]`` (what vmap maps over)."""
        return functional_call(self.module, (params, buffers), (inputs,))

    def _batched(self, x: Tensor, inputs: Tensor) -> Tensor:
        shared = inputs.dim() == self.X.dim()
        return vmap(self._call, in_dims=(0, 0, None if shared else 0))(self._params(x), self.buffers, inputs)

    def outputs(self, x: Tensor, inputs: Tensor) -> Tensor:
        """Outputs ``[B, k, ...]``; ``inputs`` is ``[B, k, ...]`` (each member's own) or ``[k, ...]`` (shared)."""
        if x.shape[0] > 1 and not self.one_at_a_time:
            return self._batched(x, inputs)
        shared = inputs.dim() == self.X.dim()
        params = self._params(x)
        return torch.stack(
            [
                self._call(
                    {k: v[i] for k, v in params.items()},
                    {k: v[i] for k, v in self.buffers.items()},
                    inputs if shared else inputs[i],
                )
                for i in range(x.shape[0])
            ]
        )

    def _per_example(self, out: Tensor, y: Tensor) -> Tensor:
        """Loss per member and example, ``[B, k]``, for outputs ``[B, k, ...]`` and labels or targets ``[B, k, ...]``."""
        if self.loss_name == "cross_entropy":
            return nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        # one-hot targets by comparison (one_hot itself cannot run under vmap: the instruments' per-example gradients)
        target = (y[..., None] == torch.arange(out.shape[-1], device=y.device)).to(out.dtype) if self.classes else y
        return ((out - target) ** 2).reshape(*out.shape[:2], -1).mean(-1)

    def loss_on(self, x: Tensor, idx: Tensor | None) -> Tensor:
        if idx is None:
            return self._per_example(self.outputs(x, self.X), self.y.expand(x.shape[0], *self.y.shape)).mean(-1)
        return self._per_example(self.outputs(x, self.X[idx]), self.y[idx]).mean(-1)

    def example_losses(self, x: Tensor, rows: Tensor) -> Tensor:
        """Each training example's loss ``[B, k]`` at ``x``, for the examples ``rows`` (the instruments' noise scale)."""
        return self._per_example(self.outputs(x, self.X[rows]), self.y[rows].expand(x.shape[0], *self.y[rows].shape))

    def loss_and_grad(self, x: Tensor, t: int | None = None) -> tuple[Tensor, Tensor]:
        """Loss and gradient of the step's mini-batch: one forward/backward per step."""
        idx = next(self.stream) if self.stream is not None and t is not None else None
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            f = self.loss_on(xx, idx)
            (g,) = torch.autograd.grad(f.sum(), xx)
        return f.detach(), g

    def update_grad(self):
        return super(DataProblem, self).update_grad()  # the step's gradient is already the mini-batch one

    def _eval_mode(self):
        return _Mode(self.module)

    def evaluate(self, x: Tensor) -> dict[str, Tensor]:
        """Loss (and accuracy, on classes) per member on the validation and the test split, ``[B]`` each."""
        if self.X_eval is None:
            return {}
        with torch.no_grad(), self._eval_mode():
            out = self.outputs(x, self.X_eval)
            y = self.y_eval.expand(x.shape[0], *self.y_eval.shape)
            loss = self._per_example(out, y)
            right = (out.argmax(-1) == y).to(torch.float64) if self.classes else None
        res, i = {}, 0
        for k, (_, labels) in self.held_out.items():
            j = i + len(labels)
            res[f"{k}_loss"] = loss[:, i:j].mean(-1)
            if right is not None:
                res[f"{k}_accuracy"] = right[:, i:j].mean(-1)
            i = j
        return res


class _Mode:
    """The module in eval mode inside the block, back in train mode after it."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self):
        self.module.eval()

    def __exit__(self, *exc):
        self.module.train()


def _some(y: np.ndarray) -> str:
    values = np.unique(y)
    return ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
