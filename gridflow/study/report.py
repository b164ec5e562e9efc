"""Study outputs: the per-zone table, files (JSON, CSV) and PNG plots.

Files written to the output folder (one study; steps are the datacenter sizes):

* ``summary.json`` — per step: datacenter MW, capacity, shortfall, hosting
  limit, driver, totals per kind, verification per interval, notes;
* ``zones.csv`` — step, zone, state, rto, load, datacenter MW, shed by kind,
  % shed, hours dark, OE-417 flag;
* ``schedule.csv`` — step, interval, block (bus number), zone, dark;
* ``shed_by_bus.csv`` — step, interval, bus, p_shed_mw, q_shed_mvar, kind
  (``flexible``, ``backup`` = moved to backup generation, ``firm``);
* ``bus_demand.csv`` — step, interval, bus, p_mw, q_mvar: demand served at
  every bus with load, after datacenters and shed;
* ``gen_dispatch.csv`` — step, interval, gen (row of the case's generator
  table, 0-based), p_mw;
* ``shed_by_zone.png``, ``hours_dark.png``, ``voltage_profile.png``.

When the study has one step, the ``step`` column is still there (one value).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gridflow.errors import GridflowError
from gridflow.study.run import StudyResult


def zone_table(step, top: int = 12) -> str:
    """A readable per-zone table of one step (zones that shed first)."""
    z = step.zones
    z = z[(z["shed_mw"] > 0.5) | (z["datacenter_mw"] > 0)].head(top)
    lines = [f"{'zone':34s} {'state':5s} {'load MW':>9s} {'DC MW':>8s} {'shed MW':>8s} {'% shed':>7s} "
             f"{'hours dark':>10s}"]
    for _, r in z.iterrows():
        lines.append(f"{str(r['zone'])[:34]:34s} {str(r['state'])[:5]:5s} {r['load_mw']:9.0f} "
                     f"{r['datacenter_mw']:8.0f} {r['shed_mw']:8.0f} {r['shed_percent']:6.1f}% "
                     f"{r['hours_dark_max']:10.1f}")
    return "\n".join(lines)


def step_headline(step) -> str:
    a = step.allocation
    status = "AC-verified" if step.verified else "NOT verified"
    ad = step.adequacy
    host = "" if step.hosting_limit_mw is None else f", hosting limit {step.hosting_limit_mw:,.0f} MW"
    return (f"{step.datacenter_mw:,.0f} MW of datacenters, policy {step.policy}: shortfall "
            f"{max(ad.shortfall_mw, 0):,.0f} MW{host}; before shed: {step.pre.describe()}; shed "
            f"{a.total_mw:,.0f} MW (flexible {a.p_flex_mw.sum():,.0f}, backup {a.p_backup_mw.sum():,.0f}, "
            f"firm {a.p_firm_mw.sum():,.0f}); driver: {step.driver}; {status}")


def summary_dict(study: StudyResult) -> dict:
    sc = study.scenario
    out = {"scenario": sc.name, "case": study.case.name, "policy": sc.study.policy,
           "zones": study.zone_map.source, "base_overloads": int(len(study.base.overloaded)), "steps": []}
    for st in study.steps:
        a = st.allocation
        out["steps"].append({
            "datacenter_mw": st.datacenter_mw, "capacity_mw": st.adequacy.capacity_mw,
            "load_mw": st.adequacy.load_mw, "losses_mw": st.adequacy.losses_mw, "reserve_mw": st.adequacy.reserve_mw,
            "shortfall_mw": st.adequacy.shortfall_mw,
            "hosting_limit_mw": st.hosting_limit_mw, "before_shed": st.pre.describe(), "driver": st.driver,
            "shed_mw": a.total_mw, "shed_flexible_mw": float(a.p_flex_mw.sum()),
            "shed_backup_mw": float(a.p_backup_mw.sum()), "shed_firm_mw": float(a.p_firm_mw.sum()),
            "unmet_mw": a.unmet_mw, "verified": st.verified,
            "intervals": [{"interval": t, "result": s.describe(), "max_loading_percent": s.max_loading,
                           "min_vm_pu": s.min_vm} for t, s in enumerate(st.verification.intervals)],
            "zones_oe417": [str(z) for z in st.zones.loc[st.zones["oe417"], "zone"]],
            "notes": list(st.notes), "seconds": round(st.seconds, 2),
        })
    return out


def write_study(study: StudyResult, out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write the study's files into folder ``out`` (created if needed); returns them."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GridflowError(f"cannot create {out}: {e.strerror}") from None

    def stack(attr):
        frames = [_table(st, attr).assign(step=st.datacenter_mw) for st in study.steps]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return df[["step"] + [c for c in df.columns if c != "step"]] if len(df.columns) else df

    written = []
    p = out / "summary.json"
    p.write_text(json.dumps(summary_dict(study), indent=1, default=_json_default))
    written.append(p)
    for name, attr in (("zones.csv", "zones"), ("schedule.csv", "schedule"), ("shed_by_bus.csv", "shed_by_bus"),
                       ("bus_demand.csv", "bus_demand"), ("gen_dispatch.csv", "gen_dispatch")):
        p = out / name
        stack(attr).to_csv(p, index=False)
        written.append(p)
    if plots:
        written += _plots(study, out)
    return written


def _table(st, name) -> pd.DataFrame:
    if name == "zones":
        return st.zones
    if name == "schedule":
        return st.rotation.schedule
    return getattr(st.verification, name)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o).__name__)


def _plots(study: StudyResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    steps = study.steps
    # shed by zone, one bar group per step
    zones = sorted({z for st in steps for z in st.zones.loc[st.zones["shed_mw"] > 0.5, "zone"]},
                   key=lambda z: -max(st.zones.set_index("zone")["shed_mw"].get(z, 0) for st in steps))[:12]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(len(steps), 1)
    kinds = (("shed_flexible_mw", "datacenters: flexible", "#4c9be8"), ("shed_backup_mw", "datacenters: to backup",
                                                                        "#f5a742"),
             ("shed_firm_mw", "firm load (rolling blackouts)", "#d62728"))
    for k, st in enumerate(steps):
        z = st.zones.set_index("zone").reindex(zones).fillna(0.0)
        x = np.arange(len(zones)) + k * width
        bottom = np.zeros(len(zones))
        for col, label, color in kinds:
            ax.bar(x, z[col].to_numpy(), width * 0.95, bottom=bottom, color=color, label=label if k == 0 else None)
            bottom += z[col].to_numpy()
        for xi, b in zip(x, bottom, strict=True):
            if b > 0:
                ax.text(xi, b, f"{st.datacenter_mw / 1000:g} GW", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(zones)) + 0.4 - width / 2, zones, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("load shed, MW")
    ax.set_title(f"{study.case.name}: load shed by zone and kind, per datacenter step ({study.scenario.study.policy})")
    if steps and zones:
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(_save(fig, out / "shed_by_zone.png"))
    # hours dark per block, last step with rotation
    fig, ax = plt.subplots(figsize=(10, 4))
    st = next((s for s in reversed(steps) if len(s.rotation.block_stats)), None)
    if st is not None:
        bs = st.rotation.block_stats.sort_values(["zone", "hours_dark"])
        ax.bar(np.arange(len(bs)), bs["hours_dark"].to_numpy(), width=1.0)
        ax.set_xlabel(f"block (load bus), grouped by zone — {len(bs)} blocks")
        ax.set_title(f"hours dark per block, {st.datacenter_mw / 1000:g} GW of datacenters")
    else:
        ax.text(0.5, 0.5, "no rotating outages", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("hours dark")
    fig.tight_layout()
    files.append(_save(fig, out / "hours_dark.png"))
    # voltage profile before / after
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(np.sort(study.base_vm_pu[np.isfinite(study.base_vm_pu)]), label="base case", lw=1.5)
    for s in steps:
        if s.verification.vm_after_pu is not None:
            v = s.verification.vm_after_pu[np.isfinite(s.verification.vm_after_pu)]
            ax.plot(np.sort(v), label=f"{s.datacenter_mw / 1000:g} GW, after shed (interval 0)", lw=1)
    ax.set_xlabel("buses, sorted by voltage")
    ax.set_ylabel("|V|, pu")
    ax.set_title("voltage profile before and after")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(_save(fig, out / "voltage_profile.png"))
    return files


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
