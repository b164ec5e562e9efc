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
    from-end MW flows, voltage excess (pu beyond limits, 0 inside) and, after a contingency, each generator's
    excess over its P and Q limits (MW, MVAr; (ng, 2), 0 inside; None: judged without a reference)."""

    loading_percent: np.ndarray  # (nl,)
    p_from_mw: np.ndarray  # (nl,)
    v_excess_pu: np.ndarray  # (nb,)
    gen_excess: np.ndarray | None = None  # (ng, 2): MW over P limits, MVAr over Q limits


def gen_excess(case: Case, p_mw, q_mvar) -> np.ndarray:
    """Each generator's excess over its P and Q limits (ng, 2): MW, MVAr; 0 inside."""
    g, base = case.gen, case.base_mva
    out = np.zeros((case.ng, 2))
    for c, (val, lo, hi) in enumerate(((p_mw, g.pmin, g.pmax), (q_mvar, g.qmin, g.qmax))):
        val = np.nan_to_num(np.asarray(val, float))
        out[:, c] = np.maximum(np.maximum(lo * base - val, val - hi * base), 0.0)
    return out


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
        parts = [f"{int(counts[k])} {k}" for k in ("thermal", "voltage", "generator", "collapse") if k in counts]
        return "attributed: " + ", ".join(parts) + rest

    def binding_row(self) -> pd.Series | None:
        """The attributed violation that binds (None when clean or not converged): a collapse first, else the
        most loaded branch, else the voltage furthest from 1 pu, else the first row."""
        if not self.converged:
            return None
        a = self.attributed
        if not len(a):
            return None
        for kind, pick in (("collapse", lambda d: d.index[0]), ("thermal", lambda d: d["loading_percent"].idxmax()),
                           ("voltage", lambda d: (d["vm_pu"] - 1.0).abs().idxmax())):
            d = a[a["kind"] == kind]
            if len(d):
                return d.loc[pick(d)]
        return a.iloc[0]

    def binding(self) -> str:
        """The attributed violation that binds (:meth:`binding_row`) in words (empty when clean); after an
        outage, it is named."""
        if not self.converged:
            return "voltage collapse"
        r = self.binding_row()
        if r is None:
            return ""
        c = r.get("contingency") if "contingency" in r else None
        after = f" after the outage of {c}" if isinstance(c, str) and c and c != "base" else ""
        if r["kind"] == "collapse":
            return f"voltage collapse{after} (no solution with the datacenter, a solution without it)"
        if r["kind"] == "thermal":
            return (f"{r['element']} {r['name']} ({r['kv']:g} kV, {r['zone']}): {r['loading_percent']:.1f} % of "
                    f"{r['rating_mva']:.0f} MVA (was {r['loading_base_percent']:.1f} %), "
                    f"DFAX {r['dfax_percent']:.1f} %{after}")
        if r["kind"] == "voltage":
            side = "below Vmin" if r["vm_pu"] < 1.0 else "above Vmax"
            return (f"voltage at {r['element']} {r['name']} ({r['kv']:g} kV, {r['zone']}) {side}: {r['vm_pu']:.3f} pu"
                    f"{after}")
        return f"{r['element']}: {r['reason']}{after}"


def screen(case: Case, res: PowerFlowResult, ref: Reference, monitor: Monitor, served_mw: float,
           zone: np.ndarray, dispatched: Case | None = None) -> Screen:
    """All violations of ``res`` against ``ref`` (see the module docstring).

    ``served_mw``: datacenter MW served beyond the reference (the DFAX denominator; <= 0: no DFAX, no
    thermal attribution). ``zone`` (nb,): zone names for the table. ``dispatched``: the case as
    solved, for the generator limits (default ``res.case``).
    """
    if not res.converged:
        return Screen(False, pd.DataFrame(columns=VIOLATION_COLUMNS), float("nan"), float("nan"))
    return screen_arrays(case, branch_loading(case, res, monitor.rating), res.branch["p_from_mw"].to_numpy(),
                         res.bus["vm_pu"].to_numpy(), res.gen["p_mw"].to_numpy(), res.gen["q_mvar"].to_numpy(), ref,
                         monitor, served_mw, zone, dispatched if dispatched is not None else res.case)


