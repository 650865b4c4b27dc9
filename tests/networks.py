"""Networks and data sets for tests/test_networks.py, named by import path as a user names their own."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BranchyNet(nn.Module):
    """Data-dependent control flow: which layer runs depends on the values (vmap refuses it)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(13, 3), nn.Linear(13, 3)

    def forward(self, x):
        return self.a(x) if self.a.weight.sum() > 0 else self.b(x)


class InPlaceNet(nn.Module):
    """Writes its result into a tensor it makes itself (vmap refuses writing a member's value there)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(13, 3)

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3, dtype=x.dtype)
        out += self.fc(x)
        return out


class BatchNormNet(nn.Sequential):
    """Batch norm in training mode: each member keeps its own running statistics."""

    def __init__(self):
        super().__init__(nn.Linear(13, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


class NotAModule:
    pass


class WineDataset(torch.utils.data.Dataset):
    """The wine data as a map-style torch Dataset of (features, label) pairs."""

    def __init__(self):
        from sklearn.datasets import load_wine

        X, y = load_wine(return_X_y=True)
        self.X, self.y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def wine_tensors():
    """The wine data as a pair of tensors."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    return torch.tensor(X), torch.tensor(y)


def half_labels():
    return np.ones((10, 13)), np.arange(10) * 0.5


def five_features():
    return np.ones((10, 5)), np.zeros(10)
