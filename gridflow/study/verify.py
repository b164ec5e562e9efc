"""AC verification of a step: every interval's pattern of dark blocks solved in AC and screened.

An allocation is *verified* only if every interval converges with nothing new over its limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.study import tables
from gridflow.study.allocation import Allocation
from gridflow.study.demand import served_case
from gridflow.study.screening import Screen
from gridflow.study.search import StepContext


@dataclass(frozen=True)
class Verification:
    """Per interval (T): the screen of its AC solution; and the tables of what was served."""

    intervals: tuple[Screen, ...]
    shed_by_bus: pd.DataFrame
    bus_demand: pd.DataFrame
    gen_dispatch: pd.DataFrame
    vm_after_pu: np.ndarray | None  # (nb,) voltages of the first interval that solved

    @property
    def verified(self) -> bool:
        return all(s.clean for s in self.intervals)

    def failures(self) -> list[str]:
        return [f"interval {t}: {s.describe()}" for t, s in enumerate(self.intervals) if not s.clean]


def dark_mw_by_interval(nb: int, T: int, schedule: pd.DataFrame, blocks: pd.DataFrame) -> np.ndarray:
    """MW of firm load dark at each bus in each interval, (T, nb)."""
    dark = np.zeros((T, nb))
    if len(schedule):
        bus_of = blocks.set_index("block")["bus_index"]
        mw_of = blocks.set_index("block")["mw"]
        on = schedule[schedule["dark"].astype(bool)]
        np.add.at(dark, (on["interval"].to_numpy(dtype=np.int64), bus_of[on["block"]].to_numpy()),
                  mw_of[on["block"]].to_numpy())
    return dark


def verify_intervals(ctx: StepContext, a: Allocation, dark_mw: np.ndarray) -> Verification:
    """Solve every interval t with the flexible and backup shed of ``a`` and the firm load dark in
    ``dark_mw[t]`` (MW per bus), generators re-dispatched, and screen it against the base case."""
    screens, rows_shed, rows_demand, rows_gen = [], [], [], []
    vm_after = None
    for t in range(dark_mw.shape[0]):
        served = served_case(ctx.case, ctx.loads, a, dark_mw[t])
        pt = ctx.solve(a, search=False, dark_mw=dark_mw[t])
        screens.append(ctx.screen(pt))
        if vm_after is None and pt.converged:
            vm_after = pt.result.bus["vm_pu"].to_numpy()
        rows_shed.append(tables.shed_rows(t, ctx.case, ctx.loads, a, dark_mw[t]))
        rows_demand.append(tables.demand_rows(t, served))
        rows_gen.append(tables.gen_rows(t, pt))
    return Verification(intervals=tuple(screens), shed_by_bus=pd.concat(rows_shed, ignore_index=True),
                        bus_demand=pd.concat(rows_demand, ignore_index=True),
                        gen_dispatch=pd.concat(rows_gen, ignore_index=True), vm_after_pu=vm_after)
