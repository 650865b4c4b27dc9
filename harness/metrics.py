"""Every per-run metric beyond the loss curve, declared once: its name, how it is shown, how it is
aggregated over seeds, and whether lower is better.

The harness's own statistics (``final_loss``, ``steps_to_1e-06``, ``diverged``, ...) are the protocol's
(harness/stats.py, harness/protocol.py). The metrics here are the ones a problem or an instrument adds:

1. **Curves** (``kind="curve"``): measured every ``eval_every`` steps and at a run's last step, stored as a
   member's sparse curve (key -> (steps, values)): metric rows in MLflow, a column of the batch's curves
   file, and the summary metric ``final_<name>`` (:func:`curve_summaries`, which the job calls).
2. **Summary metrics** (``kind="summary"``): one number per run. Those with ``of`` set are computed here
   from a curve (``max_sharpness`` is the largest measured ``sharpness``); the others by whoever logs them.

The report's summary table shows every per-run metric (:func:`per_run`) that its runs carry
(:func:`shown`), aggregated over the reporting seeds at the best lr as declared; its loss-curve figure
draws every curve its runs carry, one panel per ``panel``; ``--select`` offers every metric with
``rank=True``; MLflow logging stores the summaries :func:`curve_summaries` derives. So a new metric is a
line in ``REGISTRY`` plus its computation, and no presentation module names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str  # the MLflow key (a curve's key; a summary metric's key)
    label: str  # what tables, axes and legends call it
    kind: str  # "curve" or "summary" (see the module's docstring)
    lower_is_better: bool | None  # None: an order, not a merit (a flatter minimum is not a better run)
    aggregate: str = "median"  # over reporting seeds: "median", or "median_interval" (the median with its order-statistic interval)
    fmt: str = ".3f"  # format spec of one value
    rank: bool = False  # may select the best lr and rank configurations (``--select``); needs lower_is_better set
    describe: str = ""  # what ``--select`` and the protocol line call it ("final validation loss")
    of: str = ""  # summary metrics computed from a curve: that curve's name (see ``reduce``)
    reduce: str = ""  # ... and how: "max" (NaN measurements skipped)
    panel: str = ""  # curves: the loss-curve figure's panel that draws it (default: its own label)
    legend: str = ""  # curves: its name on that panel's axis, beside its marker (default: its label)
    marker: str = "o"  # curves: the marker of its few measured points
    log: bool = False  # curves: a log axis (where every value is positive)
    final_label: str = ""  # curves: the label of ``final_<name>`` (default: "final <label>")

    def format(self, v: float) -> str:
        return "–" if v is None or math.isnan(v) else format(v, self.fmt)


REGISTRY: tuple[Metric, ...] = (
    # held-out metrics of data problems (problems/data.py evaluates them)
    Metric("val_loss", "val loss", "curve", True, rank=True, describe="final validation loss", panel="held-out loss", legend="validation", final_label="val loss"),
    Metric("val_accuracy", "val accuracy", "curve", False, rank=True, describe="final validation accuracy", panel="held-out accuracy", legend="validation",
           final_label="val accuracy"),
    Metric("test_loss", "test loss", "curve", True, panel="held-out loss", legend="test", marker="^", final_label="test loss"),
    Metric("test_accuracy", "test accuracy", "curve", False, panel="held-out accuracy", legend="test", marker="^", final_label="test accuracy"),
    # instruments: lower sharpness is a flatter region, not a better run, so none of them ranks
    Metric("sharpness", "sharpness λmax(H)", "curve", None, "median_interval", ".3g", log=True),
    Metric("max_sharpness", "max sharpness λmax(H)", "summary", None, "median_interval", ".3g", of="sharpness", reduce="max"),
    Metric("preconditioned_sharpness", "preconditioned sharpness λmax(P⁻¹H)", "curve", None, "median_interval", ".3g", log=True),
    Metric("max_preconditioned_sharpness", "max preconditioned sharpness λmax(P⁻¹H)", "summary", None, "median_interval", ".3g",
           of="preconditioned_sharpness", reduce="max"),
    Metric("noise_scale", "gradient noise scale B_simple (examples)", "curve", None, "median_interval", ".3g", log=True),
    Metric("stability_threshold", "stability threshold on sharpness", "summary", None, "median_interval", ".3g"),
    Metric("edge_ratio", "edge ratio (sharpness / threshold, last third)", "summary", None, "median_interval", ".3g"),
)
REDUCTIONS = {"max": lambda v: float(np.nanmax(v)) if (~np.isnan(v)).any() else math.nan}  # a summary metric's ``reduce``


def get(name: str) -> Metric | None:
    """The declared metric ``name``: a curve, a summary metric, or a curve's ``final_<name>``; None if undeclared."""
    return _by_name().get(name)


