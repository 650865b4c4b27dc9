"""The MLflow store: the one package that knows MLflow's tables, for writes and reads alike.

- :mod:`~harness.store.location`: the tracking URI, its checks, creating a new sqlite store;
- :mod:`~harness.store.records`: what a run stores (metric rows, summary metrics, config.yaml);
- :mod:`~harness.store.curves`: every step of the curves, one Parquet file per batch of runs (and the older curves.npz);
- :mod:`~harness.store.tables`: SQL on MLflow's tables (sqlite3 alone at the pinned schema);
- :mod:`~harness.store.writer`: :class:`Tracker`, one finished run per member under a sweep's parent;
- :mod:`~harness.store.reader`: runs, curves and trajectories read back for the summary and the report.
"""

from harness.store.curves import CURVES_TAG, load_curves, read_curves_file, round_significand
from harness.store.location import (
           check_reachable,
           creation_lock,
           experiment_name,
           resolve_uri,
           runs_view,
           seed_new_sqlite,
           shown_uri,
)
from harness.store.reader import (
           RunSet,
           StoreError,
           curves_of,
           open_client,
           read_curves,
           read_runs,
           read_trajectory,
           run_curves,
)
from harness.store.records import RunRecord, sample_steps, ui_steps
from harness.store.tables import CODE_FILES, CODE_HASH, CONFIG_HASH, PARENT_TAG, SCHEMA_REVISION, SWEEP_HASH, member_key
from harness.store.writer import Tracker

__all__ = ["CODE_FILES", "CODE_HASH", "CONFIG_HASH", "CURVES_TAG", "PARENT_TAG", "SCHEMA_REVISION", "SWEEP_HASH", "RunRecord", "RunSet", "StoreError", "Tracker",
           "check_reachable", "creation_lock", "curves_of", "experiment_name", "load_curves", "member_key", "open_client", "read_curves",
           "read_curves_file", "read_runs", "read_trajectory", "resolve_uri", "round_significand", "run_curves", "runs_view", "sample_steps",
           "seed_new_sqlite", "shown_uri", "ui_steps"]
