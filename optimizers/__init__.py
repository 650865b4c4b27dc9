"""Functional, batched optimizers that match ``torch.optim`` step for step.

Every optimizer is an :class:`~optimizers.base.Optimizer`: a pair of pure functions
``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``
(the optax shape). ``params`` is a list of tensors whose leading dimension is the
batch of independent runs ("members"); each numeric hyperparameter is a tensor of
shape ``[B]``, so every member can have its own learning rate, momentum, betas, ...
A single run is simply ``B = 1``.
"""

from optimizers.errors import ConfigError

__all__ = ["ConfigError", "Optimizer"]


def __getattr__(name: str):
    if name == "Optimizer":  # torch is imported when an optimizer is wanted, not by readers of the package's display table
        from optimizers.base import Optimizer

        return Optimizer
    raise AttributeError(f"module 'optimizers' has no attribute {name!r}")
