"""An MLflow filter string (``params.optimizer = 'adam' and metrics.final_loss < 1e-3``) applied to a
table of runs, as MLflow's search applies it to its tables: parsed by MLflow's own parser, then each
comparison evaluated on the table's ``params.*``, ``metrics.*``, ``tags.*`` and attribute columns. A run
without the key never matches (MLflow joins on it). Comparisons this module does not evaluate give
None, and the caller asks MLflow's search instead.
"""

from __future__ import annotations

import re

ATTRIBUTES = {"run_id": "run_id", "run_name": "run_name", "status": "status", "start_time": "start_time"}
PREFIX = {"parameter": "params.", "tag": "tags.", "metric": "metrics."}


def filter_mask(df, filter_string: str):
    """Boolean Series of the runs of ``df`` that match ``filter_string``, or None when a comparison is
    not one this module evaluates. Raises MLflow's exception for a filter MLflow would refuse."""
    from mlflow.utils.search_utils import SearchUtils

    mask = None
    for c in SearchUtils.parse_search_filter(filter_string):
        hit = _comparison(df, c["type"], c["key"], c["comparator"].upper(), c["value"])
        if hit is None:
            return None
        mask = hit if mask is None else mask & hit
    return mask if mask is not None else df["run_id"].notna()


def _comparison(df, kind: str, key: str, op: str, value):
    import pandas as pd

    if kind in PREFIX:
        column = PREFIX[kind] + key
    elif kind == "attribute" and key in ATTRIBUTES:
        column = ATTRIBUTES[key]
    else:
        return None
    if column not in df:
        return pd.Series(False, index=df.index)
    col = df[column]
    present = col.notna()
    if kind == "metric" or (kind == "attribute" and key == "start_time"):
        hit = _numeric(col.astype(float), op, float(value))
        return None if hit is None else present & hit
    col = col.where(present, "").astype(str)
    if op in ("=", "!="):
        return present & ((col == value) if op == "=" else (col != value))
    if op in ("LIKE", "ILIKE"):
        pattern = re.compile("".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in value) + r"\Z",
                             re.S | (re.I if op == "ILIKE" else 0))
        return present & col.map(lambda v: pattern.match(v) is not None).astype(bool)
    if op in ("IN", "NOT IN"):
        inside = col.isin(list(value))
        return present & (inside if op == "IN" else ~inside)
    return None


def _numeric(col, op: str, value: float):
    ops = {"=": col.__eq__, "!=": col.__ne__, "<": col.__lt__, "<=": col.__le__, ">": col.__gt__, ">=": col.__ge__}
    return ops[op](value) if op in ops else None
