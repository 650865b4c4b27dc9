"""Optimizer benchmark harness: batched runs of optimizers on test problems, tracked in MLflow."""

from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"  # the config groups (Hydra's config_path)
