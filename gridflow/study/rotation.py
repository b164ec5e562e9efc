"""Rolling blackouts: turn a zone's MW load-shed obligation into a rotation of dark blocks.

A zone's sheddable load is split into *blocks* (in a study, its load buses stand
in for distribution feeders). Time is cut into equal *intervals* of
``interval_minutes`` (10 to 60 min). In every interval some blocks are *dark*
(their whole MW is shed; a block is never partly dark) so that the zone sheds at
least its obligation for that interval.

Cold-load pickup (optional, ``cold_load_pickup_percent`` = c): a block that
comes back (dark in the interval before, lit now) draws ``(1 + c/100)`` times
its MW in that interval, so the zone's *relief* in an interval is the MW of its
dark blocks minus the pickup of the blocks it restores. Every statement about
"shed" below is about that relief (with c = 0 they are the same).

Units: MW for power, minutes for the interval length, hours for outage
durations, and whole intervals for counts.

Priorities, highest first
-------------------------
1. **The obligation.** In every interval the relief (dark blocks' MW minus
   the cold-load pickup of the blocks restored) is at least the obligation.
   Only when the blocks allowed to be dark cannot reach it does the
   schedule fall short, and then every allowed block is dark and the difference
   is reported in ``shortfall_mw`` (never hidden).
2. **The cap.** A block dark for ``cap = floor(max_hours_dark * 60 /
   interval_minutes)`` intervals in a row is restored for at least one
   interval. When the blocks below the cap cannot meet the obligation
   (``on_cap_conflict``):

   * ``"extend"`` (default): the obligation wins. Every block below the cap
     is dark, and capped blocks are added by the rule below (fewest dark
     intervals first, then the shortest current outage, then the
     least-overshoot fit) until the obligation is met; each such (interval,
     block) is flagged in ``cap_violation``. Rationale: an operator's
     load-shed directive is mandatory, a rotation cap is a service goal, and a
     study should show that the cap cannot hold rather than pretend the grid
     got less relief.
   * ``"shortfall"``: the cap is hard; the missing MW are reported in
     ``shortfall_mw``.
3. **Fairness, then least overshoot.** See the rule below. Fairness comes
   first: with blocks of 100, 10, 10 and 10 MW and 10 MW to shed every hour,
   the 100 MW block takes its turn (90 MW overshoot, reported) once the three
   small blocks have had theirs.

The greedy rule (one interval)
------------------------------
Blocks below the cap are ranked by

a. cumulative dark intervals so far, fewest first ("least cumulative outage
   first"); blocks with the same count form a *tier*;
b. within a tier: lit longest first, then (among blocks dark right now) the
   shortest current outage first, so the rotation moves on and blocks rarely
   run into the cap;
c. then larger MW first, then input order.

With cold-load pickup, a block dark in the interval before counts
``(1 + c/100) x`` its MW toward the obligation (keeping it dark also avoids its
pickup) and the obligation grows by the pickup of every block dark before: the
same rule then covers the relief exactly.

Whole tiers are taken, lowest first, while they do not cover the obligation.
The obligation is then covered from the next tier alone, with the least
overshoot the greedy can find: walk the tier in rank order and take each block
that still fits under the remaining MW, then close the gap with the *smallest*
block left in the tier (ties by rank), then drop any block of that tier that
the closing block made unnecessary, largest first. Larger blocks therefore go
first only where they fit; the smallest sufficient block closes the gap,
which is what keeps the overshoot small.

Guarantees
----------
* ``relief_mw = shed_mw - pickup_mw >= obligation_mw`` in every interval unless
  ``shortfall_mw > 0`` there, and then every block allowed to be dark is dark.
* ``overshoot_mw`` (relief beyond the obligation) is 0 or smaller than the
  largest block dark in that interval (times ``1 + c/100``); blocks are never
  split.
* No block is dark more than ``cap`` intervals in a row outside the flagged
  ``cap_violation`` entries (none at all with ``on_cap_conflict="shortfall"``);
  flags occur only when the blocks below the cap cannot meet the obligation.
* Fairness, with or without the cap and under either policy: after every
  interval the dark-interval counts of any two blocks differ by at most one.
  A tier above the lowest is touched only when the whole lowest tier is dark,
  and the cap never hides part of the lowest tier while a higher tier is
  available: if a capped block X (dark >= cap intervals in a row) had one dark
  interval fewer than a block Y below the cap, then just before Y's current
  dark run (shorter than X's, possibly empty) began, X would have been two
  behind Y, which this rule had already ruled out. ``Schedule.fairness_spread``
  is the spread achieved.
* Zero obligation: nothing is dark.

Reporting: load shed of 100 MW or more (``OE417_THRESHOLD_MW``) is reportable on
the U.S. DOE form OE-417; a zone whose shed reaches it in any interval is
flagged ``oe417`` (a per-zone screen; the form applies per event and entity).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from gridflow.errors import ScenarioError

OE417_THRESHOLD_MW = 100.0
"""Load shed (MW) at or above which an event is reportable on DOE form OE-417."""

MIN_INTERVAL_MINUTES = 10.0
MAX_INTERVAL_MINUTES = 60.0

CapPolicy = Literal["extend", "shortfall"]
_POLICIES = ("extend", "shortfall")


@dataclass(frozen=True)
class Schedule:
    """A rotation for one zone. Arrays are indexed (interval, block) or by one of them.

    MW arrays are in MW, durations in hours unless named ``*_intervals``.
    """

    block_ids: tuple  # (nblocks,) labels
    block_mw: np.ndarray  # (nblocks,) MW each block sheds when dark
    obligation_mw: np.ndarray  # (T,) MW the zone must shed
    dark: np.ndarray  # (T, nblocks) bool
    shed_mw: np.ndarray  # (T,) MW shed (sum of dark blocks)
    shortfall_mw: np.ndarray  # (T,) MW of obligation not met, >= 0
    overshoot_mw: np.ndarray  # (T,) MW of relief beyond the obligation, >= 0
    cap_violation: np.ndarray  # (T, nblocks) bool: dark beyond the cap
    interval_minutes: float
    max_hours_dark: float
    cap_intervals: int | None  # None: no cap (max_hours_dark is infinite)
    on_cap_conflict: str  # "extend" or "shortfall"
    intervals_dark: np.ndarray  # (nblocks,) int
    hours_dark: np.ndarray  # (nblocks,) h
    longest_outage_intervals: np.ndarray  # (nblocks,) int, longest run of dark intervals
    longest_outage_hours: np.ndarray  # (nblocks,) h
    pickup_mw: np.ndarray | None = None  # (T,) cold-load pickup of the blocks restored in each interval, MW
    cold_load_pickup_percent: float = 0.0

    @property
    def relief_mw(self) -> np.ndarray:
        """(T,) MW: dark blocks' MW minus the cold-load pickup of the blocks restored."""
        return self.shed_mw - (0.0 if self.pickup_mw is None else self.pickup_mw)

    @property
    def n_intervals(self) -> int:
        return self.dark.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.dark.shape[1]

    @property
    def feasible(self) -> bool:
        """True when every interval met its obligation without breaking the cap."""
        return not (self.shortfall_mw.any() or self.cap_violation.any())

    @property
    def fairness_spread(self) -> int:
        """Most minus fewest dark intervals over the blocks (0 without blocks)."""
        return int(self.intervals_dark.max() - self.intervals_dark.min()) if self.n_blocks else 0

    @property
    def oe417(self) -> bool:
        """True if the zone sheds ``OE417_THRESHOLD_MW`` (100 MW) or more in any interval."""
        return bool(self.n_intervals and self.shed_mw.max() >= OE417_THRESHOLD_MW * (1 - 1e-12))

    def block_stats(self) -> pd.DataFrame:
        """One row per block: ``block, mw, intervals_dark, hours_dark, longest_outage_hours, cap_violations``."""
        return pd.DataFrame(
            {
                "block": list(self.block_ids),
                "mw": self.block_mw,
                "intervals_dark": self.intervals_dark,
                "hours_dark": self.hours_dark,
                "longest_outage_hours": self.longest_outage_hours,
                "cap_violations": self.cap_violation.sum(axis=0),
            }
        )


