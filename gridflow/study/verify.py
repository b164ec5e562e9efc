"""AC verification of a step: every interval of the day solved as planned, and checked.

Interval t is solved with its planned demand (firm load at the hour's multiplier,
less demand response and voltage reduction, less the dark blocks, plus the
cold-load pickup of the blocks coming back; the datacenters' MW after the
ladder), the units outside the footprint at their dispatch plus the emergency
import, the footprint's units balancing the rest, Q limits as the scenario says
(on by default). It is **verified** when it solves, its screen against the hour's
reference (:mod:`gridflow.study.screening`) has no attributed violation (no
generator outside its P or Q limits among them), and the footprint's units keep
the reserve (``capacity - output >= reserve_mw - RESERVE_TOL_MW``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.study.acsolve import OperatingPoint
from gridflow.study.demand import State, held_dispatch
from gridflow.study.screening import Screen

#: MW the footprint's reserve may come out short of ``reserve_mw``: the tolerance of the overhead (net export +
#: losses) estimate, :data:`gridflow.study.run.LOSS_TOL_MW`
RESERVE_TOL_MW = 50.0


@dataclass(frozen=True)
class IntervalCheck:
    """The verified solution of one interval."""

    label: str
    screen: Screen
    losses_mw: float
    footprint_pg_mw: float
    footprint_demand_mw: float  # the footprint's bus demand served
    reserve_kept_mw: float  # footprint capacity - its units' output
    reserve_mw: float
    dc_drawn_mw: float  # datacenter MW drawn from the grid
    vm_min_pu: float

    @property
    def reserve_ok(self) -> bool:
        return self.reserve_kept_mw >= self.reserve_mw - RESERVE_TOL_MW

    @property
    def ok(self) -> bool:
        return self.screen.clean and self.reserve_ok

    def describe(self) -> str:
        s = self.screen.describe()
        if self.screen.converged and not self.reserve_ok:
            s += f"; reserve {self.reserve_kept_mw:,.0f} MW < {self.reserve_mw:,.0f} MW"
        return s


@dataclass(frozen=True)
class Verification:
    """Every interval's check (T) and the tables of what was served."""

    checks: tuple[IntervalCheck, ...]
    points: tuple[OperatingPoint, ...]
    shed_by_bus: pd.DataFrame
    bus_demand: pd.DataFrame
    gen_dispatch: pd.DataFrame
    violations: pd.DataFrame

    @property
    def verified(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def n_ok(self) -> int:
        return sum(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.label}: {c.describe()}" for c in self.checks if not c.ok]


def interval_state(setup, plan, t: int) -> State:
    """The planned demand of interval t (see the module docstring)."""
    fp = setup.footprint
    m = setup.multiplier[t] * np.where(fp.bus, 1.0 - plan.reduction[t], 1.0)
    p0, q0 = setup.firm_p0_mw, setup.firm_q0_mvar
    off = plan.dark_mw[t] - plan.pickup_mw[t]  # firm MW off the grid (negative: pickup)
    pf = np.divide(q0, p0, out=np.zeros_like(q0), where=p0 != 0)
    p = p0 * m - off + plan.dc_p_mw[t]
    q = q0 * m - pf * off + plan.dc_q_mvar[t]
    return State(p, q, held_dispatch(setup.case, fp.gen, float(plan.import_mw[t])))


def verify_day(setup, plan, losses_mw: np.ndarray, previous: Verification | None = None) -> Verification:
    """Solve and check every interval of ``plan``; intervals whose demand is unchanged since ``previous`` are
    not solved again. ``losses_mw`` (T,): first guesses for the solver's loss balance."""
    opts = setup.opts
    fp = setup.footprint
    checks, points = [], []
    rows_demand, rows_gen, rows_shed, rows_v = [], [], [], []
    warm = None
    for t in range(setup.day.T):
        st = interval_state(setup, plan, t)
        lab = setup.day.label(t)
        pt = None
        if previous is not None and _same(previous.points[t], st, setup):
            pt = previous.points[t]
        if pt is None:
            pt = setup.solve(st, warm=warm or setup.references[t], losses_mw=float(losses_mw[t]))
        drawn = float(plan.dc_drawn_mw[:, t].sum())
        s = setup.screen(pt, setup.ref_tables[t], drawn)
        fp_pg = setup.footprint_pg_mw(pt) if pt.converged else float("nan")
        checks.append(IntervalCheck(label=lab, screen=s, losses_mw=pt.losses_mw, footprint_pg_mw=fp_pg,
                                    footprint_demand_mw=float(st.p_mw[fp.bus].sum()),
                                    reserve_kept_mw=fp.capacity_mw - fp_pg, reserve_mw=opts.reserve_mw,
                                    dc_drawn_mw=drawn, vm_min_pu=s.min_vm_pu))
        points.append(pt)
        if pt.converged:
            warm = pt
        has = st.p_mw != 0
        rows_demand.append(pd.DataFrame({"interval": lab, "bus": setup.case.bus.number[has], "p_mw": st.p_mw[has],
                                         "q_mvar": st.q_mvar[has]}))
        gen = pt.result.gen
        on = pt.case.gen.status
        rows_gen.append(pd.DataFrame({
            "interval": lab, "gen": np.arange(setup.case.ng),
            "p_mw": np.where(on, gen["p_mw"].to_numpy() if pt.converged else pt.pg_mw, 0.0),
            "q_mvar": np.where(on, gen["q_mvar"].to_numpy(), 0.0) if pt.converged else np.nan}))
        rows_shed.append(_shed_rows(setup, plan, t, lab))
        if len(s.violations):
            rows_v.append(s.violations.assign(interval=lab))
    cols_v = ["interval"] + list(checks[0].screen.violations.columns) if checks else ["interval"]
    return Verification(checks=tuple(checks), points=tuple(points),
                        shed_by_bus=pd.concat(rows_shed, ignore_index=True),
                        bus_demand=pd.concat(rows_demand, ignore_index=True),
                        gen_dispatch=pd.concat(rows_gen, ignore_index=True),
                        violations=pd.concat(rows_v, ignore_index=True)[cols_v] if rows_v
                        else pd.DataFrame(columns=cols_v))


def _same(old: OperatingPoint, st: State, setup) -> bool:
    """Same demand and the same dispatch of the units that hold (the footprint's respond anyway)."""
    b = setup.case.base_mva
    held = ~setup.footprint.gen
    return (np.allclose(old.case.bus.pd * b, st.p_mw, rtol=0, atol=1e-9)
            and np.allclose(old.case.bus.qd * b, st.q_mvar, rtol=0, atol=1e-9)
            and np.allclose(old.case.gen.pg[held] * b, st.pg_mw[held], rtol=0, atol=1e-9))


def _shed_rows(setup, plan, t: int, lab: str) -> pd.DataFrame:
    """``interval, bus, p_shed_mw, q_shed_mvar, kind`` for the per-bus kinds: the datacenters' (not
    deliverable, flexible, backup, curtailed) and firm (dark blocks; cold-load pickup as its own kind,
    negative). Demand response and voltage reduction are a common fraction of every footprint bus
    (ladder.csv has their MW)."""
    parts = []
    num = setup.case.bus.number
    for kind, arr in plan.dc_shed_mw.items():
        a = arr[t]
        m = a > 1e-9
        tan = plan.dc_tan[m]
        parts.append(pd.DataFrame({"interval": lab, "bus": num[m], "p_shed_mw": a[m], "q_shed_mvar": a[m] * tan,
                                   "kind": kind}))
    p0, q0 = setup.firm_p0_mw, setup.firm_q0_mvar
    pf = np.divide(q0, p0, out=np.zeros_like(q0), where=p0 != 0)
    for kind, a in (("firm", plan.dark_mw[t]), ("cold_load_pickup", -plan.pickup_mw[t])):
        m = np.abs(a) > 1e-9
        parts.append(pd.DataFrame({"interval": lab, "bus": num[m], "p_shed_mw": a[m], "q_shed_mvar": a[m] * pf[m],
                                   "kind": kind}))
    return pd.concat(parts, ignore_index=True)
