"""How each optimizer is shown in reports: its place in tables and legends, and its colour in figures.

A new optimizer is a module (or a ``torch.optim`` class), a YAML file in ``conf/optimizer/``, and, for a
place and a colour of its own, a line here; an optimizer without one is shown after these, in a colour
of its report's palette. Why a table keyed by name and not a key in its YAML file:

1. every key of a run's config is part of its identity (``harness.plan.config_hash``, the resume
   check and the counting of each experiment once) and is logged as one of its params, so a display key
   there would make every stored run a different experiment from the same run made today;
2. reports read stored runs, including runs made before a key existed: the optimizer's name is what
   every run carries.
"""

from __future__ import annotations

# name -> colour, in display order (matplotlib's tab10, in its order, so reports keep their colours)
OPTIMIZERS: dict[str, str] = {
    "gd": "#1f77b4",
    "momentum": "#ff7f0e",
    "nesterov": "#2ca02c",
    "adagrad": "#d62728",
    "rmsprop": "#9467bd",
    "adam": "#8c564b",
    "adamw": "#e377c2",
    "nadam": "#7f7f7f",
    "lbfgs": "#bcbd22",
}


def order(name: str) -> tuple[bool, int, str]:
    """Sort key: the optimizers above in their order, then any other by name."""
    names = list(OPTIMIZERS)
    return (name not in OPTIMIZERS, names.index(name) if name in OPTIMIZERS else 0, name)


def colour(name: str) -> str | None:
    """The optimizer's fixed colour, or None where it has none (the figure picks one)."""
    return OPTIMIZERS.get(name)
