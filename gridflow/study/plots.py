"""The study's plots: firm shed by zone and hour, the ladder, shed by zone, the P–V curve.

Every plot says in words when it has nothing to show ("no firm shed") instead of
drawing empty axes; limits are drawn (Vmin, the limit found, the nose).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from gridflow.study import tables
from gridflow.study.ladder import LEVELS

COLORS = {"demand response": "#8da0cb", "voltage reduction": "#a6d854", "emergency import": "#e78ac3",
          "datacenter flexible": "#66c2a5", "datacenter backup": "#fc8d62", "large-load curtailment": "#b3b3b3",
          "firm load": "#d62728"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _gw(mw: float) -> str:
    return f"{mw / 1000:g} GW"


def write_plots(study, out: Path) -> list[Path]:
    files = [heatmap(study, out / "firm_shed_heatmap.png"), ladder(study, out / "ladder.png"),
             shed_by_zone(study, out / "shed_by_zone.png"), pv_curve(study, out / "pv_curve.png")]
    if getattr(study, "hosting", None) is not None:
        files.append(hosting_map(study, out / "hosting_map.png"))
    return files


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _nothing(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def heatmap(study, path: Path) -> Path:
    """Zone x interval heat map of firm shed (MW dark, net of pickup), one panel per step with firm shed."""
    plt = _plt()
    su = study.setup
    steps = [st for st in study.steps if st.firm_shed_mw.max(initial=0) > 1e-6]
    if not steps:
        fig, ax = plt.subplots(figsize=(8, 2.5))
        _nothing(ax, "no firm shed in any step: nobody goes dark")
        ax.set_title(f"{su.case.name}: firm load shed by zone and interval")
        fig.tight_layout()
        return _save(fig, path)
    zones = [z for z in su.shares.index if any(st.rotation.relief_mw[z].max() > 1e-6 for st in steps)]
    vmax = max(float(st.rotation.relief_mw[zones].to_numpy().max()) for st in steps)
    h = 0.3 * len(zones) + 1.0
    fig, axes = plt.subplots(len(steps), 1, figsize=(11, h * len(steps) + 0.8), squeeze=False,
                             layout="constrained")
    im = None
    for ax, st in zip(axes[:, 0], steps, strict=True):
        data = st.rotation.relief_mw[zones].to_numpy().T
        im = ax.imshow(data, aspect="auto", cmap="Reds", vmin=0, vmax=vmax)
        ax.set_yticks(range(len(zones)), zones, fontsize=8)
        ax.set_xticks(range(su.day.T), su.day.labels, fontsize=8)
        ax.set_title(f"{_gw(st.datacenter_mw)} of datacenters requested: firm shed up to "
                     f"{st.firm_shed_mw.max():,.0f} MW", fontsize=9)
    axes[-1, 0].set_xlabel("interval (start)")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="firm load dark, MW", shrink=0.8)
    fig.suptitle(f"{su.case.name}, footprint {su.footprint.name}: rolling blackouts by zone", fontsize=10)
    return _save(fig, path)


def ladder(study, path: Path) -> Path:
    """The ladder stacked by interval, one panel per step, with the shortfall it covers."""
    plt = _plt()
    su = study.setup
    n = len(study.steps)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n + 1.2), squeeze=False, sharex=True, layout="constrained")
    x = np.arange(su.day.T)
    handles = {}
    for ax, st in zip(axes[:, 0], study.steps, strict=True):
        c = st.climb
        if c.need_mw.max(initial=0) <= 0:
            _nothing(ax, f"{_gw(st.datacenter_mw)}: no capacity shortfall (margin "
                         f"{-c.need_mw.max():,.0f} MW at the tightest interval)")
            continue
        bottom = np.zeros(su.day.T)
        for kind, level in LEVELS.items():
            mw = c.firm_mw if kind == "firm" else c.by_kind(kind)
            if mw.max(initial=0) <= 0.5:
                continue
            handles[level] = ax.bar(x, mw, bottom=bottom, color=COLORS[level], width=0.8, label=level)
            bottom += mw
        handles["shortfall"] = ax.plot(x, np.maximum(c.need_mw, 0), "k_", markersize=22, mew=2,
                                       label="shortfall")[0]
        ax.set_ylabel("MW")
        ax.set_title(f"{_gw(st.datacenter_mw)} of datacenters requested", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(x, su.day.labels, fontsize=8)
    axes[-1, 0].set_xlabel("interval (start)")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
                   fontsize=8, frameon=False)
    fig.suptitle(f"emergency ladder ({su.opts.policy}), footprint {su.footprint.name}: MW by rung and interval",
                 fontsize=10)
    return _save(fig, path)


def shed_by_zone(study, path: Path) -> Path:
    """Per zone, at each step's worst interval: datacenter MW requested and served, and firm shed."""
    plt = _plt()
    su = study.setup
    n = len(study.steps)
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.9 * n + 1.4), squeeze=False, layout="constrained")
    for ax, st in zip(axes[:, 0], study.steps, strict=True):
        z = tables.zone_rows(study, st)
        z = z[(z["datacenter_mw"] > 0.5) | (z["shed_firm_mw"] > 0.5)].sort_values("zone")
        if not len(z):
            _nothing(ax, "no datacenter and no firm shed")
            continue
        t = tables.worst_interval(st)
        x = np.arange(len(z))
        w = 0.27
        ax.bar(x - w, z["datacenter_mw"], w, color="#bdbdbd", label="datacenters requested")
        ax.bar(x, z["datacenter_served_mw"], w, color="#3182bd", label="datacenters served")
        ax.bar(x + w, z["shed_firm_mw"], w, color="#d62728", label="firm load shed")
        ax.set_xticks(x, [str(s) for s in z["zone"]], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("MW")
        ax.set_title(f"{_gw(st.datacenter_mw)} requested, at {su.day.label(t)}"
                     + ("" if z["shed_firm_mw"].max() > 0.5 else ": no firm shed"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    fig.suptitle(f"{su.case.name}: datacenters and firm shed by zone (each step at its worst interval)", fontsize=10)
    return _save(fig, path)


def hosting_map(study, path: Path) -> Path:
    """Each candidate bus's hosting limit alone, N-0 and N-1, largest first, with its binding constraint."""
    plt = _plt()
    h = study.hosting.sort_values("limit_mw_n0", ascending=False, kind="stable")
    n = len(h)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * max(n, 1)), layout="constrained")
    if not n:
        _nothing(ax, "no candidate bus")
        return _save(fig, path)
    y = np.arange(n)[::-1]
    labels = [f"{b} {nm} ({kv:g} kV)" for b, nm, kv in zip(h["bus"], h["name"], h["kv"], strict=True)]
    ax.barh(y + 0.2, h["limit_mw_n0"], 0.4, color="#9ecae1", label="N-0")
    if h["limit_mw_n1"].notna().any():
        ax.barh(y - 0.2, h["limit_mw_n1"].fillna(0.0), 0.4, color="#3182bd", label="N-1")
    for yy, b, c in zip(y, h["binding"], h["binding_contingency"], strict=True):
        if c:
            ax.text(0.01, yy, _compact(str(b)), transform=ax.get_yaxis_transform(), fontsize=6, va="center",
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1.0})
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("MW that bus alone can take")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    su = study.setup
    ax.set_title(f"{su.case.name}: hosting limit by bus at {su.day.label(su.peak)} (Q limits on; "
                 "binding constraint written on the bar)", fontsize=9)
    return _save(fig, path)