# ----------------------------------------------------------------------------------------------
# validation


def _check_interval(interval_minutes) -> float:
    if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, int | float | np.number):
        raise ScenarioError(f"interval_minutes must be a number of minutes (got {interval_minutes!r})")
    m = float(interval_minutes)
    if not (MIN_INTERVAL_MINUTES <= m <= MAX_INTERVAL_MINUTES):  # also catches NaN
        raise ScenarioError(
            f"interval_minutes must be between {MIN_INTERVAL_MINUTES:g} and {MAX_INTERVAL_MINUTES:g} (got {m:g})"
        )
    return m


def _check_cap(max_hours_dark, interval_minutes: float) -> int | None:
    if isinstance(max_hours_dark, bool) or not isinstance(max_hours_dark, int | float | np.number):
        raise ScenarioError(f"max_hours_dark must be a number of hours (got {max_hours_dark!r})")
    h = float(max_hours_dark)
    if math.isnan(h):
        raise ScenarioError("max_hours_dark is NaN")
    if h * 60.0 < interval_minutes:
        raise ScenarioError(
            f"max_hours_dark ({h:g} h) is shorter than one interval ({interval_minutes:g} min); "
            "a dark block could never be dark at all"
        )
    if math.isinf(h):
        return None
    # a tiny tolerance so that e.g. 0.5 h / 10 min is 3 intervals, not 2.9999
    return int(math.floor(h * 60.0 / interval_minutes + 1e-9))


