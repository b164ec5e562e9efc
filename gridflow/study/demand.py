"""The study's demand per bus: firm load, datacenter load and its flexible part, and what is
left of it after a shed.

Arrays are over the case's buses (nb,), MW and MVAr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.study.allocation import Allocation


@dataclass(frozen=True)
class Loads:
    """Demand per bus (nb,): firm load, datacenter load and its flexible part (MW / MVAr)."""

    firm_p_mw: np.ndarray
    firm_q_mvar: np.ndarray
    dc_p_mw: np.ndarray
    dc_q_mvar: np.ndarray
    flex_p_mw: np.ndarray

    @property
    def total_p_mw(self) -> np.ndarray:
        return self.firm_p_mw + self.dc_p_mw

    def remaining(self, a: Allocation) -> Loads:
        """What is left after the shed ``a`` (power factors kept)."""
        flex_left = np.maximum(self.flex_p_mw - a.p_flex_mw, 0.0)
        dc_left = np.maximum(self.dc_p_mw - a.p_flex_mw - a.p_backup_mw, 0.0)
        firm_left = np.maximum(self.firm_p_mw - a.p_firm_mw, 0.0)
        return Loads(firm_p_mw=firm_left, firm_q_mvar=_scaled(self.firm_q_mvar, firm_left, self.firm_p_mw),
                     dc_p_mw=dc_left, dc_q_mvar=_scaled(self.dc_q_mvar, dc_left, self.dc_p_mw), flex_p_mw=flex_left)


def _scaled(q, p_new, p_old):
    return np.divide(q * p_new, p_old, out=np.zeros_like(q, dtype=float), where=p_old > 0)


def served_case(case: Case, loads: Loads, a: Allocation | None, dark_mw: np.ndarray | None = None) -> Case:
    """The case with the demand left after the shed: flexible and backup shed always; firm shed
    either as allocated per bus (``dark_mw`` None) or as the dark feeders' MW at each bus (``dark_mw`` (nb,))."""
    p = loads.total_p_mw.copy()
    q = loads.firm_q_mvar + loads.dc_q_mvar
    if a is not None:
        p -= a.p_flex_mw + a.p_backup_mw
        q -= a.q_flex_mvar + a.q_backup_mvar
        if dark_mw is None:
            p -= a.p_firm_mw
            q -= a.q_firm_mvar
        else:
            p -= dark_mw
            q -= _scaled(loads.firm_q_mvar, dark_mw, loads.firm_p_mw)
    p = np.maximum(p, 0.0)
    return case.replace(bus={"pd": p / case.base_mva, "qd": q / case.base_mva})
