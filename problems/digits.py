"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), split and standardised once for the
networks that train on them (the CNN and the MLP).

The train/validation/test split is fixed by ``data_seed`` (``problems.data.split``, stream
``digits_split``: the test split is the one the former 80/20 split had, the validation split comes out
of the former training set). Both fractions must be in (0, 1): networks are selected by a validation
metric and reported by test metrics. Pixels are scaled to [0, 1], then standardised with one mean and
one std over every pixel of the training images.
"""

from __future__ import annotations

import numpy as np

from problems.data import split


def digits(val_fraction, test_fraction, data_seed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images [1797, 64] float64, labels [1797] int64, train, val, test row indices)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    train, val, test = split(len(y), val_fraction, test_fraction, data_seed, "digits_split", auto=False)
    mean, std = (X[train] / 16.0).mean(), (X[train] / 16.0).std()
    return (X / 16.0 - mean) / std, y.astype(np.int64), train, val, test