def _check_pickup(percent) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float | np.number) or not (0 <= percent <= 200):
        raise ScenarioError(f"cold_load_pickup_percent must be a number from 0 to 200 (got {percent!r})")
    return float(percent)


def _mw_vector(values, name: str, *, positive: bool) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ScenarioError(f"{name} must be numbers (MW)") from None
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise ScenarioError(f"{name} must be one-dimensional (got shape {a.shape})")
    bad = np.flatnonzero(np.isnan(a))
    if bad.size:
        raise ScenarioError(f"{name}[{bad[0]}] is NaN")
    bad = np.flatnonzero(np.isinf(a))
    if bad.size:
        raise ScenarioError(f"{name}[{bad[0]}] is infinite")
    bad = np.flatnonzero(a < 0)
    if bad.size:
        raise ScenarioError(f"{name}[{bad[0]}] is negative ({a[bad[0]]:g} MW)")
    if positive:
        bad = np.flatnonzero(a == 0)
        if bad.size:
            raise ScenarioError(f"{name}[{bad[0]}] is 0 MW; a block must shed some load")
    return a


# ----------------------------------------------------------------------------------------------
# the greedy


def _fit(group: np.ndarray, mw: np.ndarray, need: float, tol: float) -> list[int]:
    """Blocks of one tier (in rank order) covering ``need`` MW with little overshoot; the tier must suffice."""
    picked: list[int] = []
    rest: list[int] = []
    s = 0.0
    for i in group:
        if s >= need - tol:
            break
        if s + mw[i] <= need + tol:
            picked.append(int(i))
            s += mw[i]
        else:
            rest.append(int(i))
    if s >= need - tol:
        return picked
    # every block in `rest` is larger than what is still missing; close with the smallest (first by rank)
    closing = min(rest, key=lambda i: mw[i])
    s += mw[closing]
    for i in sorted(picked, key=lambda i: -mw[i]):  # drop what the closing block made unnecessary
        if s - mw[i] >= need - tol:
            picked.remove(i)
            s -= mw[i]
    picked.append(closing)
    return picked


def _cover(cand: np.ndarray, tier: np.ndarray, mw: np.ndarray, need: float, tol: float) -> list[int]:
    """Whole tiers while they fall short, then a fit within the next; all of ``cand`` if even that is short.

    ``cand`` is ranked (tier ascending, then rank within the tier); ``tier`` aligns with it.
    """
    chosen: list[int] = []
    if need <= tol:
        return chosen
    got = 0.0
    start, n = 0, len(cand)
    while start < n:
        end = start + 1
        while end < n and tier[end] == tier[start]:
            end += 1
        group = cand[start:end]
        gsum = float(mw[group].sum())
        if got + gsum < need - tol:
            chosen.extend(int(i) for i in group)
            got += gsum
            start = end
            continue
        chosen.extend(_fit(group, mw, need - got, tol))
        return chosen
    return chosen


def _longest_runs(dark: np.ndarray) -> np.ndarray:
    """Longest run of consecutive True per column of a (T, n) bool array."""
    T, n = dark.shape
    run = np.zeros(n, dtype=np.int64)
    best = np.zeros(n, dtype=np.int64)
    for t in range(T):
        run = np.where(dark[t], run + 1, 0)
        np.maximum(best, run, out=best)
    return best


