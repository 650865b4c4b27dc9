"""Your own data for the regression problems: a .csv table or a .npz archive, checked cell by cell.

- ``.csv``: a header row naming the columns, then one example per row, every cell a number.
  ``problem.target`` names the label column (default: the last column); every other column is a feature.
- ``.npz``: an array ``X`` (examples x features) and a label array named by ``problem.target``
  (default ``y``), one label per example.

Every problem is one line naming the key, the bad value and what is allowed (a ConfigError).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optimizers.base import ConfigError


def is_path(dataset) -> bool:
    return isinstance(dataset, str) and dataset.lower().endswith((".csv", ".npz"))


def load(path: str, target: str | None, key: str = "problem.dataset", any_shape: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features [n, p] float64, labels [n] float64, feature names) from ``path``, the value of ``key``.
    With ``any_shape`` a .npz ``X`` may have any shape ``(n, ...)`` (a network's inputs, such as images)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{key}={path!r} is not allowed: no such file (relative paths start at the directory you run from); "
                          "allowed: an existing .csv or .npz file, or a bundled dataset")
    X, y, names = _npz(p, path, target, key, any_shape) if p.suffix.lower() == ".npz" else _csv(p, path, target, key)
    if len(y) < 1 or np.prod(X.shape[1:]) < 1:
        raise ConfigError(f"{key}={path!r} has {len(y)} examples and {int(np.prod(X.shape[1:]))} features; allowed: at least one of each")
    return X, y, names


def _csv(p: Path, path: str, target: str | None, key: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"{key}={path!r} is not a readable CSV table ({str(e).splitlines()[0]}); "
                          "allowed: a header row, then one row of numbers per example") from None
    columns = [str(c) for c in df.columns]
    target = columns[-1] if target is None else str(target)
    if target not in columns:
        raise ConfigError(f"problem.target={target!r} is not a column of {path}; allowed: {', '.join(columns)}")
    values = np.empty(df.shape, dtype=np.float64)
    for j, col in enumerate(columns):
        cells = df.iloc[:, j]
        numbers = pd.to_numeric(cells.str.strip().replace("", "nan"), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            i, cell = int(bad[0]), cells.iloc[int(bad[0])]
            try:
                float(cell) if cell.strip() else None
            except ValueError:
                raise ConfigError(f"{key}={path!r}: row {i + 2}, column {col!r} holds {cell!r}; allowed: numbers only") from None
            raise ConfigError(f"{key}={path!r}: row {i + 2}, column {col!r} holds {cell!r}; allowed: finite numbers (no NaN, inf or empty cells)")
        values[:, j] = numbers
    k = columns.index(target)
    return np.delete(values, k, axis=1), values[:, k], [c for c in columns if c != target]


def _npz(p: Path, path: str, target: str | None, key: str, any_shape: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}={path!r} is not a readable .npz archive ({str(e).splitlines()[0]}); "
                          "allowed: numpy.savez(path, X=features, y=labels)") from None
    target = "y" if target is None else str(target)
    if "X" not in arrays:
        raise ConfigError(f"{key}={path!r} has no array 'X' (it has {', '.join(arrays) or 'none'}); allowed: an archive with X and {target!r}")
    if target not in arrays or target == "X":
        raise ConfigError(f"problem.target={target!r} is not an array of {path}; allowed: {', '.join(k for k in arrays if k != 'X') or 'none'}")
    X, y = arrays["X"], arrays[target]
    if (X.ndim < 1 if any_shape else X.ndim != 2) or y.ndim != 1 or len(y) != len(X):
        shape = "(n, ...)" if any_shape else "(n, p)"
        raise ConfigError(f"{key}={path!r} has X of shape {X.shape} and {target} of shape {y.shape}; "
                          f"allowed: X of shape {shape} and one label per example, shape (n,)")
    for name, a in (("X", X), (target, y)):
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ConfigError(f"{key}={path!r}: array {name!r} holds {a.dtype} values; allowed: real numbers only")
        bad = np.argwhere(~np.isfinite(a.astype(np.float64)))
        if len(bad):
            where = ", ".join(map(str, bad[0]))
            raise ConfigError(f"{key}={path!r}: {name}[{where}] is {float(a[tuple(bad[0])])}; allowed: finite numbers (no NaN or inf)")
    return X.astype(np.float64), y.astype(np.float64), [f"x{j + 1}" for j in range(int(np.prod(X.shape[1:])))]


def two_classes(y: np.ndarray, path: str, target: str | None) -> np.ndarray:
    """Labels as 0/1 (the smaller value is 0), or an error when there are not exactly two classes."""
    classes = np.unique(y)
    if len(classes) != 2:
        shown = ", ".join(f"{c:g}" for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(f"problem.target={target or 'default'!r} of {path} has {len(classes)} distinct labels ({shown}); "
                          "allowed: exactly two classes for logistic regression")
    return (y == classes[1]).astype(np.float64)
