"""The edge-of-stability figure (Cohen et al., 2021): sharpness over steps against each lr's threshold.

It draws what :mod:`harness.stability` computes: one panel per configuration, a line per lr (the median
over the lr's runs that did not diverge, with their inter-quartile band), each lr's threshold as a
dashed line in the same colour, on a log axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness import analysis, metrics, stability
from harness.report.figures import _legend_below, _save, _slug, _title
from harness.store import RunSet, read_curves

MAX_LRS = 10  # lrs drawn per panel (evenly spread over those that did not all diverge)


def drawn_lrs(t: pd.DataFrame) -> list[float]:
    """The lrs a panel draws: those whose runs did not all diverge, at most ``MAX_LRS`` spread evenly."""
    lrs = sorted(t.loc[t["diverged"] < t["runs"], "lr"])
    if len(lrs) <= MAX_LRS:
        return lrs
    return [lrs[i] for i in np.unique(np.round(np.linspace(0, len(lrs) - 1, MAX_LRS)).astype(int))]


def sharpness(rs: RunSet, df: pd.DataFrame, table: pd.DataFrame, prob: str, out: Path, name: str) -> str | None:
    """One panel per configuration with a threshold; None where there is nothing to draw."""
    g = df[df.problem == prob]
    cfgs = [c for c in analysis.configs(g) if c in set(table["config"]) and drawn_lrs(table[table.config == c])]
    if not cfgs:
        return None
    nc = min(3, len(cfgs))
    nr = math.ceil(len(cfgs) / nc)
    fig, axes = plt.subplots(nr, nc, figsize=(max(7.0, 5.0 * nc), 3.9 * nr + 0.8), squeeze=False, layout="constrained")
    for ax in axes.flat[len(cfgs):]:
        ax.set_visible(False)
    for ax, cfg in zip(axes.flat, cfgs):
        _panel(ax, rs, g[g.config == cfg], table[table.config == cfg], cfg)
    handles = [axes.flat[0].plot([], [], "k-")[0], axes.flat[0].fill_between([], [], [], color="grey", alpha=0.25, lw=0),
               axes.flat[0].plot([], [], "k--", lw=1)[0]]
    labels = ["median over the lr's seeds that did not diverge", "inter-quartile band", "the lr's stability threshold (same colour)"]
    _title(fig, f"{name}: sharpness against each lr's stability threshold (edge of stability: the line meets its dashed threshold)")
    _legend_below(fig, handles, labels)
    return _save(fig, out / f"stability_{_slug(prob)}.png")


def _panel(ax, rs: RunSet, gc: pd.DataFrame, t: pd.DataFrame, cfg: str) -> None:
    lrs = drawn_lrs(t)
    key = t["curve"].iloc[0]
    cmap = plt.get_cmap("viridis")
    for i, lr in enumerate(lrs):
        c = cmap(0.9 * i / max(1, len(lrs) - 1))
        row = t[t.lr == lr].iloc[0]
        ids = gc[(gc.lr == lr) & ~gc["diverged"]]["run_id"].tolist()
        pts = read_curves(rs, ids, (key,))
        pts = pts[np.isfinite(pts["value"]) & (pts["value"] > 0)]
        if len(pts):
            b = stability.band(pts)
            ax.plot(b["step"], b["median"], color=c, lw=1.5, label=_label(lr, row))
            if len(ids) > 1:
                ax.fill_between(b["step"], b["q25"], b["q75"], color=c, alpha=0.2, lw=0)
        ax.axhline(row["threshold"], color=c, ls="--", lw=1)
    ax.set_yscale("log")
    _plain_ticks(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(metrics.label(key), fontsize=8)
    ax.set_title(f"{cfg}; threshold {t['formula'].iloc[0]}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="lr: median ratio, class", title_fontsize=7, loc="best", framealpha=0.8)


def _plain_ticks(ax) -> None:
    """On a log axis spanning less than a decade and a half, every tick labelled as a plain number (the
    default labels only powers of ten, which may leave one label or none)."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10**1.5:
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)


def _label(lr: float, row: pd.Series) -> str:
    ratio = "–" if math.isnan(row["ratio"]) else f"{row['ratio']:.2f}"
    return f"{lr:.3g}: {ratio}, {row['cls']}"
