"""Generation response: a change of demand is picked up by the responding generators in
proportion to their headroom (distributed slack within Pmin/Pmax), not by one slack bus.

For a demand above the responders' present output, responder g moves by
``delta * (Pmax_g - Pg_g) / sum(Pmax - Pg)``; below it, by
``delta * (Pg_g - Pmin_g) / sum(Pg - Pmin)``; nobody leaves its limits, and
what the responders cannot cover is ``unmet_mw``. The AC solve around it (losses
found by the power flow) is :func:`gridflow.study.acsolve.solve_point`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case


@dataclass(frozen=True)
class Dispatch:
    """Generator outputs (ng,), MW, and what could not be met."""

    pg_mw: np.ndarray
    unmet_mw: float  # > 0 when demand exceeds the responders' capacity


def online_capacity_mw(case: Case, gens=None) -> float:
    """Sum of Pmax of in-service generators (of those in the bool mask ``gens`` (ng,) if given), MW."""
    g = case.gen
    on = g.status if gens is None else g.status & np.asarray(gens, dtype=bool)
    return float(np.sum(np.where(on, g.pmax, 0.0)) * case.base_mva)


def dispatch(case: Case, target_mw: float, base_pg_mw: np.ndarray | None = None, *, responders=None,
             pmax_mw=None, pmin_mw=None) -> Dispatch:
    """Share ``target_mw`` of the responders' total output among them by headroom (or footroom).

    ``responders`` (bool (ng,), default: every online generator) move; the others keep
    ``base_pg_mw`` (default: the case's ``pg``). ``pmax_mw`` / ``pmin_mw`` (ng,) override the
    case's limits (MW).
    """
    g = case.gen
    base = case.base_mva
    on = g.status if responders is None else g.status & np.asarray(responders, dtype=bool)
    pg0 = (g.pg * base if base_pg_mw is None else np.asarray(base_pg_mw, float)).copy()
    pg = np.where(on, pg0, 0.0)
    hi = g.pmax * base if pmax_mw is None else np.asarray(pmax_mw, float)
    lo = g.pmin * base if pmin_mw is None else np.asarray(pmin_mw, float)
    pmax = np.where(on, np.maximum(hi, pg), 0.0)
    pmin = np.where(on, np.minimum(lo, pg), 0.0)
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
    return Dispatch(pg_mw=np.where(on, pg, pg0), unmet_mw=float(unmet))
