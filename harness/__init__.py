"""Optimizer benchmark harness: batched runs of optimizers on test problems, tracked in MLflow."""