def pv_curve(study, path: Path) -> Path:
    """P–V curve of the first datacenter in the queue (the lowest bulk-system voltage in its zone(s) against its
    MW at the peak interval, last step), with every limit-search trial of every step, Vmin, each step's limit
    and the nose (the last MW that solved)."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    su = study.setup
    pv = study.pv
    if pv is None or not len(pv):
        fig, ax = plt.subplots(figsize=(8, 2.5))
        _nothing(ax, "no P–V sweep")
        return _save(fig, path)
    nm = pv["datacenter"].iloc[0]
    pl = next(p for p in su.placements if p.datacenter.name == nm)
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    ok = pv[pv["converged"]]
    ax.plot(ok["mw"], ok["vm_min_zone_pu"], "o-", color="#3182bd", lw=2, ms=5,
            label=f"sweep, last step ({_gw(study.steps[-1].datacenter_mw)} requested)")
    if (~pv["converged"]).any():
        nose = float(ok["mw"].max()) if len(ok) else 0.0
        none = float(pv.loc[~pv["converged"], "mw"].min())
        ax.axvline(nose, color="#d62728", ls="-.", lw=1.2,
                   label=f"nose: sweep solves at {nose:,.0f} MW, not at {none:,.0f}")
    colors = ["#9e9ac8", "#74c476", "#fd8d3c", "#969696"]
    for k, st in enumerate(study.steps):
        lim = next(x for x in st.limits if x.name == nm)
        tr = [t for t in lim.search.trials if t.converged]
        col = colors[k % len(colors)]
        if tr:
            ax.plot([t.mw for t in tr], [t.vm_min_site_pu for t in tr], "x", color=col, ms=6,
                    label=f"limit search, {_gw(st.datacenter_mw)} step")
        if lim.search.limited:
            ax.axvline(lim.deliverable_mw_n0, color=col, ls="--", lw=1,
                       label=f"N-0 limit at {_gw(st.datacenter_mw)}: {lim.deliverable_mw_n0:,.0f} MW")
        if lim.n1 is not None and lim.n1.limited:
            ax.axvline(lim.n1.limit_mw, color=col, ls=":", lw=1.5,
                       label=f"N-1 limit at {_gw(st.datacenter_mw)}: {lim.n1.limit_mw:,.0f} MW (post-contingency)")
    vmin = float(np.min(su.case.bus.vmin[pl.bus]))
    ax.axhline(vmin, color="k", ls=":", lw=1, label=f"Vmin {vmin:g} pu")
    ax.xaxis.set_major_locator(MaxNLocator(7))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(f"{nm}: datacenter MW at its {len(pl.bus)} buses, {su.day.label(su.peak)}")
    ax.set_ylabel("lowest |V| of its zone(s), buses >= monitored kV, pu")
    last = next(x for x in study.steps[-1].limits if x.name == nm)
    title = (f"P–V curve (N-0), {nm} (Q limits {'on' if su.opts.q_limits else 'OFF'}); last step's binding:\n"
             + textwrap.fill(f"N-0: {last.search.binding() or 'none'}", 110))
    if last.n1 is not None:
        title += "\n" + textwrap.fill(f"N-1: {last.n1.binding() or 'none'}", 110)
    ax.set_title(title, fontsize=8, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def _compact(binding: str) -> str:
    """A binding constraint without its figures: the element and the outage ("branch 2452 BAY CITY 0 -
    WADSWORTH 1 (230 kV, Coast) after the outage of branch 2450 (7304-7095)")."""
    head = binding.partition(": ")[0]
    at = binding.find(" after the outage of")
    return head + (binding[at:] if at >= 0 and at > len(head) else "")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
