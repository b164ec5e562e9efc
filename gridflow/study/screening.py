"""Screening an AC operating point: every violation, and which ones count against the datacenters.

A solution is judged against a **reference**: the same hour without the load
being tested (for a limit search, the datacenter at 0 MW with the ones before it
in the queue at theirs; for an interval of the day, the hour without any
datacenter). Every violation is listed; whether it is **attributed** to the
datacenters follows the distribution-factor test planners use:

* **thermal**: a branch over its rating (``rating``: A, B or C; a rating of 0 is
  *unrated*, never an overload: the number of unrated monitored branches is
  reported). It counts only if the branch is **monitored** (either end at or
  above ``monitored_kv_min``, or inside the datacenters' zones), its **DFAX** (the
  change of its from-end MW flow from the reference, per MW of datacenter load
  served, in %) is at least ``dfax_cutoff_percent``, and, if it was already over
  its rating in the reference, its loading grew by more than
  ``loading_tolerance_percent`` points. The DFAX is the AC flow change over the
  whole addition (a large-signal distribution factor), not a DC sensitivity.
* **voltage**: a bus outside [Vmin, Vmax] by more than ``voltage_tolerance_pu``.
  It counts if the bus is monitored (in the footprint and at or above
  ``monitored_kv_min``: the bulk electric system, 100 kV in NERC's definition;
  generator terminals and sub-transmission pockets are listed, not attributed)
  and it is new or worse than in the reference by more than that tolerance.
* **generator**: output outside [Pmin, Pmax] or [Qmin, Qmax] by more than
  ``GEN_TOL`` (MW / MVAr): it always counts (no reported solution may have one).

Everything else is reported with ``attributed = False`` and the reason, never
dropped. A point that does not solve is a *collapse*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.results import PowerFlowResult, loading_percent, rating_mva

#: MW / MVAr beyond a generator limit that counts as outside it (the solver's and dispatch's rounding)
GEN_TOL = 0.5

VIOLATION_COLUMNS = ["kind", "element", "from_bus", "to_bus", "name", "kv", "zone", "rating_mva",
                     "loading_base_percent", "loading_percent", "vm_pu", "dfax_percent", "attributed", "reason",
                     "monitored"]


@dataclass(frozen=True)
class Monitor:
    """How violations are judged (arrays over branches (nl,) and buses (nb,))."""

    rating: str
    rating_mva: np.ndarray  # (nl,) 0 = unrated
    monitored: np.ndarray  # bool (nl,)
    footprint_bus: np.ndarray  # bool (nb,)
    voltage_bus: np.ndarray  # bool (nb,): buses whose voltage is monitored
    dfax_cutoff_percent: float
    loading_tolerance_percent: float
    voltage_tolerance_pu: float
    monitored_kv_min: float

    @property
    def unrated_monitored(self) -> int:
        """Monitored branches without a rating (not checked for overloads)."""
        return int((self.monitored & ~(self.rating_mva > 0)).sum())


def monitor_for(case: Case, *, rating: str, footprint_bus: np.ndarray, local_bus: np.ndarray, monitored_kv_min: float,
                dfax_cutoff_percent: float, loading_tolerance_percent: float,
                voltage_tolerance_pu: float) -> Monitor:
    """The :class:`Monitor` of a study: branches at or above ``monitored_kv_min`` (either end) or with both
    ends in ``local_bus`` (the datacenters' zones), in service."""
    br = case.branch
    kv = np.maximum(case.bus.base_kv[br.f], case.bus.base_kv[br.t])
    mon = br.status & ((kv >= monitored_kv_min) | (local_bus[br.f] & local_bus[br.t]))
    fp = np.asarray(footprint_bus, bool)
    vbus = fp & (case.bus.base_kv >= monitored_kv_min)
    rate = rating_mva(case, rating)
    if mon.any() and not (rate[mon] > 0).any():
        # never a clean result on ratings that do not exist
        raise ScenarioError(f"rating {rating}: no monitored branch of {case.name} has a rate {rating}"
                            + (" nor a rate A" if rating != "A" else "") + ": nothing could be checked for overloads")
    return Monitor(rating=rating, rating_mva=rate, monitored=mon,
                   footprint_bus=fp, voltage_bus=vbus, dfax_cutoff_percent=dfax_cutoff_percent,
                   loading_tolerance_percent=loading_tolerance_percent, voltage_tolerance_pu=voltage_tolerance_pu,
                   monitored_kv_min=monitored_kv_min)


@dataclass(frozen=True)
class Reference:
    """What a violation is judged against: the reference solution's branch loading (%, NaN unrated),
    from-end MW flows and voltage excess (pu beyond limits, 0 inside)."""

    loading_percent: np.ndarray  # (nl,)
    p_from_mw: np.ndarray  # (nl,)
    v_excess_pu: np.ndarray  # (nb,)


def branch_loading(case: Case, res: PowerFlowResult, rating: str = "A") -> np.ndarray:
    """Branch loading (nl,), percent of rating A, B or C (NaN where the rating is 0)."""
    br = res.branch
    Sf = np.hypot(br["p_from_mw"], br["q_from_mvar"]).to_numpy()
    St = np.hypot(br["p_to_mw"], br["q_to_mvar"]).to_numpy()
    vm = np.nan_to_num(res.bus["vm_pu"].to_numpy())  # 0 at de-energized buses
    return loading_percent(case, Sf, St, rating, vm_from=vm[case.branch.f], vm_to=vm[case.branch.t])


def voltage_excess(case: Case, res: PowerFlowResult) -> np.ndarray:
    """How far each bus is outside [Vmin, Vmax], pu (nb,), 0 inside, NaN if de-energized."""
    vm = res.bus["vm_pu"].to_numpy()
    return np.maximum(np.maximum(case.bus.vmin - vm, vm - case.bus.vmax), 0.0)


def reference(case: Case, res: PowerFlowResult, rating: str) -> Reference:
    return Reference(loading_percent=branch_loading(case, res, rating), p_from_mw=res.branch["p_from_mw"].to_numpy(),
                     v_excess_pu=voltage_excess(case, res))


@dataclass(frozen=True)
class Screen:
    """Every violation of one solution (:data:`VIOLATION_COLUMNS`; ``element`` names the branch row,
    bus or generator row) and whether it solved."""

    converged: bool
    violations: pd.DataFrame
    max_loading_percent: float
    min_vm_pu: float

    @property
    def attributed(self) -> pd.DataFrame:
        return self.violations[self.violations["attributed"]]

    @property
    def clean(self) -> bool:
        """Solved, with no attributed violation."""
        return self.converged and not bool(self.violations["attributed"].any())

    def describe(self) -> str:
        if not self.converged:
            return "no convergence (voltage collapse)"
        a = self.attributed
        n_other = len(self.violations) - len(a)
        rest = f"; {n_other} not attributed" if n_other else ""
        if not len(a):
            return "clean" + rest
        counts = a["kind"].value_counts()
        parts = [f"{int(counts[k])} {k}" for k in ("thermal", "voltage", "generator") if k in counts]
        return "attributed: " + ", ".join(parts) + rest

    def binding(self) -> str:
        """The attributed violation that binds, in words (empty when clean)."""
        if not self.converged:
            return "voltage collapse"
        a = self.attributed
        if not len(a):
            return ""
        th = a[a["kind"] == "thermal"]
        if len(th):
            r = th.loc[th["loading_percent"].idxmax()]
            return (f"{r['element']} {r['name']} ({r['kv']:g} kV, {r['zone']}): {r['loading_percent']:.1f} % of "
                    f"{r['rating_mva']:.0f} MVA (was {r['loading_base_percent']:.1f} %), "
                    f"DFAX {r['dfax_percent']:.1f} %")
        v = a[a["kind"] == "voltage"]
        if len(v):
            r = v.loc[(v["vm_pu"] - 1.0).abs().idxmax()]
            side = "below Vmin" if r["vm_pu"] < 1.0 else "above Vmax"
            return f"voltage at {r['element']} {r['name']} ({r['kv']:g} kV, {r['zone']}) {side}: {r['vm_pu']:.3f} pu"
        r = a.iloc[0]
        return f"{r['element']}: {r['reason']}"


def screen(case: Case, res: PowerFlowResult, ref: Reference, monitor: Monitor, served_mw: float,
           zone: np.ndarray, dispatched: Case | None = None) -> Screen:
    """All violations of ``res`` against ``ref`` (see the module docstring).

    ``served_mw``: datacenter MW served beyond the reference (the DFAX denominator; <= 0: no DFAX, no
    thermal attribution). ``zone`` (nb,): zone names for the table. ``dispatched``: the case as
    solved, for the generator limits (default ``res.case``).
    """
    if not res.converged:
        return Screen(False, pd.DataFrame(columns=VIOLATION_COLUMNS), float("nan"), float("nan"))
    rows = []
    bus, br = case.bus, case.branch
    name = np.asarray([str(n).strip() for n in bus.name], dtype=object)
    load = branch_loading(case, res, monitor.rating)
    over = np.flatnonzero(np.nan_to_num(load) > 100.0)
    if len(over):
        was = ref.loading_percent[over]
        dp = res.branch["p_from_mw"].to_numpy()[over] - ref.p_from_mw[over]
        dfax = np.abs(dp) / served_mw * 100.0 if served_mw > 1e-9 else np.full(len(over), np.nan)
        for j, k in enumerate(over):
            f, t = br.f[k], br.t[k]
            pre = np.nan_to_num(was[j]) > 100.0
            if not monitor.monitored[k]:
                ok, why = False, (f"not monitored (below {monitor.monitored_kv_min:g} kV, outside the datacenters' "
                                  "zones)")
            elif not dfax[j] >= monitor.dfax_cutoff_percent:
                ok, why = False, f"DFAX {dfax[j]:.2f} % below the {monitor.dfax_cutoff_percent:g} % cut-off"
            elif pre and load[k] <= was[j] + monitor.loading_tolerance_percent:
                ok, why = False, (f"already over its rating ({was[j]:.1f} %), worsened by {load[k] - was[j]:.2f} "
                                  f"<= {monitor.loading_tolerance_percent:g} points")
            else:
                ok, why = True, "worsened pre-existing overload" if pre else "new overload"
            rows.append(("thermal", f"branch {k}", int(bus.number[f]), int(bus.number[t]), f"{name[f]} - {name[t]}",
                         float(max(bus.base_kv[f], bus.base_kv[t])), str(zone[f]), float(monitor.rating_mva[k]),
                         float(was[j]), float(load[k]), np.nan, float(dfax[j]), ok, why, bool(monitor.monitored[k])))
    ex = voltage_excess(case, res)
    vm = res.bus["vm_pu"].to_numpy()
    vbad = np.flatnonzero(np.nan_to_num(ex) > monitor.voltage_tolerance_pu)
    for i in vbad:
        new = ex[i] > np.nan_to_num(ref.v_excess_pu[i]) + monitor.voltage_tolerance_pu
        if not monitor.footprint_bus[i]:
            ok, why = False, "outside the footprint"
        elif not monitor.voltage_bus[i]:
            ok, why = False, f"not monitored (below {monitor.monitored_kv_min:g} kV)"
        elif not new:
            ok, why = False, f"as in the reference (beyond its limit by {ref.v_excess_pu[i]:.3f} pu there)"
        else:
            ok, why = True, "below Vmin" if vm[i] < bus.vmin[i] else "above Vmax"
        rows.append(("voltage", f"bus {int(bus.number[i])}", int(bus.number[i]), np.nan, name[i],
                     float(bus.base_kv[i]), str(zone[i]), np.nan, np.nan, np.nan, float(vm[i]), np.nan, ok, why,
                     bool(monitor.voltage_bus[i])))
    rows += _gen_rows(dispatched if dispatched is not None else res.case, res, zone, name)
    df = pd.DataFrame(rows, columns=VIOLATION_COLUMNS)
    df["attributed"] = df["attributed"].astype(bool)
    return Screen(True, df, float(np.nanmax(load, initial=0.0)), float(np.nanmin(vm)))


def _gen_rows(case: Case, res: PowerFlowResult, zone, name) -> list:
    g = case.gen
    on = g.status
    base = case.base_mva
    p = res.gen["p_mw"].to_numpy()
    q = res.gen["q_mvar"].to_numpy()
    rows = []
    for what, val, lo, hi, unit in (("P", p, g.pmin * base, g.pmax * base, "MW"),
                                    ("Q", q, g.qmin * base, g.qmax * base, "MVAr")):
        bad = np.flatnonzero(on & ((val > hi + GEN_TOL) | (val < lo - GEN_TOL)))
        for k in bad:
            b = g.bus[k]
            rows.append(("generator", f"gen {k}", int(case.bus.number[b]), np.nan, name[b], float(case.bus.base_kv[b]),
                         str(zone[b]), np.nan, np.nan, np.nan, np.nan, np.nan, True,
                         f"{what} = {val[k]:.1f} {unit} outside [{lo[k]:.1f}, {hi[k]:.1f}]", True))
    return rows


def rejudge(violations: pd.DataFrame, *, dfax_cutoff_percent: float, loading_tolerance_percent: float) -> pd.Series:
    """``attributed`` (bool per row) of recorded violations under another DFAX cut-off or loading tolerance:
    thermal rows are judged again from their recorded monitoring, DFAX and loadings; the others keep theirs."""
    v = violations
    th = v["kind"] == "thermal"
    pre = v["loading_base_percent"].fillna(0.0) > 100.0
    ok = (v["monitored"].astype(bool) & (v["dfax_percent"].fillna(-1.0) >= dfax_cutoff_percent)
          & (~pre | (v["loading_percent"] > v["loading_base_percent"] + loading_tolerance_percent)))
    return pd.Series(np.where(th, ok, v["attributed"].astype(bool)), index=v.index)