def rotate(
    block_mw,
    obligation_mw,
    *,
    interval_minutes: float = 60,
    max_hours_dark: float = 2.0,
    block_ids: Sequence[Hashable] | None = None,
    on_cap_conflict: CapPolicy = "extend",
    cold_load_pickup_percent: float = 0.0,
) -> Schedule:
    """Rolling-blackout schedule for ONE zone.

    Parameters
    ----------
    block_mw : (nblocks,) array, MW
        What each block sheds when dark; every entry > 0.
    obligation_mw : (T,) array, MW
        What the zone must shed in each interval; >= 0.
    interval_minutes : minutes, 10 to 60
        Length of one interval.
    max_hours_dark : hours
        Longest continuous outage of a block; at least one interval. The cap in
        intervals is ``floor(max_hours_dark * 60 / interval_minutes)``;
        ``math.inf`` for no cap.
    block_ids : labels, optional
        One per block (default 0..nblocks-1); must be unique.
    on_cap_conflict : "extend" or "shortfall"
        What gives when the blocks below the cap cannot meet an interval's
        obligation: the cap (``"extend"``, flagged in ``cap_violation``) or the
        obligation (``"shortfall"``, reported in ``shortfall_mw``). See the
        module docstring for the selection rule and its guarantees.
    cold_load_pickup_percent : percent, >= 0
        Extra load of a block in the interval it comes back (default 0: none).

    Raises
    ------
    ScenarioError
        Negative, zero (blocks), NaN or infinite MW; an interval outside 10-60
        minutes; ``max_hours_dark`` shorter than one interval; bad ``block_ids``
        or ``on_cap_conflict``.
    """
    minutes = _check_interval(interval_minutes)
    cap = _check_cap(max_hours_dark, minutes)
    if on_cap_conflict not in _POLICIES:
        raise ScenarioError(f"on_cap_conflict must be 'extend' or 'shortfall' (got {on_cap_conflict!r})")
    mw = _mw_vector(block_mw, "block_mw", positive=True)
    need = _mw_vector(obligation_mw, "obligation_mw", positive=False)
    n, T = mw.size, need.size
    if block_ids is None:
        ids = tuple(range(n))
    else:
        ids = tuple(block_ids)
        if len(ids) != n:
            raise ScenarioError(f"block_ids has {len(ids)} labels for {n} blocks")
        if len(set(ids)) != n:
            dup = next(b for b in ids if ids.count(b) > 1)
            raise ScenarioError(f"block_ids: block {dup!r} appears more than once")

    clp = _check_pickup(cold_load_pickup_percent) / 100.0
    tol = 1e-9 * max(1.0, float(mw.sum()) * (1 + clp), float(need.max()) if T else 0.0)
    dark = np.zeros((T, n), dtype=bool)
    violation = np.zeros((T, n), dtype=bool)
    count = np.zeros(n, dtype=np.int64)  # dark intervals so far
    run = np.zeros(n, dtype=np.int64)  # > 0: dark that many intervals in a row; < 0: lit that many
    pickup = np.zeros(T)
    for t in range(T):
        capped = run >= cap if cap is not None else np.zeros(n, dtype=bool)
        was_dark = run > 0
        # cold-load pickup: keeping a block dark that was dark also avoids its pickup
        eff = mw * np.where(was_dark, 1.0 + clp, 1.0)
        need_t = need[t] + clp * float(mw[was_dark].sum()) if need[t] > tol else 0.0
        cand = np.flatnonzero(~capped)
        cand = cand[np.lexsort((-mw[cand], run[cand], count[cand]))]
        chosen = _cover(cand, count[cand], eff, need_t, tol)
        got = float(eff[chosen].sum())
        if got < need_t - tol and on_cap_conflict == "extend" and capped.any():
            # fewest dark intervals first (keeps the fairness guarantee), then shortest current outage
            over = np.flatnonzero(capped)
            over = over[np.lexsort((-mw[over], run[over], count[over]))]
            tier = count[over] * (T + 1) + run[over]
            extra = _cover(over, tier, eff, need_t - got, tol)
            violation[t, extra] = True
            chosen.extend(extra)
        dark[t, chosen] = True
        pickup[t] = clp * float(mw[was_dark & ~dark[t]].sum())
        count += dark[t]
        run = np.where(dark[t], np.maximum(run, 0) + 1, np.minimum(run, 0) - 1)

    shed = dark.astype(float) @ mw if n else np.zeros(T)
    relief = shed - pickup
    shortfall = np.maximum(need - relief, 0.0)
    shortfall[(shortfall <= tol) | (need <= tol)] = 0.0  # zero obligation: nothing dark, nothing owed
    overshoot = np.maximum(relief - need, 0.0)
    overshoot[overshoot <= tol] = 0.0
    hours_per = minutes / 60.0
    intervals_dark = dark.sum(axis=0).astype(np.int64)
    longest = _longest_runs(dark)
    return Schedule(
        block_ids=ids,
        block_mw=mw,
        obligation_mw=need,
        dark=dark,
        shed_mw=shed,
        shortfall_mw=shortfall,
        overshoot_mw=overshoot,
        cap_violation=violation,
        interval_minutes=minutes,
        max_hours_dark=float(max_hours_dark),
        cap_intervals=cap,
        on_cap_conflict=on_cap_conflict,
        intervals_dark=intervals_dark,
        hours_dark=intervals_dark * hours_per,
        longest_outage_intervals=longest,
        longest_outage_hours=longest * hours_per,
        pickup_mw=pickup,
        cold_load_pickup_percent=clp * 100.0,
    )


