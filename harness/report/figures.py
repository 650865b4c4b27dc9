"""Report figures (matplotlib, Agg, 150 dpi). They only draw what :mod:`harness.analysis` returns.

One colour per configuration across every figure of a report; titles sit above the axes and
legends below them (constrained layout), so neither overprints the other. Runs that end exactly
at f* cannot sit on a log axis: they are drawn on a dashed line labelled "= f*" below the data.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import analysis, metrics, theory  # noqa: E402
from harness.protocol import UNITS, cost_per_step  # noqa: E402
from harness.store import RunSet, curves_of, read_curves, read_trajectory, run_curves  # noqa: E402
from optimizers import display  # noqa: E402

DPI = 150
OUTCOME_COLOURS = {"global": "#2ca02c", "local": "#ff7f0e", "none": "#7f7f7f", "diverged": "#d62728"}
STYLES = ["-", "--", ":", "-."]


def colours(configs: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, line style) per configuration. Plain optimizer names keep a fixed colour in every report."""
    if all(display.colour(c) for c in configs):
        return {c: (display.colour(c), "-") for c in configs}
    cmap = plt.get_cmap("tab10" if len(configs) <= 10 else "tab20").colors
    return {c: (matplotlib.colors.to_hex(cmap[i % len(cmap)]), STYLES[(i // len(cmap)) % len(STYLES)]) for i, c in enumerate(configs)}


def _title(fig, text: str, fontsize: float = 12) -> None:
    """The figure's title, wrapped onto as many lines as the figure's width needs (a one-line title
    wider than a narrow figure is clipped on both sides)."""
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # a character is about 0.55 em wide
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


def _legend_below(fig, handles, labels) -> None:
    """Legend under the axes, in as many columns as fit the figure's width; the figure grows to hold its rows."""
    if not handles:
        return
    width_pt = fig.get_figwidth() * 72
    ncol = int(max(1, min(len(labels), width_pt // (max(map(len, labels)) * 5.2 + 50))))
    rows = math.ceil(len(labels) / ncol)
    fig.set_figheight(fig.get_figheight() + 0.15 * rows)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _floor(values) -> float:
    """Where values <= 0 (exactly f*) are drawn on a log axis: a decade below the smallest positive one."""
    v = np.asarray(values, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    return float(pos.min()) / 10 if pos.size else 1e-16


def _fstar_line(ax, floor: float, shown: bool) -> None:
    if shown:
        ax.axhline(floor, color="k", ls="--", lw=0.8)
        ax.annotate("= f*", (0.005, floor), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)


def _at_best(df, bests, prob):
    for r in bests[bests.problem == prob].itertuples():
        yield r, analysis.at_best(df, prob, r.config, r.best_lr)


def _per_step(at: pd.DataFrame, unit: str) -> pd.Series:
    """Each run's cost per step in ``unit``, by run id."""
    return pd.Series(cost_per_step(at, unit).to_numpy(), index=at["run_id"])


def _band(rs: RunSet, ids: list[str], key: str, at: pd.DataFrame, unit: str):
    """(x, median, q1, q3) of curve ``key`` over runs ``ids`` at every step, a run that stopped keeping
    its last value; x is the median cost of reaching each step. From the runs' arrays as a [steps, runs]
    matrix (thousands of runs at a best lr make millions of points), or from the metric rows for runs
    stored without curves files. None when no run has the curve."""
    got = curves_of(rs, ids)
    if any(c is None for c in got.values()):  # runs stored without curves files: their metric rows
        pts = read_curves(rs, ids, (key,))
        if pts.empty:
            return None
        pts["x"] = _cost_axis(rs, pts, at, unit)
        wide = pts.pivot_table(index="step", columns="run_id", values="value").sort_index().ffill()
        x = pts.groupby("step")["x"].median().reindex(wide.index).to_numpy()
        return x, *_quartiles(wide)
    per = _per_step(at, unit)
    arrays = [(c[key] if key in c else None, c, per.get(rid, 1.0)) for rid, c in got.items()]
    arrays = [a for a in arrays if a[0] is not None]
    if not arrays:
        return None
    n = max(len(v) for v, _, _ in arrays)
    vals, cost = np.full((n, len(arrays)), np.nan), np.full((n, len(arrays)), np.nan)
    for j, (v, c, f) in enumerate(arrays):
        vals[: len(v), j] = v
        steps = np.arange(len(v), dtype=float)
        cost[: len(v), j] = c["grad_evals"][: len(v)] if unit == "evals" and "grad_evals" in c else steps * (1.0 if pd.isna(f) else f)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps no run reached
        x = np.nanmedian(cost, axis=1)
    return x, *_quartiles(pd.DataFrame(vals).ffill())


def _quartiles(wide: pd.DataFrame) -> list[np.ndarray]:
    with np.errstate(invalid="ignore"):
        return [wide.median(axis=1).to_numpy(), wide.quantile(0.25, axis=1).to_numpy(), wide.quantile(0.75, axis=1).to_numpy()]


def _cost_axis(rs: RunSet, pts: pd.DataFrame, at: pd.DataFrame, unit: str) -> np.ndarray:
    """The cost of reaching each curve point in ``unit``: a run's cumulative gradient evaluations where it
    stored them (L-BFGS), else its steps times its cost per step."""
    x = np.array(pts["step"] * pts["run_id"].map(_per_step(at, unit)).fillna(1.0), dtype=float)  # a copy: pandas' may be read-only
    if unit == "evals":
        for rid in pts["run_id"].unique():
            c = run_curves(rs, rid)
            if c is not None and "grad_evals" in c:
                rows = (pts["run_id"] == rid).to_numpy()
                x[rows] = c["grad_evals"][np.minimum(pts["step"].to_numpy()[rows], len(c["grad_evals"]) - 1)]
    return x


AXIS = {"steps": "step", "evals": "gradient evaluations", "examples": "examples seen"}


def loss_curves(rs: RunSet, df: pd.DataFrame, bests: pd.DataFrame, prob: str, unit: str, col: dict, out: Path, name: str) -> str:
    """Median and inter-quartile band over reporting seeds, per configuration at its best lr, against the
    problem's unit of cost; held-out metrics against the same axis where the problem evaluates them."""
    g = df[df.problem == prob]
    fstar = bool(g["has_fstar"].all())
    key = "suboptimality" if fstar else "loss"
    measured = metrics.present_curves(g)  # the declared curves these runs measured every eval_every steps (harness/metrics.py)
    tests = [m.name for m in measured]
    kinds = metrics.panels(measured)  # one panel each (validation and test loss share one)
    panels = 1 + len(kinds)
    cols = min(panels, 3)
    fig, axes = plt.subplots(math.ceil(panels / cols), cols, figsize=(max(8.0, 5.6 * cols), 4.6 * math.ceil(panels / cols)), layout="constrained", squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    axes = axes.flat[:panels]
    of = {m.name: m for m in measured}
    series = []  # (config label, key, x, median, q1, q3, seeds)
    labels = {}
    for r, at in _at_best(df, bests, prob):
        ids = at["run_id"].tolist()
        n_div = int(at["diverged"].sum())
        labels[r.config] = f"{r.config}, lr={r.best_lr:.3g} ({len(ids)} seed{'s' * (len(ids) > 1)}{f', {n_div} diverged' if n_div else ''})"
        band = _band(rs, ids, key, at, unit)
        if band is not None:
            series.append((r.config, key, *band, len(ids)))
        if not tests:
            continue
        pts = read_curves(rs, ids, tests)  # held-out metrics: a few evaluations per run
        pts["x"] = _cost_axis(rs, pts, at, unit)
        for k in tests:
            p = pts[pts.key == k]
            if p.empty:
                continue
            wide = p.pivot_table(index="step", columns="run_id", values="value").sort_index().ffill()
            x = p.groupby("step")["x"].median().reindex(wide.index).to_numpy()
            with np.errstate(invalid="ignore"):
                stats = [wide.median(axis=1).to_numpy(), wide.quantile(0.25, axis=1).to_numpy(), wide.quantile(0.75, axis=1).to_numpy()]
            series.append((r.config, k, x, *stats, len(ids)))
    meds = [m for cfg, k, _, m, *_ in series if k == key]
    allv = np.concatenate(meds) if meds else np.array([])
    log_y = fstar or (allv.size > 0 and bool((allv[np.isfinite(allv)] > 0).all()))
    floor = _floor(allv)
    at_fstar = fstar and bool((allv <= 0).any())
    done = set()
    handles = []
    alpha = 0.15 if len(labels) <= 4 else 0.06  # many overlapping bands would hide the medians
    for cfg, k, x, med, q1, q3, n in series:
        c, ls = col[cfg]
        if k == key and log_y:
            med, q1, q3 = (np.where(v <= 0, floor, v) for v in (med, q1, q3))
        ax = axes[0] if k == key else axes[1 + kinds.index(of[k].panel or of[k].label)]
        marker = None if k == key else of[k].marker  # evaluated every eval_every steps: few points
        h = ax.plot(x, med, color=c, ls=ls, lw=1.5, marker=marker, ms=4)[0]
        if n > 1:
            ax.fill_between(x, q1, q3, color=c, alpha=alpha, lw=0)
        if cfg not in done:
            done.add(cfg)
            handles.append((h, labels[cfg]))
    if log_y:
        axes[0].set_yscale("log")
    _fstar_line(axes[0], floor, at_fstar)
    axes[0].grid(alpha=0.3, which="both")
    axes[0].set_ylabel("f(x) - f*  (median, IQR band)" if fstar else "training loss f(x)  (median, IQR band)")
    for ax, kind in zip(axes[1:], kinds):
        ax.set_ylabel(metrics.panel_label(kind, measured))
        ax.grid(alpha=0.3)
        if _log_panel(kind, measured, series, of):
            ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel(AXIS[unit])
        if unit != "steps":  # costs that span decades (batch size 1 against full batch)
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(left=0)
    _title(fig, f"{name}: each configuration at its best learning rate (reporting seeds)")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / f"curves_{_slug(prob)}.png")


def _log_panel(panel: str, measured: list, series: list, of: dict) -> bool:
    """A log axis for a panel of curves declared ``log`` whose medians are all positive."""
    on = [m.name for m in measured if (m.panel or m.label) == panel and m.log]
    meds = [m[np.isfinite(m)] for _, k, _, m, *_ in series if k in on]
    return bool(on) and bool(meds) and all((v > 0).all() for v in meds) and any(v.size for v in meds)


def lr_sensitivity(df: pd.DataFrame, prob: str, target: float, unit: str, col: dict, order: list[str], out: Path, name: str,
                   classes: pd.DataFrame | None = None) -> str:
    """Final value vs lr (median line, per-seed dots, diverged runs as x at the top) and, where f* is
    known, median cost to target vs lr, over every seed. On the quadratic, each configuration's own stability edge.
    Where instruments measured sharpness, ``classes`` (harness/stability.py ``table``) marks each lr's median."""
    g = df[df.problem == prob]
    fstar = bool(g["has_fstar"].all())
    fig, axes = plt.subplots(1, 2 if fstar else 1, figsize=(12 if fstar else 7, 4.6), layout="constrained", squeeze=False, sharex=True)
    a, b = axes[0][0], (axes[0][1] if fstar else None)
    ok = g[~g["diverged"] & np.isfinite(g["final"])]
    positive = bool((ok["final"] > 0).all()) and len(ok) > 0
    log_y = fstar or positive
    floor = _floor(ok["final"]) if log_y else 0.0
    top = (ok["final"].max() if len(ok) else 1.0) * (30 if log_y else 1.0) + (0 if log_y else 0.1 * max(1.0, abs(ok["final"].max()) if len(ok) else 1.0))
    handles = []
    steps_drawn = False
    present = set(g["config"])
    for k, cfg in enumerate(c for c in order if c in present):
        gc = g[g.config == cfg]
        c, ls = col[cfg]
        good = gc[~gc["diverged"] & np.isfinite(gc["final"])]
        y = good["final"].where(good["final"] > 0, floor) if log_y else good["final"]
        a.scatter(good["lr"], y, s=9, color=c, alpha=0.35, lw=0)
        med = gc.groupby("lr")["score"].median().replace(math.inf, np.nan)
        if med.notna().any():
            handles.append((a.plot(med.index, med.mask(med <= 0, floor) if log_y else med, marker="o", ms=3, color=c, ls=ls)[0], cfg))
        else:
            handles.append((a.plot([], [], marker="o", ms=3, color=c, ls=ls)[0], cfg))
        bad = gc[gc["diverged"]]
        if len(bad):
            a.scatter(bad["lr"], np.full(len(bad), top * (1.25**k if log_y else 1.0)), marker="x", s=26, color=c)
        if classes is not None and len(classes):
            _mark_classes(a, med.mask(med <= 0, floor) if log_y else med, classes[classes.config == cfg], c, top * (1.25**k if log_y else 1.0))
        if b is not None:
            st = analysis.cost(gc, target, unit).groupby(gc["lr"]).median()
            st = st[np.isfinite(st)]
            if len(st):
                steps_drawn = True
                b.plot(st.index, st.to_numpy() + 1, marker="o", ms=3, color=c, ls=ls)
    if len(g[g["diverged"]]):
        handles.append((a.scatter([], [], marker="x", color="k"), "diverged (drawn at the top)"))
    if classes is not None and len(classes):
        handles += [(a.scatter([], [], **_class_style(k, "k")), f"lr {k} (instruments; see Stability)") for k in CLASS_MARKERS if (classes["cls"] == k).any()]
    if log_y and bool((ok["final"] <= 0).any()):
        _fstar_line(a, floor, True)
    if not len(ok):
        a.text(0.5, 0.5, "every run diverged", transform=a.transAxes, ha="center", va="center", fontsize=12)
    _edges(g, theory.edges(df, prob), col, [a] + ([b] if b is not None else []), handles)
    a.set_xscale("log")
    if log_y:
        a.set_yscale("log")
    a.set_xlabel("learning rate")
    a.set_ylabel("final f(x) - f*" if fstar else "final training loss")
    a.set_title("final value (line: median over all seeds; dots: seeds)", fontsize=10)
    a.grid(alpha=0.3, which="both")
    if b is not None:
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel("learning rate")
        b.set_ylabel(f"1 + median {AXIS[unit]} to f - f* <= {target:.0e}")
        b.set_title("cost to target (lrs where the median seed reached it)", fontsize=10)
        b.grid(alpha=0.3, which="both")
        if not steps_drawn:
            b.text(0.5, 0.5, f"no lr's median seed reached {target:.0e}", transform=b.transAxes, ha="center", va="center")
    _title(fig, f"{name}: learning-rate sensitivity")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / f"lr_{_slug(prob)}.png")


CLASS_MARKERS = {"stable": dict(marker="o", s=34), "at the edge": dict(marker="D", s=52, facecolors="none", linewidths=1.4),
                 "diverged": dict(marker="X", s=70, linewidths=0.5)}  # harness/stability.py CLASSES


def _mark_classes(ax, med: pd.Series, cls: pd.DataFrame, c: str, top: float) -> None:
    """Each lr's class on its median point (a diverged lr, which has no median, at the top with its runs)."""
    for kind in CLASS_MARKERS:
        lrs = cls.loc[cls["cls"] == kind, "lr"].to_numpy(float)
        y = np.array([med.get(lr, np.nan) if kind != "diverged" else top for lr in lrs], dtype=float)
        y = np.where(np.isfinite(y), y, top)
        if len(lrs):
            ax.scatter(lrs, y, zorder=4, **_class_style(kind, c))


def _class_style(kind: str, c: str) -> dict:
    style = CLASS_MARKERS[kind]
    return {**style, "edgecolors": c, **({} if "facecolors" in style else {"facecolors": c})}


def _edges(g: pd.DataFrame, edges: dict, col: dict, axes: list, handles: list) -> None:
    """Each configuration's stability edge in its own colour (harness/theory.py), and GD's optimal step
    2/(L+mu) where a GD configuration ran."""
    for cfg, e in edges.items():
        c, _ = col[cfg]
        for ax in axes:
            ax.axvline(e.lr, color=c, ls="--", lw=1.2)
        handles.append((axes[0].plot([], [], "--", color=c, lw=1.2)[0], f"{cfg}: stability edge {e.formula.split(',')[0]} = {e.lr:.3g}"))
    if any(e.kind == "gd" for e in edges.values()):
        mu, L = theory.quadratic_constants(g)
        for ax in axes:
            ax.axvline(2 / (L + mu), color="k", ls=":", lw=1)
        handles.append((axes[0].plot([], [], "k:", lw=1)[0], "2/(L+mu): optimal GD step"))


def tuning_budget(budget: pd.DataFrame, prob: str, col: dict, order: list[str], out: Path, name: str) -> str | None:
    """Expected best final value after k trials per configuration (line), its bootstrap band, the AlgoPerf
    number (diamond at k = 5) and the one-shot default (dotted), as harness/tuning.py computes them."""
    b = budget[budget.problem == prob].set_index("config")
    if b.empty or int(b["trials"].max()) < 2:
        return None
    fstar = bool(b["fstar"].all())
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    handles, shown, algoperf, default = [], [], False, False
    show = lambda v: np.where(np.isfinite(v), np.maximum(v, analysis.SOLVED) if fstar else v, np.nan)  # noqa: E731
    for cfg in (c for c in order if c in b.index):
        r, (c, ls) = b.loc[cfg], col[cfg]
        k = np.arange(1, r["trials"] + 1)
        h = ax.plot(k, show(r["curve"]), color=c, ls=ls, marker="o", ms=3)[0]
        shown += [show(r["curve"]), show(r["lo"]), show(r["hi"])]
        ax.fill_between(k, show(r["lo"]), np.where(np.isposinf(r["hi"]) & np.isfinite(r["lo"]), 1e300, show(r["hi"])), color=c, alpha=0.12, lw=0)
        if math.isfinite(r["algoperf"]):
            algoperf = True
            ax.plot([5], show(np.array([r["algoperf"]])), marker="D", ms=6, color=c, mec="k", mew=0.6, ls="none")
        if math.isfinite(r["default"]):
            default = True
            shown.append(show(np.array([r["default"]])))
            ax.axhline(shown[-1][0], color=c, ls=":", lw=1.2)
        handles.append((h, f"{cfg} ({r['trials']} trials)"))
    handles.append((ax.fill_between([], [], [], color="grey", alpha=0.2), "95% bootstrap band over the trials (open above: +inf)"))
    if algoperf:
        handles.append((ax.plot([], [], "D", color="grey", mec="k", mew=0.6)[0], "AlgoPerf: median over studies of 5 of each study's best"))
    if default:
        handles.append((ax.plot([], [], ":", color="grey")[0], "one shot: the optimizer's default lr"))
    v = np.concatenate(shown)
    v = v[np.isfinite(v)]
    if not v.size:  # every trial diverged: nothing to draw (the table says so)
        plt.close(fig)
        return None
    ax.set_ylim(*((v.min() / 3, v.max() * 3) if fstar else (v.min() - 0.05 * np.ptp(v) - 1e-12, v.max() + 0.05 * np.ptp(v) + 1e-12)))
    if fstar:
        ax.set_yscale("log")
    ax.set_xlabel("trials k (drawn without replacement; lr chosen on tuning seeds)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # k is a count
    ax.set_ylabel("expected best final f(x) - f* (geometric mean)" if fstar else "expected best final loss")
    ax.set_title("reported on the reporting seeds; +inf (not drawn) while k trials could all diverge", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{name}: tuning budget")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / f"tuning_{_slug(prob)}.png")


def landscapes(lands: list, prob: str, fstar: bool, out: Path, name: str) -> str | None:
    """One panel per optimizer: median score over every seed per (lr, second setting) cell, log colour
    scale, diverged cells marked x, the best cell outlined; sampled points as a scatter."""
    if not lands:
        return None
    from matplotlib.colors import LogNorm, Normalize

    fig, axes = plt.subplots(1, len(lands), figsize=(max(8.0, 5.2 * len(lands)), 5.0), layout="constrained", squeeze=False)
    finite = np.concatenate([s.cells["median"].to_numpy(float) for s in lands])
    finite = finite[np.isfinite(finite)]
    log = fstar or (finite.size > 0 and bool((finite > 0).all()))
    lo = max(finite.min(), analysis.SOLVED) if finite.size and log else (finite.min() if finite.size else 0.0)
    hi = max(finite.max(), lo * 10) if finite.size else 1.0
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    mappable = None
    for ax, s in zip(axes[0], lands):
        c = s.cells
        vals = np.where(np.isfinite(c["median"]), np.maximum(c["median"], lo) if log else c["median"], np.nan)
        best = s.best()
        if s.grid:
            lrs, ys = sorted(c["lr"].unique()), sorted(c["value"].unique())
            m = np.full((len(ys), len(lrs)), np.nan)
            for (lr, y), v in zip(zip(c["lr"], c["value"]), vals):
                m[ys.index(y), lrs.index(lr)] = v
            mappable = ax.imshow(m, origin="lower", aspect="auto", cmap="viridis", norm=norm)
            bad = c[~np.isfinite(c["median"])]
            ax.plot([lrs.index(v) for v in bad["lr"]], [ys.index(v) for v in bad["value"]], "x", color="#d62728", ms=9, mew=2, ls="none")
            if best is not None:
                ax.add_patch(plt.Rectangle((lrs.index(best["lr"]) - 0.5, ys.index(best["value"]) - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
            ax.set_xticks(range(len(lrs)), [f"{v:.3g}" for v in lrs], rotation=45 if len(lrs) > 5 else 0, fontsize=8)
            ax.set_yticks(range(len(ys)), [f"{v:.3g}" for v in ys], fontsize=8)
        else:
            ok = np.isfinite(vals)
            mappable = ax.scatter(c["lr"][ok], c["value"][ok], c=vals[ok], cmap="viridis", norm=norm, s=40, edgecolors="k", linewidths=0.3)
            ax.plot(c["lr"][~ok], c["value"][~ok], "x", color="#d62728", ms=8, mew=2, ls="none")
            if best is not None:
                ax.plot([best["lr"]], [best["value"]], "o", ms=13, mfc="none", mec="red", mew=2)
            ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(s.name)
        ax.set_title(f"{s.optimizer}: lr x {s.name}" + ("" if s.grid else " (sampled points)"), fontsize=10)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[0].tolist(), label=("median final f(x) - f*" if fstar else "median final loss") + " (all seeds)")
    fig.suptitle(f"{name}: two-hyperparameter landscape\nx: the median run diverged; red outline: the lowest median", fontsize=11)
    return _save(fig, out / f"landscape_{_slug(prob)}.png")


def batch_scaling(scalings: list, prob: str, target: float, col_of: dict, out: Path, name: str) -> str | None:
    """Steps and examples to the target against batch size, each at that batch size's best lr, with the
    perfect-scaling line and McCandlish et al.'s fit where it holds."""
    if not scalings:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    tab = plt.get_cmap("tab10").colors
    handles = []
    for i, s in enumerate(scalings):
        p, c = s.points, display.colour(s.optimizer) or matplotlib.colors.to_hex(tab[i % 10])
        ok = np.isfinite(p["steps"])
        h = a.plot(p["batch"][ok], p["steps"][ok], "o-", color=c)[0]
        b.plot(p["batch"][ok], p["examples"][ok], "o-", color=c)
        for x, lr, st in zip(p["batch"][ok], p["best_lr"][ok], p["steps"][ok]):
            a.annotate(f"lr {lr:.3g}", (x, st), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
        handles.append((h, f"{s.optimizer}" + ("" if ok.all() else f" ({int((~ok).sum())} batch size(s) never reached the target)")))
        if ok.any():
            x0, s0 = float(p["batch"][ok].iloc[0]), float(p["steps"][ok].iloc[0])
            xs = np.geomspace(p["batch"].min(), p["batch"].max(), 50)
            a.plot(xs, s0 * x0 / xs, ":", color=c, lw=1)
            b.plot(xs, np.full_like(xs, s0 * x0), ":", color=c, lw=1)
        if math.isfinite(s.s_min):
            xs = np.geomspace(p["batch"].min(), p["batch"].max(), 50)
            a.plot(xs, s.s_min + s.e_min / xs, "--", color=c, lw=1)
            b.plot(xs, s.s_min * xs + s.e_min, "--", color=c, lw=1)
            handles.append((a.plot([], [], "--", color=c)[0], f"{s.optimizer} fit: S_min={s.s_min:.3g} steps, E_min={s.e_min:.3g}, B_crit={s.b_crit:.3g}"))
    handles.append((a.plot([], [], ":", color="grey")[0], "perfect scaling from the smallest batch (steps x batch constant)"))
    for ax, what in ((a, "steps"), (b, "examples")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size (examples per step)")
        ax.set_ylabel(f"median {what} to f - f* <= {target:.0e}")
        ax.grid(alpha=0.3, which="both")
    a.set_title("steps to target at each batch size's best lr", fontsize=10)
    b.set_title("examples to target", fontsize=10)
    fig.suptitle(f"{name}: batch-size scaling (reporting seeds)")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / f"batch_{_slug(prob)}.png")


def runtime_distribution(df: pd.DataFrame, bests: pd.DataFrame, prob: str, unit: str, col: dict, out: Path, name: str) -> str | None:
    """COCO-style ECDF over reporting seeds: share of (seed, target) pairs reached within a cost."""
    g = df[df.problem == prob]
    if not g["has_fstar"].all():
        return None
    top = float((pd.to_numeric(g["params.steps"]).to_numpy(float) * _per_step(g, unit).to_numpy()).max())
    grid = np.unique(np.concatenate([[0], np.round(np.geomspace(1, max(top, 1.0), 300))]))
    curves = analysis.ecdf(df, bests, prob, grid, unit)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    handles = []
    for cfg, (share, levels) in curves.items():  # noqa: B007 - levels: the same for every configuration
        c, ls = col[cfg]
        handles.append((ax.step(grid + 1, share, where="post", color=c, ls=ls, lw=1.5)[0], cfg))
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"1 + {AXIS[unit]}")
    ax.set_ylabel("share of (seed, target) pairs reached")
    ax.set_title(f"targets f - f* <= {', '.join(f'{v:.0e}' for v in levels)}; each configuration at its best lr, reporting seeds", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    _title(fig, f"{name}: runtime distribution (ECDF)")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / f"ecdf_{_slug(prob)}.png")


def outcomes(shares: pd.DataFrame, prob: str, order: list[str], out: Path, name: str) -> str:
    """Stacked shares of runs ending at a global minimum, a local one, none, or diverged, per lr."""
    s = shares[shares.problem == prob]
    cfgs = [c for c in order if c in set(s["config"])]
    nc = min(5, len(cfgs))
    nr = math.ceil(len(cfgs) / nc)
    fig, axes = plt.subplots(nr, nc, figsize=(max(4.5, 3.3 * nc), 3.0 * nr + 1), sharey=True, squeeze=False, layout="constrained")
    for ax in axes.flat[len(cfgs):]:
        ax.set_visible(False)
    for ax, cfg in zip(axes.flat, cfgs):
        g = s[s.config == cfg].sort_values("lr")
        x = np.arange(len(g))
        bottom = np.zeros(len(g))
        for c, colr in OUTCOME_COLOURS.items():
            ax.bar(x, g[c], bottom=bottom, color=colr, label=c, width=0.8)
            bottom += g[c].to_numpy()
        ax.set_xticks(x, [f"{v:.0e}" for v in g["lr"]], rotation=90, fontsize=7)
        ax.set_title(cfg, fontsize=8)
        ax.set_xlabel("learning rate", fontsize=8)
    for row in axes:
        row[0].set_ylabel("share of runs")
    _title(fig, f"{name}: where runs ended")
    h, lb = axes[0][0].get_legend_handles_labels()
    _legend_below(fig, h, lb)
    return _save(fig, out / f"minima_{_slug(prob)}.png")


def problem_object(row: pd.Series):
    """Rebuild the problem a run used from its logged params (for contours and minima), or None."""
    import importlib

    kwargs = {k[len("params.problem.") :]: analysis.parse_param(v) for k, v in row.items() if k.startswith("params.problem.") and isinstance(v, str)}
    target = kwargs.pop("_target_", None)
    kwargs.pop("name", None)
    if target is None:
        return None
    try:  # the class alone: harness.plan's imports cost the report ~0.15 s
        module, _, attr = str(target).rpartition(".")
        return getattr(importlib.import_module(module), attr)(**kwargs, seeds=[int(row["seed"])])
    except Exception:  # noqa: BLE001 - a problem class that is no longer importable: no contour, still a report
        return None


def trajectories(rs: RunSet, df: pd.DataFrame, bests: pd.DataFrame, prob: str, col: dict, out: Path, name: str, per_panel: int = 6, panels: int = 12) -> str | None:
    """The 2-D landscape's contours (or the 1-D curve), one panel per configuration at its best lr (the
    ``panels`` best ranked), with up to ``per_panel`` seeded starts; minima marked (star: global, dot: local)."""
    g = df[df.problem == prob]
    p = problem_object(g.iloc[0])
    if p is None or p.dim > 2:
        return None
    import torch

    rows = bests[bests.problem == prob].sort_values("rank").head(panels)
    nc = min(4, len(rows))
    nr = math.ceil(len(rows) / nc)
    fig, axes = plt.subplots(nr, nc, figsize=(3.8 * nc, 3.5 * nr + 0.6), squeeze=False, layout="constrained")
    for ax in axes.flat[len(rows):]:
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
    panel_ids = [g[(g.config == r.config) & (g.lr == r.best_lr)].sort_values("seed")["run_id"].tolist()[:per_panel] for r in rows.itertuples()]
    curves_of(rs, [rid for ids in panel_ids for rid in ids])  # each batch file read once for every panel
    for ax, r, ids in zip(axes.flat, rows.itertuples(), panel_ids):
        c, _ = col[r.config]
        if p.dim == 2:
            ax.contourf(X, Y, Zs, levels=20, cmap="Greys", alpha=0.7)
        else:
            ax.plot(xs, fx, color="k", lw=1)
        for rid in ids:
            tr = read_trajectory(rs, rid)
            if tr is None:
                continue
            tr = tr[np.isfinite(tr.iloc[:, 1:].to_numpy()).all(axis=1)]
            if p.dim == 2:
                ax.plot(tr["x1"], tr["x2"], color=c, lw=1, alpha=0.9)
                ax.plot(tr["x1"].iloc[0], tr["x2"].iloc[0], "o", color=c, ms=3)
            else:
                ax.plot(tr["x1"], tr["loss"], ".", color=c, ms=2, alpha=0.5)
        for m in p.minima if len(p.minima) <= 30 else [m for m in p.minima if m.kind == "global"]:
            y = m.x[1] if p.dim == 2 else m.f
            ax.plot(m.x[0], y, "*" if m.kind == "global" else "o", color="gold" if m.kind == "global" else "white",
                    mec="k", ms=11 if m.kind == "global" else 5, zorder=5)
        if p.dim == 2:
            ax.set_xlim(xs[0], xs[-1])
            ax.set_ylim(ys[0], ys[-1])
        ax.set_title(f"{r.config}, lr={r.best_lr:.3g}", fontsize=8)
    fig.supxlabel("x1" if p.dim == 2 else "x", fontsize=9)
    fig.supylabel("x2" if p.dim == 2 else "f(x)", fontsize=9)
    more = f"; the {panels} best ranked of {len(bests[bests.problem == prob])} configurations" if len(bests[bests.problem == prob]) > panels else ""
    _title(fig, f"{name}: trajectories from up to {per_panel} seeded starts (star: global min, dot: local min){more}", fontsize=10)
    return _save(fig, out / f"trajectories_{_slug(prob)}.png")


def profile(df: pd.DataFrame, bests: pd.DataFrame, target: float, units: dict, col: dict, out: Path) -> str | None:
    """Dolan-More performance profile across problems, or None when it would say nothing."""
    taus = np.logspace(0, 3, 200, base=2)
    prof = analysis.performance_profile(df, bests, target, taus, units)
    if not prof:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    handles = []
    for cfg, rho in prof.items():
        c, ls = col[cfg]
        handles.append((ax.step(taus, rho, where="post", color=c, ls=ls)[0], cfg))
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"tau: cost ({', '.join(sorted({UNITS[u] for u in units.values()}))}) to target within tau x the cheapest configuration")
    ax.set_ylabel("share of (problem, seed) instances")
    ax.grid(alpha=0.3, which="both")
    _title(fig, f"Performance profile (Dolan-More), target f - f* <= {target:.0e}")
    _legend_below(fig, [h for h, _ in handles], [lb for _, lb in handles])
    return _save(fig, out / "profile.png")


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s).strip("_")