def label(name: str) -> str:
    m = get(name)
    return m.label if m else name.replace("_", " ")


def fmt(name: str, value: float) -> str:
    m = get(name)
    return m.format(value) if m else ("–" if math.isnan(value) else f"{value:.3g}")


def curves() -> tuple[Metric, ...]:
    return tuple(m for m in REGISTRY if m.kind == "curve")


def per_run() -> tuple[Metric, ...]:
    """Every per-run number in declaration order: each curve's ``final_<name>``, and the summary metrics."""
    out = []
    for m in REGISTRY:
        if m.kind == "curve":
            out.append(replace(m, name=f"final_{m.name}", kind="summary", label=m.final_label or f"final {m.label}", of=m.name, reduce="last"))
        else:
            out.append(m)
    return tuple(out)


def held_out() -> tuple[Metric, ...]:
    """The curves a problem evaluates on held-out data (those drawn on a held-out panel)."""
    return tuple(m for m in curves() if m.panel.startswith("held-out"))


def selectable() -> dict[str, str]:
    """{curve name: description} of the metrics ``--select`` may choose (their ``final_<name>`` is selected on)."""
    return {m.name: m.describe or f"final {m.label}" for m in curves() if m.rank}


def lower_is_better(name: str) -> bool:
    """For selection and ranking: True unless the metric is declared higher-is-better."""
    m = get(name)
    return m is None or m.lower_is_better is not False


def present(frame, metrics: tuple[Metric, ...], column=lambda m: f"metrics.{m.name}") -> list[Metric]:
    """Those of ``metrics`` whose column is in ``frame`` with at least one value."""
    return [m for m in metrics if column(m) in frame and frame[column(m)].notna().any()]


def shown(runs) -> list[Metric]:
    """The per-run metrics a summary table shows for these runs (a run table: ``metrics.*`` columns)."""
    return present(runs, per_run())


def present_curves(runs) -> list[Metric]:
    """The curves these runs carry (each run that measured one logged its ``final_<name>``)."""
    return present(runs, curves(), lambda m: f"metrics.final_{m.name}")


def panels(ms: list[Metric]) -> list[str]:
    """The figure panels these curves are drawn on, in declaration order."""
    return list(dict.fromkeys(m.panel or m.label for m in ms))


def panel_label(panel: str, ms: list[Metric]) -> str:
    """A panel's axis label: ``held-out loss: validation (o), test (^)``, or the one curve's label."""
    on = [m for m in ms if (m.panel or m.label) == panel]
    if len(on) == 1 and not on[0].panel:
        return on[0].label
    return f"{panel}: " + ", ".join(f"{m.legend or m.label} ({m.marker})" for m in on)


def curve_summaries(sparse: dict) -> dict[str, float]:
    """The summary metrics of a member's sparse curves {name: (steps, values)}: ``final_<name>`` of every
    curve measured at least once, and every declared reduction of a declared curve."""
    out = {}
    for key, (steps, vals) in sparse.items():
        if len(steps):
            out[f"final_{key}"] = float(vals[-1])
    for m in REGISTRY:
        if m.kind == "summary" and m.of in sparse and len(sparse[m.of][0]) and m.reduce in REDUCTIONS:
            out[m.name] = REDUCTIONS[m.reduce](np.asarray(sparse[m.of][1], dtype=np.float64))
    return out


def _by_name() -> dict[str, Metric]:
    # not cached: tests (and a user's own code) may extend REGISTRY
    return {m.name: m for m in (*REGISTRY, *per_run())}