def screen_arrays(case: Case, load, p_from_mw, vm_pu, gen_p_mw, gen_q_mvar, ref: Reference, monitor: Monitor,
                  served_mw: float, zone: np.ndarray, gen_case: Case, skip_branches=(), gen_on=None) -> Screen:
    """:func:`screen` of a solved point given as arrays: branch loading on ``monitor.rating`` (nl,) %,
    from-end MW (nl,), |V| (nb,) pu (NaN de-energized), generator MW / MVAr (ng,); ``gen_case``: whose
    generator limits apply; ``skip_branches``: branch rows not judged (out of service in a contingency);
    ``gen_on`` bool (ng,): generators in service in this solution (default: ``gen_case``'s)."""
    rows = []
    bus, br = case.bus, case.branch
    name = _Names(bus.name)
    load = np.array(load, dtype=float)
    if len(skip_branches):
        load[np.asarray(skip_branches, np.int64)] = np.nan
    over = np.flatnonzero(np.nan_to_num(load) > 100.0)
    if len(over):
        was = ref.loading_percent[over]
        dp = np.asarray(p_from_mw)[over] - ref.p_from_mw[over]
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
    vm = np.asarray(vm_pu, dtype=float)
    ex = np.maximum(np.maximum(case.bus.vmin - vm, vm - case.bus.vmax), 0.0)
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
    rows += _gen_rows(gen_case, np.asarray(gen_p_mw), np.asarray(gen_q_mvar), zone, name, gen_on, ref.gen_excess)
    if rows:
        df = pd.DataFrame(rows, columns=VIOLATION_COLUMNS)
        df["attributed"] = df["attributed"].astype(bool)
    else:  # most post-contingency solutions: no frame to build (the shared empty one is never modified)
        df = _NO_VIOLATION
    return Screen(True, df, float(np.nanmax(load, initial=0.0)), float(np.nanmin(vm)))


_NO_VIOLATION = pd.DataFrame(columns=VIOLATION_COLUMNS).astype({"attributed": bool})


class _Names:
    """Bus names stripped, looked up only for the rows written."""

    def __init__(self, names):
        self._names = names

    def __getitem__(self, i) -> str:
        return str(self._names[i]).strip()


def _gen_rows(case: Case, p, q, zone, name, on=None, ref_excess=None) -> list:
    """Generators outside their limits; one already as far outside in the reference (``ref_excess``, after the
    same contingency: a unit left alone in an island by the outage) is reported, not attributed."""
    g = case.gen
    now = gen_excess(case, p, q)
    on = g.status if on is None else np.asarray(on, bool) & g.status
    base = case.base_mva
    rows = []
    for c, (what, val, lo, hi, unit) in enumerate((("P", p, g.pmin * base, g.pmax * base, "MW"),
                                                   ("Q", q, g.qmin * base, g.qmax * base, "MVAr"))):
        bad = np.flatnonzero(on & ((val > hi + GEN_TOL) | (val < lo - GEN_TOL)))
        for k in bad:
            b = g.bus[k]
            why = f"{what} = {val[k]:.1f} {unit} outside [{lo[k]:.1f}, {hi[k]:.1f}]"
            ok = ref_excess is None or now[k, c] > ref_excess[k, c] + GEN_TOL
            if not ok:
                why += " as in the reference"
            rows.append(("generator", f"gen {k}", int(case.bus.number[b]), np.nan, name[b], float(case.bus.base_kv[b]),
                         str(zone[b]), np.nan, np.nan, np.nan, np.nan, np.nan, ok, why, True))
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