# ----------------------------------------------------------------------------------------------
# many zones


def _obligation_table(obligations, zones: list) -> tuple[pd.Index, dict]:
    """(interval labels, zone -> (T,) MW) from a DataFrame (index: intervals, columns: zones) or a dict."""
    if isinstance(obligations, pd.DataFrame):
        if obligations.columns.has_duplicates:
            dup = obligations.columns[obligations.columns.duplicated()][0]
            raise ScenarioError(f"obligations: zone {dup!r} appears in more than one column")
        labels = obligations.index
        table = {z: obligations[z].to_numpy() for z in obligations.columns}
    elif isinstance(obligations, Mapping):
        table = dict(obligations)
        lengths = {z: np.size(v) for z, v in table.items()}
        if lengths:
            z0, n0 = next(iter(lengths.items()))
            for z, nz in lengths.items():
                if nz != n0:
                    raise ScenarioError(f"obligations: zone {z0!r} has {n0} intervals but zone {z!r} has {nz}")
        labels = pd.RangeIndex(next(iter(lengths.values()), 0))
    else:
        raise ScenarioError("obligations must be a DataFrame (intervals x zones) or a dict zone -> (T,) MW")
    known = set(zones)
    for z in table:
        if z not in known:
            raise ScenarioError(f"obligations: zone {z!r} has no blocks")
    out = {}
    for z in zones:
        v = table.get(z)
        out[z] = np.zeros(len(labels)) if v is None else _mw_vector(v, f"obligation of zone {z!r}", positive=False)
    return labels, out


