"""Your own network on your own data: a small MLP on scikit-learn's bundled wine data (178 wines, 13
measurements, 3 cultivars), as ``problem=module`` runs it:

    python -m harness problem=module problem.model=examples.wine_mlp.WineNet problem.data=examples.wine_mlp.wine \\
        optimizer=adam batch_size=32 steps=300 -m lr=1e-3,1e-2 "seed=range(3)"

Each of the 6 runs is its own WineNet, built with ``torch.manual_seed(seed); WineNet()``; all 6 train
as one batch (torch.func.vmap over functional_call).
"""

from __future__ import annotations

from torch import nn


class WineNet(nn.Sequential):
    """13 measurements -> 32 tanh units -> 3 cultivars (logits)."""

    def __init__(self):
        super().__init__(nn.Linear(13, 32), nn.Tanh(), nn.Linear(32, 3))


def wine():
    """(X [178, 13], y [178] in 0, 1, 2): the data, as ``problem.data`` takes it."""
    from sklearn.datasets import load_wine

    return load_wine(return_X_y=True)
