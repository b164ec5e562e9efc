"""The emergency ladder: what covers each interval's capacity shortfall, rung by rung, before firm load.

Operators climb a fixed ladder before they shed firm load (PJM Manual 13,
emergency procedures; NERC EEA levels): load management / demand response,
voltage reduction, emergency purchases, then manual load dump. The study adds
the datacenters' own flexibility (PJM's 2026 direction and Texas SB 6: large
loads curtailed or moved to their backup generation before firm customers):

========================  ===================================================  ==========================
rung                      MW per interval                                      limit over the day
========================  ===================================================  ==========================
demand response           ``demand_response_mw``                               none
voltage reduction         ``voltage_reduction_percent`` x footprint firm load  none
emergency import          ``emergency_import_mw``                              none
datacenter flexible       ``flexible_share`` x each site's served MW           ``max_curtail_hours``
datacenter backup         ``backup_share`` x each site's served MW             ``backup_max_hours``
large-load curtailment    the rest of an eligible site (large-load-first only)  none
firm load                 what is left: the zones' obligations                  (rotation: ``max_hours_dark``)
========================  ===================================================  ==========================

The order of the rungs is the policy's (:mod:`gridflow.study.policy`). A rung
with an hour limit is an energy budget (``hours x its MW``, counted in
full-output-equivalent hours: MWh / MW): it is spent where the need is highest
(:func:`shave`: the need left after it is levelled down to one common level,
never below zero), so the budget lowers the evening peak instead of running out
before it.

Units: MW per interval, hours, MWh; arrays (T,) over the intervals studied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.errors import ScenarioError

#: rung labels as ladder.csv writes them (level)
LEVELS = {
    "demand_response": "demand response",
    "voltage_reduction": "voltage reduction",
    "emergency_import": "emergency import",
    "dc_flexible": "datacenter flexible",
    "dc_backup": "datacenter backup",
    "dc_curtailed": "large-load curtailment",
    "firm": "firm load",
}


@dataclass(frozen=True)
class Rung:
    """One rung: its kind (a key of :data:`LEVELS`), MW it can give in each interval (T,), its energy
    budget (MWh; None = no limit) and, for datacenter rungs, the datacenter group it draws on."""

    kind: str
    cap_mw: np.ndarray
    energy_mwh: float | None = None
    group: int | None = None

    @property
    def level(self) -> str:
        return LEVELS[self.kind]


def shave(need_mw: np.ndarray, cap_mw: np.ndarray, energy_mwh: float | None, dt_h: float) -> np.ndarray:
    """MW (T,) a rung gives: ``min(cap, need)`` in every interval, or, when that takes more than
    ``energy_mwh``, ``min(cap, max(need - L, 0))`` with the one level L at which it takes exactly
    ``energy_mwh`` (the highest needs are shaved first)."""
    need = np.maximum(np.asarray(need_mw, float), 0.0)
    cap = np.maximum(np.asarray(cap_mw, float), 0.0)
    full = np.minimum(cap, need)
    if energy_mwh is None or full.sum() * dt_h <= energy_mwh + 1e-9:
        return full
    if energy_mwh <= 0:
        return np.zeros_like(need)
    lo, hi = 0.0, float(need.max())  # used(L) decreases in L: used(lo) > budget >= used(hi) = 0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        used = np.minimum(cap, np.maximum(need - mid, 0.0)).sum() * dt_h
        lo, hi = (mid, hi) if used > energy_mwh else (lo, mid)
        if hi - lo < 1e-9 * max(1.0, hi):
            break
    return np.minimum(cap, np.maximum(need - hi, 0.0))


@dataclass(frozen=True)
class Climb:
    """The ladder climbed over the day: MW of every rung in every interval, and the firm shed left."""

    rungs: tuple[Rung, ...]
    used_mw: np.ndarray  # (R, T)
    need_mw: np.ndarray  # (T,) shortfall before the ladder (<= 0: none)
    firm_mw: np.ndarray  # (T,) what is left for firm load (>= 0)

    def by_kind(self, kind: str, group: int | None = None) -> np.ndarray:
        """MW (T,) of every rung of this kind (and group, if given)."""
        rows = [k for k, r in enumerate(self.rungs) if r.kind == kind and (group is None or r.group == group)]
        return self.used_mw[rows].sum(axis=0) if rows else np.zeros(self.used_mw.shape[1])

    def table(self, labels) -> pd.DataFrame:
        """``interval, level, mw`` (ladder.csv), rungs in order then firm load; rungs of one level (several
        datacenter groups) added up; only levels that give something."""
        rows = []
        levels = list(dict.fromkeys(r.level for r in self.rungs))
        for t, lab in enumerate(labels):
            for lev in levels:
                mw = sum(self.used_mw[k, t] for k, r in enumerate(self.rungs) if r.level == lev)
                rows.append((lab, lev, float(mw)))
            rows.append((lab, LEVELS["firm"], float(self.firm_mw[t])))
        df = pd.DataFrame(rows, columns=["interval", "level", "mw"])
        used = df.groupby("level", sort=False)["mw"].max()
        return df[df["level"].isin(used[used > 1e-6].index)].reset_index(drop=True)


def climb(need_mw, rungs, dt_h: float) -> Climb:
    """Climb ``rungs`` in order for the shortfall ``need_mw`` (T,) of each interval (MW; <= 0: none)."""
    need = np.asarray(need_mw, float)
    if need.ndim != 1 or not np.isfinite(need).all():
        raise ScenarioError("ladder: the shortfall must be finite MW per interval")
    left = np.maximum(need, 0.0)
    used = np.zeros((len(rungs), len(need)))
    for k, r in enumerate(rungs):
        if np.shape(r.cap_mw) != need.shape:
            raise ScenarioError(f"ladder: rung {r.level!r} has {np.size(r.cap_mw)} intervals, the day {len(need)}")
        used[k] = shave(left, r.cap_mw, r.energy_mwh, dt_h)
        left = np.maximum(left - used[k], 0.0)
    return Climb(rungs=tuple(rungs), used_mw=used, need_mw=need, firm_mw=left)