def rotate_zones(
    blocks: pd.DataFrame,
    obligations: pd.DataFrame | Mapping,
    *,
    interval_minutes: float = 60,
    max_hours_dark: float = 2.0,
    on_cap_conflict: CapPolicy = "extend",
    cold_load_pickup_percent: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rotate every zone with :func:`rotate`.

    Parameters
    ----------
    blocks : DataFrame with columns ``zone, block, mw``
        One row per block; ``mw`` > 0 (MW shed when dark); block labels unique
        within a zone.
    obligations : DataFrame (index: intervals, columns: zones) or dict zone -> (T,) MW
        MW each zone must shed per interval. Zones with blocks but no
        obligation get zero; an obligation for a zone without blocks is an
        error. Interval labels are the DataFrame's index (0..T-1 for a dict).
    interval_minutes, max_hours_dark, on_cap_conflict, cold_load_pickup_percent
        As for :func:`rotate`.

    Returns
    -------
    schedule_df
        ``interval, block, zone, dark``: one row per interval and block.
    block_stats_df
        ``zone, block, mw, intervals_dark, hours_dark, longest_outage_hours, cap_violations``
        (MW, count, h, h, count).
    zone_stats_df
        ``zone, obligation_mw_max, shed_mw_max, blocks, hours_dark_max, oe417`` (MW, MW, count,
        h, bool: shed >= 100 MW in some interval), then ``shortfall_mw_max, overshoot_mw_max,
        longest_outage_hours_max, cap_violations, minutes_dark_max, minutes_dark_mean, pickup_mw_max``
        (MW, MW, h, count, min, min, MW; minutes dark per block over the schedule).
    """
    if not isinstance(blocks, pd.DataFrame):
        raise ScenarioError("blocks must be a DataFrame with columns zone, block, mw")
    for col in ("zone", "block", "mw"):
        if col not in blocks.columns:
            raise ScenarioError(f"blocks is missing the column {col!r} (needs zone, block, mw)")
    if blocks["zone"].isna().any():
        raise ScenarioError("blocks: a row has no zone")
    zones = list(pd.unique(blocks["zone"]))
    labels, need = _obligation_table(obligations, zones)

    sched_parts, block_parts, zone_rows = [], [], []
    for z in zones:
        rows = blocks[blocks["zone"] == z]
        s = rotate(
            _zone_mw(rows, z),
            need[z],
            interval_minutes=interval_minutes,
            max_hours_dark=max_hours_dark,
            block_ids=_zone_ids(rows["block"], z),
            on_cap_conflict=on_cap_conflict,
            cold_load_pickup_percent=cold_load_pickup_percent,
        )
        T, n = s.dark.shape
        sched_parts.append(
            pd.DataFrame(
                {
                    "interval": labels.repeat(n),
                    "block": list(s.block_ids) * T,
                    "zone": z,
                    "dark": s.dark.ravel(),
                }
            )
        )
        bs = s.block_stats()
        bs.insert(0, "zone", z)
        block_parts.append(bs)
        zone_rows.append(
            {
                "zone": z,
                "obligation_mw_max": float(s.obligation_mw.max()) if T else 0.0,
                "shed_mw_max": float(s.shed_mw.max()) if T else 0.0,
                "blocks": n,
                "hours_dark_max": float(s.hours_dark.max()) if n else 0.0,
                "oe417": s.oe417,
                "shortfall_mw_max": float(s.shortfall_mw.max()) if T else 0.0,
                "overshoot_mw_max": float(s.overshoot_mw.max()) if T else 0.0,
                "longest_outage_hours_max": float(s.longest_outage_hours.max()) if n else 0.0,
                "cap_violations": int(s.cap_violation.sum()),
                "minutes_dark_max": float(s.hours_dark.max() * 60) if n else 0.0,
                "minutes_dark_mean": float(s.hours_dark.mean() * 60) if n else 0.0,
                "pickup_mw_max": float(s.pickup_mw.max()) if T else 0.0,
            }
        )
    sched_cols = ["interval", "block", "zone", "dark"]
    block_cols = ["zone", "block", "mw", "intervals_dark", "hours_dark", "longest_outage_hours", "cap_violations"]
    zone_cols = [
        "zone", "obligation_mw_max", "shed_mw_max", "blocks", "hours_dark_max", "oe417",
        "shortfall_mw_max", "overshoot_mw_max", "longest_outage_hours_max", "cap_violations",
        "minutes_dark_max", "minutes_dark_mean", "pickup_mw_max",
    ]  # fmt: skip
    schedule_df = (
        pd.concat(sched_parts, ignore_index=True)[sched_cols] if sched_parts else pd.DataFrame(columns=sched_cols)
    )
    block_df = (
        pd.concat(block_parts, ignore_index=True)[block_cols] if block_parts else pd.DataFrame(columns=block_cols)
    )
    return schedule_df, block_df, pd.DataFrame(zone_rows, columns=zone_cols)


def _zone_mw(rows: pd.DataFrame, zone) -> np.ndarray:
    """The zone's block MW, checked here so that an error names the zone and the block."""
    mw = pd.to_numeric(rows["mw"], errors="coerce").to_numpy(dtype=float)
    raw = rows["mw"].to_numpy()
    for k in range(mw.size):
        what = None
        if math.isnan(mw[k]):
            what = "NaN" if pd.isna(raw[k]) else f"not a number ({raw[k]!r})"
        elif math.isinf(mw[k]):
            what = "infinite"
        elif mw[k] < 0:
            what = f"negative ({mw[k]:g} MW)"
        elif mw[k] == 0:
            what = "0 MW; a block must shed some load"
        if what is not None:
            raise ScenarioError(f"blocks: zone {zone!r} block {rows['block'].tolist()[k]!r}: mw is {what}")
    return mw


def _zone_ids(ids: pd.Series, zone) -> list:
    labels = ids.tolist()
    if ids.isna().any():
        raise ScenarioError(f"blocks: zone {zone!r} has a block without a label")
    dup = ids[ids.duplicated()].tolist()
    if dup:
        raise ScenarioError(f"blocks: zone {zone!r} lists block {dup[0]!r} more than once")
    return labels
