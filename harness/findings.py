"""Plain-language findings, each a sentence that the analysis supports (harness/analysis.py, comparisons.py).

A sentence compares two configurations only where the paired sign test, after Holm's correction over
every comparison of the report, rejects "neither is better"; otherwise they are indistinguishable on
that many seeds. Levels of intervals are the ones achieved (harness/inference.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import analysis, metrics, stability
from harness import formatting as fmt
from harness.protocol import UNITS, selectable

BUDGET_RATIO = 2.0  # budgets further apart than this are called out


def findings(a: analysis.Analysis) -> list[str]:
    lines = []
    for prob, s in a.bests.groupby("problem", sort=True):
        s = s.sort_values("rank")
        if not np.isfinite(s["median"]).any() and not np.isfinite(s["select_median"]).any():
            lines.append(f"On {prob}, every run diverged at every learning rate tried.")
            continue
        lines += _lead(prob, s.iloc[0], a)
        lines += _pairs(prob, a.comparisons[a.comparisons.problem == prob])
        lines += _budgets(prob, s, UNITS[a.protocol.unit[prob]])
        lines += _robust(prob, s)
        lines += _edge(prob, a.df)
    for prob, cfg, lr0, d, n in analysis.divergence_edges(a.df):
        lines.append(f"On {prob}, {cfg} diverged at every lr >= {fmt.lr(lr0)} ({d}/{n} runs).")
    return lines


def _lead(prob: str, lead: pd.Series, a: analysis.Analysis) -> list[str]:
    who = f"{lead['config']} at lr={fmt.lr(lead['best_lr'])}"
    n = int(lead["seeds"])
    word = f"reporting seed{'s' * (n != 1)}"
    out = []
    if lead["minima"]:
        out.append(f"On {prob}, {who} ranked first: it reached a global minimum from {fmt.share(lead['global_share'])} of starts "
                   f"({round(lead['global_share'] * n)}/{n} {word}; exact 95% interval "
                   f"{fmt.share(lead['global_lo'])}–{fmt.share(lead['global_hi'])}).")
    unit = UNITS[a.protocol.unit[prob]]
    if lead["fstar"] and lead["reached"] * 2 > n:
        out.append(f"On {prob}, {who} {'also ' if lead['minima'] else 'ranked first: it '}reached f - f* <= {a.target:.0e} in a median "
                   f"{fmt.steps(lead['steps'])} {unit} ({lead['reached']}/{n} {word}).")
    elif lead["fstar"]:
        first = f"{lead['config']}'s median final f - f* was" if lead["minima"] else f"{who} ranked first, with a median final f - f* of"
        out.append(f"On {prob}, no configuration reached f - f* <= {a.target:.0e} on most reporting seeds at its best lr; "
                   f"{first} {fmt.value(lead['median'], True)}.")
    elif not lead["minima"]:
        metric = selectable()[a.protocol.select[prob]].split(" (")[0]
        value = lead["select_median"] if metrics.lower_is_better(a.protocol.select[prob]) else -lead["select_median"]
        out.append(f"On {prob}, {who} ranked first by {metric} (median {fmt.value(value, False)} over {n} {word}).")
    return out


def _pairs(prob: str, c: pd.DataFrame) -> list[str]:
    """One sentence per outcome of the paired tests; configurations with the same counts and p share one."""
    out = []
    if c.empty:
        return out
    won = c[c["better"].astype(bool)]
    for _, g in won.groupby(["wins", "losses", "ties", "n", "p", "p_holm"], sort=False):
        r = g.iloc[0]
        names = _names(list(g["other"]))
        each = " each" if len(g) > 1 else ""
        out.append(f"On {prob}, {r['leader']} beat {names} on {r['wins']} of {r['n']} paired seeds{each} ({r['losses']} lost, {r['ties']} tied; "
                   f"by {r['basis']}): P(better) = {r['win_p']:.2f}, 95% interval [{r['win_lo']:.2f}, {r['win_hi']:.2f}]; "
                   f"sign test p = {_p(r['p'])}, {_p(r['p_holm'])} after Holm's correction.")
    tied = c[~c["better"].astype(bool)]
    if len(tied):
        n = int(tied["n"].min())
        out.append(f"On {prob}, {_names(list(tied['other']))} {'is' if len(tied) == 1 else 'are'} indistinguishable from "
                   f"{tied['leader'].iloc[0]} on {n} paired seed{'s' * (n != 1)} (sign test, Holm-adjusted p >= 0.05{_small(n)}).")
    return out


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _budgets(prob: str, s: pd.DataFrame, unit: str) -> list[str]:
    """Configurations that spent very different amounts (full batch against batch size 1, say) are not
    compared at equal cost: say so, with what each spent."""
    b = s[np.isfinite(s["budget"])]
    if len(b) < 2 or b["budget"].max() <= BUDGET_RATIO * b["budget"].min():
        return []
    lo, hi = b.loc[b["budget"].idxmin()], b.loc[b["budget"].idxmax()]
    return [f"On {prob}, the configurations spent very different budgets: from {lo['budget']:,.0f} {unit} ({lo['config']}) to "
            f"{hi['budget']:,.0f} ({hi['config']}) per run (median); one that never reached the target may have run out of "
            "budget rather than been slower."]


def _small(n: int) -> str:
    """A sign test over fewer than 6 differing seeds can never reach p < 0.05."""
    return f"; with {n} seed{'s' * (n != 1)} no sign test can reach p < 0.05" if n < 6 else ""


def _p(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def _robust(prob: str, s: pd.DataFrame) -> list[str]:
    """The most robust among the configurations that did well: best median within FACTOR of the best one."""
    fin = s[np.isfinite(s["tune_median"]) & (s["lrs"] > 1) & s["robust_decades"].notna()]
    if fin.empty:
        return []
    top = fin["tune_median"].min()
    good = fin[fin["tune_median"] <= max(analysis.FACTOR * top, analysis.SOLVED)] if top >= 0 else fin.iloc[:0]
    if len(good) < 2 or good["robust_decades"].max() <= 0:  # none is within FACTOR beyond its best lr alone
        return []
    most = good[good["robust_decades"] == good["robust_decades"].max()]
    names = ", ".join(most["config"])
    verb = "was" if len(most) == 1 else "were equally"
    return [f"On {prob}, of the configurations whose best median is within {analysis.FACTOR:g}x of the best (or <= {analysis.SOLVED:g}), {names} {verb} the most "
            f"robust to the lr: within {analysis.FACTOR:g}x of {'its' if len(most) == 1 else 'their'} own best over "
            f"{most['robust_decades'].iloc[0]:.1f} decades (tuning seeds)."]


def _edge(prob: str, df: pd.DataFrame) -> list[str]:
    """The lrs whose runs sat at the edge of stability by their measured sharpness (harness/stability.py)."""
    e = stability.at_edge(stability.table(df, prob))
    if e.empty:
        return []
    each = "; ".join(f"{r.config} at lr {fmt.lr(r.lr)}: {r.ratio:.2f} x {r.formula.split(',')[0]}" for r in e.itertuples())
    return [f"On {prob}, {len(e)} (configuration, lr) pair{'s' * (len(e) > 1)} sat at the edge of stability, the median sharpness over the "
            f"last third of {'their' if len(e) > 1 else 'its'} runs that did not diverge at least {stability.EDGE:g}x the threshold ({each})."]
