"""Screening an AC operating point against the base case: what is new, what got worse.

Real cases are not clean (ACTIVSg25k has two branches over rating A before
any datacenter is added), so violations are judged against the base case:

* a branch is *newly overloaded* when it is over its rating by more than
  ``loading_tol`` percentage points now and was not over it in the base case; a
  pre-existing overload is *worsened* when its loading grew by more than
  ``loading_tol`` points;
* a branch without the rating (0 in the case, "unrated") is not monitored:
  :class:`Baseline` counts them, and a rating no branch has is refused;
* a bus has a *new voltage violation* when it is outside [Vmin, Vmax] by more
  than ``v_tol`` pu and was not outside in the base case (or is now further out
  by more than ``v_tol``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.results import PowerFlowResult, loading_percent, unrated


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


@dataclass(frozen=True)
class Baseline:
    """The base case's loading (%) and voltage excess (pu), the reference for 'new'."""

    loading: np.ndarray
    v_excess: np.ndarray
    rating: str
    unrated: int = 0  # in-service branches without this rating (0 in the case): not monitored

    @property
    def overloaded(self) -> np.ndarray:
        return np.flatnonzero(np.nan_to_num(self.loading) > 100.0)


@dataclass(frozen=True)
class Screen:
    """Problems of one AC solution relative to the baseline."""

    converged: bool
    new_overloads: np.ndarray  # branch indices
    worsened_overloads: np.ndarray  # branch indices
    new_voltage: np.ndarray  # bus indices
    max_loading: float
    min_vm: float

    @property
    def clean(self) -> bool:
        return self.converged and not (len(self.new_overloads) or len(self.worsened_overloads)
                                       or len(self.new_voltage))

    @property
    def problem_branches(self) -> np.ndarray:
        return np.union1d(self.new_overloads, self.worsened_overloads)

    def describe(self) -> str:
        if not self.converged:
            return "no convergence (voltage collapse)"
        if self.clean:
            return "clean"
        parts = []
        if len(self.new_overloads):
            parts.append(f"{len(self.new_overloads)} new overloads")
        if len(self.worsened_overloads):
            parts.append(f"{len(self.worsened_overloads)} worsened overloads")
        if len(self.new_voltage):
            parts.append(f"{len(self.new_voltage)} new voltage violations")
        return ", ".join(parts)


def baseline(case: Case, res: PowerFlowResult, rating: str = "A") -> Baseline:
    """The base case's loading and voltages; refuses a rating no in-service branch has (nothing to monitor,
    so every screen would be "clean" on a rating that does not exist)."""
    on = res.branch["in_service"].to_numpy()
    none = unrated(case, rating) & on
    if on.any() and none.sum() == on.sum():
        also = " nor a rate A to fall back on" if rating != "A" else ""
        raise ScenarioError(f"rating {rating}: no in-service branch of {case.name} has a rate {rating}{also} (all 0, "
                            "unrated): nothing could be monitored")
    return Baseline(loading=branch_loading(case, res, rating), v_excess=voltage_excess(case, res), rating=rating,
                    unrated=int(none.sum()))


def screen(case: Case, res: PowerFlowResult, base: Baseline, *, v_tol: float = 0.005,
           loading_tol: float = 1.0) -> Screen:
    """Compare ``res`` with the base case."""
    if not res.converged:
        empty = np.zeros(0, np.int64)
        return Screen(False, empty, empty, empty, np.nan, np.nan)
    load = np.nan_to_num(branch_loading(case, res, base.rating))
    was = np.nan_to_num(base.loading)
    new_over = np.flatnonzero((load > 100.0 + loading_tol) & (was <= 100.0))
    worse = np.flatnonzero((was > 100.0) & (load > was + loading_tol))
    ex = np.nan_to_num(voltage_excess(case, res))
    new_v = np.flatnonzero(ex > np.nan_to_num(base.v_excess) + v_tol)
    vm = res.bus["vm_pu"].to_numpy()
    return Screen(True, new_over, worse, new_v, float(load.max(initial=0.0)), float(np.nanmin(vm)))
