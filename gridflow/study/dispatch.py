"""Generation response: a load change is picked up by all online generators in
proportion to their headroom (distributed slack within Pmin/Pmax), not by one slack bus.

For a demand above the base generation, generator g moves by
``delta * (Pmax_g - Pg_g) / sum(Pmax - Pg)``; below it, by
``delta * (Pg_g - Pmin_g) / sum(Pg - Pmin)``; nobody leaves its limits. Losses
are found by the AC power flow: :func:`solve_dispatched` re-dispatches the
slack buses' loss mismatch the same way until it is below ``tol_mw``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.results import PowerFlowResult
from gridflow.solve import solve


@dataclass(frozen=True)
class Dispatch:
    """Generator outputs (ng,), MW, and what could not be met."""

    pg_mw: np.ndarray
    unmet_mw: float  # > 0 when demand exceeds the online capacity


def online_capacity_mw(case: Case) -> float:
    """Sum of Pmax of in-service generators, MW."""
    g = case.gen
    return float(np.sum(np.where(g.status, g.pmax, 0.0)) * case.base_mva)


def dispatch(case: Case, target_mw: float, base_pg_mw: np.ndarray | None = None) -> Dispatch:
    """Share ``target_mw`` of total generation among online generators by headroom (or footroom)."""
    g = case.gen
    base = case.base_mva
    on = g.status
    pg = (g.pg * base if base_pg_mw is None else np.asarray(base_pg_mw, float)).copy()
    pg = np.where(on, pg, 0.0)
    pmax = np.where(on, np.maximum(g.pmax * base, pg), 0.0)
    pmin = np.where(on, np.minimum(g.pmin * base, pg), 0.0)
    delta = target_mw - pg.sum()
    room = (pmax - pg) if delta > 0 else (pg - pmin)
    total = room.sum()
    unmet = 0.0
    if total <= 0:
        unmet = max(delta, 0.0)
    elif abs(delta) > total:
        pg = pmax.copy() if delta > 0 else pmin.copy()
        unmet = max(delta - total, 0.0)
    else:
        pg = pg + delta * room / total
    return Dispatch(pg_mw=pg, unmet_mw=float(unmet))


def solve_dispatched(case: Case, *, base_pg_mw=None, losses_mw: float | None = None, tol_mw: float = 5.0,
                     rounds: int = 3, V0=None, **solve_options) -> tuple[PowerFlowResult, Case, Dispatch]:
    """Dispatch for the case's load plus losses, solve, and repeat until the generators' total
    is within ``tol_mw`` of the dispatch (the slack buses carry the difference).

    ``losses_mw`` is the first guess of the losses (default 2 % of the load); ``V0`` a warm
    start. Returns the last result, the dispatched case and the dispatch.
    """
    load = case.bus.pd.sum() * case.base_mva
    losses = 0.02 * load if losses_mw is None else losses_mw
    base_pg = case.gen.pg * case.base_mva if base_pg_mw is None else base_pg_mw
    res = None
    d = None
    for _ in range(rounds):
        d = dispatch(case, load + losses, base_pg)
        dispatched = case.replace(gen={"pg": d.pg_mw / case.base_mva})
        res = solve(dispatched, V0=V0, **solve_options)
        if not res.converged:
            break
        V0 = res.V
        gen_total = res.gen["p_mw"].sum()
        mismatch = gen_total - d.pg_mw.sum()
        losses = gen_total - load
        if abs(mismatch) <= tol_mw:
            break
    return res, dispatched, d
