"""Markdown reports with figures, built only from what a sweep stored in MLflow.

``python -m harness.report`` writes ``reports/<name>/report.md`` and its figures for the latest
sweep in the default store (or a given sweep, experiment filter or tracking URI), and attaches
them to the sweep's parent run.
"""
