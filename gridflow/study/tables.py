"""Tabulation of a study: the rows of every output file and the figures of every headline.

One definition of reportable shed runs through all of them (:func:`gridflow.study.run.oe417`):
firm load shed of 100 MW or more; datacenter curtailment and backup generation never count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gridflow.study.run import StepResult, StudyResult, oe417

VIOLATIONS_COLUMNS = ["step_mw", "interval", "contingency", "kind", "element", "from_bus", "to_bus", "kv",
                      "rating_mva", "loading_base_percent", "loading_percent", "vm_pu", "dfax_percent", "attributed",
                      "name", "zone", "reason", "source"]


def worst_interval(step: StepResult) -> int:
    """The interval with the most firm shed (else the largest shortfall, else the peak)."""
    firm = step.firm_shed_mw
    if firm.max(initial=0) > 1e-6:
        return int(np.argmax(firm))
    need = step.climb.need_mw
    return int(np.argmax(need)) if need.max(initial=0) > 0 else int(np.argmax(step.footprint_firm_mw))


def headline(study: StudyResult, step: StepResult, t: int | None = None) -> dict:
    """The step's figures at interval t (default: :func:`worst_interval`), MW; energy over the day, MWh."""
    t = worst_interval(step) if t is None else t
    c, plan = step.climb, step.plan
    dt = study.setup.dt_h
    req = float(step.dc_requested_mw[:, t].sum())
    served = float(plan.dc_served_mw[:, t].sum())
    drawn = float(plan.dc_drawn_mw[:, t].sum())
    return {
        "interval": t,
        "requested_datacenter_mw": req,
        "not_deliverable_mw": req - served,
        "curtailed_datacenter_mw": float(c.by_kind("dc_flexible")[t] + c.by_kind("dc_curtailed")[t]),
        "backup_mw": float(c.by_kind("dc_backup")[t]),
        "served_datacenter_mw": drawn,
        "demand_response_mw": float(c.by_kind("demand_response")[t]),
        "voltage_reduction_mw": float(c.by_kind("voltage_reduction")[t]),
        "emergency_import_mw": float(c.by_kind("emergency_import")[t]),
        "shortfall_mw": float(max(c.need_mw[t], 0.0)),
        "firm_shed_mw": float(step.firm_shed_mw[t]),
        "firm_shed_mw_max": float(step.firm_shed_mw.max(initial=0.0)),
        "firm_shed_mwh": float(step.firm_shed_mw.sum() * dt),
        "unserved_mw": float(step.unserved_mw[t]),
        "oe417": step.oe417,
    }


def binding(step: StepResult) -> str:
    """The constraint that binds the step: the first datacenter (queue order) whose limit binds."""
    lim = next((x for x in step.limits if x.limited), None)
    if lim is None:
        n1 = any(x.n1 is not None for x in step.limits)
        return f"none: every datacenter is deliverable as requested ({'N-0 and N-1' if n1 else 'N-0'})"
    return f"{lim.name}: {lim.binding}"


def zone_rows(study: StudyResult, step: StepResult) -> pd.DataFrame:
    """zones.csv: one row per zone of the case (footprint zones with their share and rotation)."""
    su = study.setup
    t = worst_interval(step)
    zones = su.zones
    case = su.case
    plan = step.plan
    nb = case.nb
    req = sum(pl.p_mw(nb, float(mw)) for pl, mw in zip(su.placements, step.requested_mw, strict=True))
    df = pd.DataFrame({"zone": zones.zone, "state": zones.state, "rto": zones.rto,
                       "load_mw": case.bus.pd * case.base_mva, "datacenter_mw": req,
                       "datacenter_served_mw": plan.dc_p_mw[t],
                       "shed_flexible_mw": plan.dc_shed_mw["flexible"][t] + plan.dc_shed_mw["curtailed"][t],
                       "shed_backup_mw": plan.dc_shed_mw["backup"][t], "shed_firm_mw": plan.dark_mw[t]})
    g = df.groupby("zone", sort=False).agg(state=("state", "first"), rto=("rto", "first"), load_mw=("load_mw", "sum"),
                                           datacenter_mw=("datacenter_mw", "sum"),
                                           datacenter_served_mw=("datacenter_served_mw", "sum"),
                                           shed_flexible_mw=("shed_flexible_mw", "sum"),
                                           shed_backup_mw=("shed_backup_mw", "sum"),
                                           shed_firm_mw=("shed_firm_mw", "sum"))
    g["shed_mw"] = g["shed_flexible_mw"] + g["shed_backup_mw"] + g["shed_firm_mw"]
    demand = g["load_mw"] + g["datacenter_mw"]
    g["shed_percent"] = np.where(demand > 0, g["shed_mw"] / demand.where(demand > 0, 1) * 100.0, 0.0)
    rot = plan.rotation
    zs = rot.zone_stats.set_index("zone") if len(rot.zone_stats) else pd.DataFrame()
    g["share"] = su.shares.reindex(g.index)
    g["obligation_mw_max"] = rot.obligations_mw.max().reindex(g.index)
    g["firm_shed_mw_max"] = rot.relief_mw.max().reindex(g.index)
    g["firm_shed_mwh"] = (rot.relief_mw.sum() * su.dt_h).reindex(g.index)
    g["unserved_mw_max"] = rot.unserved_mw.max().reindex(g.index)
    for col in ("blocks", "minutes_dark_max", "minutes_dark_mean", "cap_violations"):
        g[col] = zs[col].reindex(g.index) if col in zs else np.nan
    g["hours_dark_max"] = (g["minutes_dark_max"] / 60.0).fillna(0.0)
    g["oe417"] = [oe417(rot.relief_mw[z]) if z in rot.relief_mw else False for z in g.index]
    out = g.reset_index()
    return out.sort_values(["shed_firm_mw", "share", "load_mw"], ascending=False, na_position="last").reset_index(
        drop=True)


