"""Per-bus summary of a sweep: the hosting limit over the swept points, and what binds.

For each bus, with the MW levels m1 < m2 < ... swept: the N-0 limit is the largest m_k such that every "base"
row at every MW up to m_k (every swept hour) is deliverable; the N-1 limit the same over every row (base and
each contingency). 0 when the smallest level already fails; the largest level when none fails (the real limit
is then above the sweep). The binding constraint is read at the first failing MW (the first failing row there,
in hour then contingency order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: one row per bus; MW; ``first_fail_mw_*`` NaN (and ``binding_*`` "", ``binding_hour`` blank) where nothing
#: failed up to the top MW
SUMMARY_COLUMNS = ["bus", "mw_max", "limit_mw_n0", "first_fail_mw_n0", "binding_n0", "limit_mw_n1", "first_fail_mw_n1",
                   "binding_n1", "binding_contingency", "binding_hour", "points", "not_converged"]


def _limit(rows: pd.DataFrame, levels: np.ndarray):
    """(limit MW, first failing MW or NaN, the first failing row or None) over ``rows`` of one bus."""
    bad = rows[~rows["deliverable"].astype(bool)]
    if bad.empty:
        return float(levels[-1]), float("nan"), None
    first = float(bad["mw"].min())
    below = levels[levels < first]
    at = bad[bad["mw"] == first]
    keys = [(int(h), _order(c)) for h, c in zip(at["hour"], at["contingency"], strict=True)]
    row = at.iloc[min(range(len(keys)), key=keys.__getitem__)]
    return (float(below[-1]) if len(below) else 0.0), first, row


def _order(c):
    return (0, "") if c == "base" else (1, str(c))


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    """:data:`SUMMARY_COLUMNS`, one row per bus (in bus order) from sweep rows (POINT_COLUMNS)."""
    out = []
    for bus, g in points.groupby("bus", sort=True):
        levels = np.sort(g["mw"].unique())
        n0, f0, r0 = _limit(g[g["contingency"] == "base"], levels)
        n1, f1, r1 = _limit(g, levels)
        out.append({"bus": int(bus), "mw_max": float(levels[-1]), "limit_mw_n0": n0, "first_fail_mw_n0": f0,
                    "binding_n0": "" if r0 is None else str(r0["binding"] or "not deliverable"),
                    "limit_mw_n1": n1, "first_fail_mw_n1": f1,
                    "binding_n1": "" if r1 is None else str(r1["binding"] or "not deliverable"),
                    "binding_contingency": "" if r1 is None else str(r1["contingency"]),
                    "binding_hour": pd.NA if r1 is None else int(r1["hour"]),
                    "points": len(g), "not_converged": int((~g["converged"].astype(bool)).sum())})
    df = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    df["binding_hour"] = df["binding_hour"].astype("Int64")
    return df


def plot_summary(summary: pd.DataFrame, path: Path, title: str = "sweep") -> Path:
    """Bar chart of each bus's N-0 and N-1 limit (MW) against the top MW swept; written as PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * n + 2), 4.0))
    x = np.arange(n)
    ax.bar(x - 0.2, summary["limit_mw_n0"], width=0.4, label="N-0 limit", color="#4c72b0")
    ax.bar(x + 0.2, summary["limit_mw_n1"], width=0.4, label="N-1 limit", color="#dd8452")
    ax.plot(x, summary["mw_max"], "k_", markersize=14, label="top MW swept")
    for xi, v0, v1 in zip(x, summary["limit_mw_n0"], summary["limit_mw_n1"], strict=True):
        for dx, v in ((-0.2, v0), (0.2, v1)):
            if v <= 0:  # no room at the smallest level: say 0 rather than draw nothing
                ax.text(xi + dx, 0, "0", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [str(b) for b in summary["bus"]], rotation=60 if n > 12 else 0, fontsize=8)
    ax.set_xlabel("bus")
    ax.set_ylabel("hosting limit over the swept points, MW")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
