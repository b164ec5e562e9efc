"""Tabulation of a step: rotation blocks, shed by bus, demand served, per-zone table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.study.allocation import Allocation
from gridflow.study.demand import Loads
from gridflow.study.zones import ZoneMap


def feeder_blocks(case: Case, zones: ZoneMap, loads: Loads, a: Allocation, critical: np.ndarray, feeder_mw: float,
                  only_shed: bool = False) -> pd.DataFrame:
    """Rotation blocks: each load bus's firm load cut into feeders of ``feeder_mw`` (the last one
    smaller), listed round-robin over the buses (first feeder of every bus, then the second...) so
    that a rotation spreads over the zone instead of darkening whole substations.

    Buses taking part: every non-critical bus with firm load (with ``only_shed``: only those the
    allocation sheds firm load at). Columns ``zone, block, bus, bus_index, mw``.
    """
    take = (loads.firm_p_mw > 1e-9) & ~critical
    if only_shed:
        take &= a.p_firm_mw > 1e-6
    rows = []
    for i in np.flatnonzero(take):
        mw = loads.firm_p_mw[i]
        n_full = int(mw // feeder_mw)
        sizes = [feeder_mw] * n_full + ([mw - n_full * feeder_mw] if mw - n_full * feeder_mw > 1e-6 else [])
        for k, size in enumerate(sizes):
            rows.append((k, str(zones.zone[i]), f"{case.bus.number[i]}-{k + 1}", int(case.bus.number[i]), i, size))
    df = pd.DataFrame(rows, columns=["k", "zone", "block", "bus", "bus_index", "mw"])
    return df.sort_values(["k", "bus"], kind="stable").drop(columns="k").reset_index(drop=True)


def shed_rows(t: int, case: Case, loads: Loads, a: Allocation, dark_mw: np.ndarray) -> pd.DataFrame:
    """``interval, bus, p_shed_mw, q_shed_mvar, kind`` of one interval (firm shed = the dark feeders)."""
    parts = []
    firm_q = np.divide(dark_mw, loads.firm_p_mw, out=np.zeros_like(dark_mw), where=loads.firm_p_mw > 0) \
        * loads.firm_q_mvar
    for kind, p, q in (("flexible", a.p_flex_mw, a.q_flex_mvar), ("backup", a.p_backup_mw, a.q_backup_mvar),
                       ("firm", dark_mw, firm_q)):
        m = p > 1e-9
        parts.append(pd.DataFrame({"interval": t, "bus": case.bus.number[m], "p_shed_mw": p[m],
                                   "q_shed_mvar": q[m], "kind": kind}))
    return pd.concat(parts, ignore_index=True)


def demand_rows(t: int, served: Case) -> pd.DataFrame:
    """``interval, bus, p_mw, q_mvar``: demand served at every bus with load."""
    has = served.bus.pd > 0
    return pd.DataFrame({"interval": t, "bus": served.bus.number[has], "p_mw": served.bus.pd[has] * served.base_mva,
                         "q_mvar": served.bus.qd[has] * served.base_mva})


def gen_rows(t: int, pt) -> pd.DataFrame:
    """``interval, gen, p_mw``: generator output (the dispatch where the point did not solve)."""
    case = pt.case
    pg = pt.result.gen["p_mw"].to_numpy() if pt.converged else pt.pg_mw
    return pd.DataFrame({"interval": t, "gen": np.arange(case.ng), "p_mw": np.where(case.gen.status, pg, 0.0)})


def zone_table(zones: ZoneMap, loads: Loads, a: Allocation, zone_stats: pd.DataFrame) -> pd.DataFrame:
    """One row per zone: load, datacenter MW, shed by kind, % shed, hours dark, OE-417 flag."""
    df = pd.DataFrame({"zone": zones.zone, "state": zones.state, "rto": zones.rto,
                       "load_mw": loads.firm_p_mw, "datacenter_mw": loads.dc_p_mw,
                       "shed_flexible_mw": a.p_flex_mw, "shed_backup_mw": a.p_backup_mw, "shed_firm_mw": a.p_firm_mw})
    g = df.groupby("zone", sort=False).agg(state=("state", "first"), rto=("rto", "first"), load_mw=("load_mw", "sum"),
                                           datacenter_mw=("datacenter_mw", "sum"),
                                           shed_flexible_mw=("shed_flexible_mw", "sum"),
                                           shed_backup_mw=("shed_backup_mw", "sum"),
                                           shed_firm_mw=("shed_firm_mw", "sum"))
    g["shed_mw"] = g["shed_flexible_mw"] + g["shed_backup_mw"] + g["shed_firm_mw"]
    demand = g["load_mw"] + g["datacenter_mw"]
    g["shed_percent"] = np.where(demand > 0, g["shed_mw"] / demand.where(demand > 0, 1) * 100.0, 0.0)
    hours = zone_stats.set_index("zone")["hours_dark_max"] if len(zone_stats) else pd.Series(dtype=float)
    g["hours_dark_max"] = hours.reindex(g.index).fillna(0.0)
    g["oe417"] = g["shed_mw"] >= 100.0
    return g.reset_index().sort_values(["shed_mw", "load_mw"], ascending=False).reset_index(drop=True)