def violation_rows(step: StepResult, day_label_peak: str) -> pd.DataFrame:
    """violations.csv rows of a step: every violation of every verified interval, and of the trial just
    above each datacenter's limits (N-0, and N-1 with the contingency named: the ones that name the binding
    constraints). ``contingency`` is "base" for N-0 rows."""
    parts = []
    v = step.verification.violations
    if len(v):
        parts.append(v.assign(source="verification"))
    for lim in step.limits:
        for search, tag in ((lim.search, "N-0"), (lim.n1, "N-1")):
            above = None if search is None else search.above
            if above is not None and above.converged and len(above.screen.violations):
                parts.append(above.screen.violations.assign(
                    interval=day_label_peak, source=f"limit search {tag}: {lim.name} at {above.mw:,.0f} MW"))
            elif above is not None and not above.converged:
                parts.append(pd.DataFrame([{"interval": day_label_peak, "kind": "collapse",
                                            "element": f"{lim.name} at {above.mw:,.0f} MW", "attributed": True,
                                            "reason": search.binding(), "source": f"limit search {tag}: {lim.name}"}]))
    for lab, lim in step.hour_limits.items():
        above = lim.above
        if above is not None and above.converged and len(above.screen.violations):
            parts.append(above.screen.violations.assign(interval=lab, source="hour limit"))
    if not parts:
        return pd.DataFrame(columns=VIOLATIONS_COLUMNS)
    df = pd.concat(parts, ignore_index=True)
    df["step_mw"] = step.datacenter_mw
    if "contingency" not in df:
        df["contingency"] = "base"
    df["contingency"] = df["contingency"].fillna("base")
    for col in VIOLATIONS_COLUMNS:
        if col not in df:
            df[col] = np.nan
    for col in ("from_bus", "to_bus"):  # bus numbers, blank where there is none (a voltage row's to_bus)
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df[VIOLATIONS_COLUMNS]


def limit_rows(step: StepResult) -> pd.DataFrame:
    """limits.csv: each datacenter's N-0 and N-1 limits in a step, and the one that binds."""
    rows = []
    for lim in step.limits:
        b = lim.binding_search
        cont = ""
        if b is lim.n1 and b.above is not None and len(b.above.screen.attributed):
            a = b.above.screen.attributed
            cont = str(a["contingency"].iloc[0]) if "contingency" in a else ""
        rows.append({"step_mw": step.datacenter_mw, "datacenter": lim.name, "requested_mw": lim.requested_mw,
                     "deliverable_mw_n0": lim.deliverable_mw_n0,
                     "deliverable_mw_n1": np.nan if lim.n1 is None else lim.n1.limit_mw,
                     "nose_mw": lim.search.nose_mw, "binding": lim.binding or "none", "binding_contingency": cont,
                     "ac_solves": len(lim.search.trials) + (0 if lim.n1 is None else len(lim.n1.trials))})
    return pd.DataFrame(rows)


def pv_rows(step: StepResult) -> pd.DataFrame:
    """pv_curve.csv: every limit-search trial: MW, lowest voltage at the datacenter's buses, solved."""
    rows = []
    for lim in step.limits:
        for tr in lim.search.trials:
            rows.append({"step_mw": step.datacenter_mw, "datacenter": lim.name, "mw": tr.mw,
                         "vm_min_site_pu": tr.vm_min_site_pu, "converged": tr.converged, "clean": tr.screen.clean})
    return pd.DataFrame(rows)
