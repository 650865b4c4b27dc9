"""Report figures (matplotlib, Agg, 150 dpi). One colour per optimizer across every figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report import analysis  # noqa: E402
from harness.report.data import Sweep, curves, problem_object, trajectory  # noqa: E402

DPI = 150
ORDER = ["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "lbfgs"]
OUTCOME_COLOURS = {"global": "#2ca02c", "local": "#ff7f0e", "none": "#7f7f7f", "diverged": "#d62728"}


def colours(optimizers) -> dict[str, str]:
    """A fixed colour per optimizer name: the same in every figure and every report."""
    cmap = plt.get_cmap("tab10").colors
    known = {o: matplotlib.colors.to_hex(cmap[i % 10]) for i, o in enumerate(ORDER)}
    extra = sorted(o for o in optimizers if o not in known)
    dark = plt.get_cmap("Dark2").colors
    known.update({o: matplotlib.colors.to_hex(dark[i % 8]) for i, o in enumerate(extra)})
    return known


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _legend_outside(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def loss_curves(sweep: Sweep, prob: str, best: pd.DataFrame, col: dict, out: Path) -> str:
    """Median (and inter-quartile band) over seeds of each optimizer at its best lr, vs step and wall time."""
    runs = sweep.runs[sweep.runs.problem == prob]
    fstar = bool(runs["has_fstar"].all())
    key = "suboptimality" if fstar else "loss"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    lows, highs = [], []
    for opt in sorted(best.loc[prob].index, key=lambda o: (o not in ORDER, ORDER.index(o) if o in ORDER else 0, o)):
        lr = best.loc[(prob, opt), "lr"]
        ids = runs[(runs.optimizer == opt) & (runs.lr == lr)]["run_id"].tolist()
        pts = curves(sweep, ids, (key,))
        if pts.empty:
            continue
        wide = pts.pivot_table(index="step", columns="run_id", values="value").sort_index().ffill()
        t = pts.pivot_table(index="step", columns="run_id", values="t").sort_index().ffill().median(axis=1)
        y = wide.clip(lower=1e-300) if fstar else wide
        with np.errstate(invalid="ignore"):
            med, q1, q3 = y.median(axis=1), y.quantile(0.25, axis=1), y.quantile(0.75, axis=1)
        fin = med[np.isfinite(med)]
        if len(fin):
            lows.append(fin.min())
            highs.append(fin.iloc[0])
        n_div = int(runs[runs.run_id.isin(ids)]["diverged"].sum())
        label = f"{opt} (lr={lr:.3g}, {len(ids)} seed{'s' if len(ids) > 1 else ''}" + (f", {n_div} diverged)" if n_div else ")")
        for ax, x in zip(axes, (wide.index.to_numpy(), t.to_numpy())):
            ax.plot(x, med, color=col[opt], label=label, lw=1.6)
            if len(ids) > 1:
                ax.fill_between(x, q1, q3, color=col[opt], alpha=0.2, lw=0)
    if fstar and lows:  # the axis follows the medians: a diverged seed's band must not squash them
        axes[0].set_ylim(max(min(lows) / 10, 1e-300), max(highs) * 100)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall time (s, batched run)")
    axes[0].set_ylabel("f(x) - f*  (median, IQR band)" if fstar else "loss f(x)  (median, IQR band)")
    for ax in axes:
        if fstar:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"{prob}: each optimizer at its best learning rate")
    _legend_outside(axes[1])
    return _save(fig, out / f"curves_{prob}.png")


def lr_sensitivity(sweep: Sweep, prob: str, target: float, col: dict, out: Path) -> str:
    """Final value vs lr (median line, per-seed points, diverged marked) and steps to target vs lr."""
    runs = sweep.runs[sweep.runs.problem == prob]
    fstar = bool(runs["has_fstar"].all())
    scol = analysis.target_column(target)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    ok = runs[~runs["diverged"] & np.isfinite(runs["final"])]
    vals = ok["final"].clip(lower=1e-300) if fstar else ok["final"]
    ceiling = (vals.max() if len(vals) else 1.0) * (30 if fstar else 1.0) + (0 if fstar else 1.0)
    for k, (opt, g) in enumerate(runs.groupby("optimizer")):
        good = g[~g["diverged"]]
        y = good["final"].clip(lower=1e-300) if fstar else good["final"]
        a.scatter(good["lr"], y, s=10, color=col[opt], alpha=0.35, lw=0)
        med = g.groupby("lr")["score"].median().replace(math.inf, np.nan)
        a.plot(med.index, med.clip(lower=1e-300) if fstar else med, "-o", ms=3, color=col[opt], label=opt)
        bad = g[g["diverged"]]
        if len(bad):
            y_bad = ceiling * (1.6**k if fstar else 1.0) + (0 if fstar else 0.05 * k * abs(ceiling))
            a.scatter(bad["lr"], np.full(len(bad), y_bad), marker="x", s=28, color=col[opt])
        if scol in g:
            st = g.groupby("lr")[scol].median().dropna()
            b.plot(st.index, st, "-o", ms=3, color=col[opt], label=opt)
    a.scatter([], [], marker="x", color="k", label="diverged (drawn at top)")
    if prob == "quadratic" and {"params.problem.mu", "params.problem.L"} <= set(runs.columns):
        mu, L = float(runs["params.problem.mu"].iloc[0]), float(runs["params.problem.L"].iloc[0])
        for ax in (a, b):
            ax.axvline(2 / L, color="k", ls="--", lw=1)
            ax.axvline(2 / (L + mu), color="k", ls=":", lw=1)
        a.plot([], [], "k--", lw=1, label="2/L: GD stability edge")
        a.plot([], [], "k:", lw=1, label="2/(L+mu): optimal GD step")
    a.set_xscale("log")
    if fstar:
        a.set_yscale("log")
    a.set_xlabel("learning rate")
    a.set_ylabel("final f(x) - f*" if fstar else "final loss")
    a.set_title(f"{prob}: final value vs learning rate (line: median over seeds; dots: seeds)")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("learning rate")
    b.set_ylabel(f"steps to f - f* <= {target:.0e} (median of seeds that reached it)")
    b.set_title("steps to target vs learning rate")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
    _legend_outside(a)
    fig.tight_layout()
    return _save(fig, out / f"lr_{prob}.png")


def outcomes(shares: pd.DataFrame, prob: str, out: Path) -> str:
    """Stacked shares of runs ending at a global minimum, a local one, none, or diverged."""
    s = shares[shares.problem == prob]
    opts = sorted(s.optimizer.unique(), key=lambda o: (o not in ORDER, ORDER.index(o) if o in ORDER else 0, o))
    nc = min(4, len(opts))
    nr = math.ceil(len(opts) / nc)
    fig, axes = plt.subplots(nr, nc, figsize=(max(4, 3.4 * nc), 3.4 * nr), sharey=True, squeeze=False)
    for ax in axes.flat[len(opts):]:
        ax.set_visible(False)
    for ax, opt in zip(axes.flat, opts):
        g = s[s.optimizer == opt].sort_values("lr")
        x = np.arange(len(g))
        bottom = np.zeros(len(g))
        for c, colr in OUTCOME_COLOURS.items():
            ax.bar(x, g[c], bottom=bottom, color=colr, label=c, width=0.8)
            bottom += g[c].to_numpy()
        ax.set_xticks(x, [f"{v:.0e}" for v in g["lr"]], rotation=90, fontsize=7)
        ax.set_title(opt)
        ax.set_xlabel("learning rate")
    for row in axes:
        row[0].set_ylabel("share of runs")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="lower center", ncol=4, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(f"{prob}: where runs ended", y=1.06)
    return _save(fig, out / f"minima_{prob}.png")


def trajectories(sweep: Sweep, prob: str, best: pd.DataFrame, col: dict, out: Path, per_panel: int = 6) -> str | None:
    """Contour of the 2-D landscape (or the 1-D curve), one panel per optimizer at its best lr,
    with up to ``per_panel`` seeded starts; minima marked (star: global, dot: local)."""
    runs = sweep.runs[sweep.runs.problem == prob]
    p = problem_object(runs.iloc[0])
    if p is None or p.dim > 2:
        return None
    import torch

    opts = sorted(best.loc[prob].index, key=lambda o: (o not in ORDER, ORDER.index(o) if o in ORDER else 0, o))
    nc = min(4, len(opts))
    nr = math.ceil(len(opts) / nc)
    fig, axes = plt.subplots(nr, nc, figsize=(3.8 * nc, 3.6 * nr), squeeze=False)
    for ax in axes.flat[len(opts):]:
        ax.set_visible(False)
    lo, hi = p.box[:, 0], p.box[:, 1]
    pad = 0.1 * (hi - lo)
    if p.dim == 2:
        xs, ys = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 120), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 120)
        X, Y = np.meshgrid(xs, ys)
        with torch.no_grad():
            Z = p.loss(torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))).numpy().reshape(X.shape)
        Zs = np.log10(Z - Z.min() + 1e-3)
    else:
        xs = np.linspace(min(lo[0], -1.6) - pad[0], hi[0] + pad[0], 400)
        with torch.no_grad():
            fx = p.loss(torch.tensor(xs)[:, None]).numpy()
    for ax, opt in zip(axes.flat, opts):
        lr = best.loc[(prob, opt), "lr"]
        ids = runs[(runs.optimizer == opt) & (runs.lr == lr)].sort_values("seed")["run_id"].tolist()[:per_panel]
        if p.dim == 2:
            ax.contourf(X, Y, Zs, levels=20, cmap="Greys", alpha=0.7)
        else:
            ax.plot(xs, fx, color="k", lw=1)
        for rid in ids:
            tr = trajectory(sweep, rid)
            if tr is None:
                continue
            tr = tr[np.isfinite(tr.iloc[:, 1:].to_numpy()).all(axis=1)]
            if p.dim == 2:
                ax.plot(tr["x1"], tr["x2"], color=col[opt], lw=1, alpha=0.9)
                ax.plot(tr["x1"].iloc[0], tr["x2"].iloc[0], "o", color=col[opt], ms=3)
            else:
                ax.plot(tr["x1"], tr["loss"], ".", color=col[opt], ms=2, alpha=0.5)
        for m in p.minima if len(p.minima) <= 30 else [m for m in p.minima if m.kind == "global"]:
            y = m.x[1] if p.dim == 2 else m.f
            ax.plot(m.x[0], y, "*" if m.kind == "global" else "o", color="gold" if m.kind == "global" else "white",
                    mec="k", ms=11 if m.kind == "global" else 5, zorder=5)
        if p.dim == 2:
            ax.set_xlim(xs[0], xs[-1])
            ax.set_ylim(ys[0], ys[-1])
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        else:
            ax.set_xlabel("x")
            ax.set_ylabel("f(x)")
        ax.set_title(f"{opt}, lr={lr:.3g}", fontsize=9)
    fig.suptitle(f"{prob}: trajectories from up to {per_panel} seeded starts (star: global min, dot: local min)", y=1.03)
    fig.tight_layout()
    return _save(fig, out / f"trajectories_{prob}.png")


def profile(runs: pd.DataFrame, target: float, col: dict, out: Path) -> str | None:
    taus = np.logspace(0, 3, 200, base=2)
    prof = analysis.performance_profile(runs, target, taus)
    if len(prof) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for opt, rho in prof.items():
        ax.step(taus, rho, where="post", color=col[opt], label=opt)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau: steps to target within tau x the fastest optimizer")
    ax.set_ylabel("share of (problem, seed) instances")
    ax.set_title(f"Performance profile (Dolan-More), target f - f* <= {target:.0e}")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    return _save(fig, out / "profile.png")
