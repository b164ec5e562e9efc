"""Operating states of the study: the case with one interval's demand and the interchange it allows.

A state is the base case with

* the footprint's firm load at the hour's multiplier, less demand response and
  voltage reduction (a common fraction of every footprint bus), less the dark
  blocks, plus the cold-load pickup of the blocks coming back;
* each datacenter's MW at its buses (Q at its power factor);
* the units outside the footprint at their base-case dispatch, plus an emergency
  import shared among them by headroom (:func:`gridflow.study.dispatch.dispatch`).

The footprint's units pick up the rest when the state is solved
(:func:`gridflow.study.acsolve.solve_point`). Arrays over buses (nb,), MW / MVAr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.study.dispatch import dispatch


@dataclass(frozen=True)
class State:
    """One operating state to solve: bus demand (nb,) and the dispatch of the units that hold (ng,)."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    pg_mw: np.ndarray

    def case(self, case: Case) -> Case:
        b = case.base_mva
        return case.replace(bus={"pd": self.p_mw / b, "qd": self.q_mvar / b}, gen={"pg": self.pg_mw / b})


def held_dispatch(case: Case, footprint_gen: np.ndarray, import_mw: float = 0.0) -> np.ndarray:
    """Generator MW (ng,): the base case's, with ``import_mw`` more from the units outside the footprint,
    shared by headroom (at most what they have)."""
    base_pg = np.where(case.gen.status, case.gen.pg * case.base_mva, 0.0)
    if import_mw <= 0:
        return base_pg
    outside = case.gen.status & ~footprint_gen
    d = dispatch(case, float(base_pg[outside].sum()) + import_mw, base_pg, responders=outside)
    return d.pg_mw
