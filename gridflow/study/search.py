"""Limit searches: the most datacenter MW the network takes, and the constraint that binds it.

:func:`bisect_limit` brackets the largest MW ``x`` in ``[0, requested]`` whose AC
solution is *clean* (solved, Q limits on, no attributed violation:
:mod:`gridflow.study.screening`) between a clean trial and a failing one, and
halves the bracket until it is narrower than ``tol_mw``. It assumes what
planners assume of a transfer limit: clean below it, not above. The trial just
above the limit names the **binding constraint**: its worst attributed
violation, or a *voltage collapse* when it does not solve (with Q limits on, the
nose of the P–V curve lies in the last bracket). ``x = 0`` is the reference
itself and counts as clean.

Trials already made (``known``) are reused, and judged again by ``judge`` when the
rules change (the sensitivity table re-attributes recorded violations under
another DFAX cut-off or loading tolerance without new solves); ``hints`` are
tried first (the previous step's limit), which usually closes the bracket in
two solves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from gridflow.study.acsolve import OperatingPoint
from gridflow.study.screening import Screen


@dataclass(frozen=True)
class Trial:
    """One AC solve of a search: the MW tried, its screen, the lowest voltage at the datacenter's buses
    (pu, NaN if it did not solve: the P–V curve), and the point (kept for warm starts and losses)."""

    mw: float
    screen: Screen
    vm_min_site_pu: float
    point: OperatingPoint | None = None

    @property
    def converged(self) -> bool:
        return self.screen.converged


@dataclass(frozen=True)
class LimitSearch:
    """Result of :func:`bisect_limit`: the limit (MW), the clean trial at it (None at 0 MW: the reference),
    the smallest failing trial (None when the requested MW is clean) and every trial, by MW."""

    requested_mw: float
    limit_mw: float
    at_limit: Trial | None
    above: Trial | None
    trials: tuple[Trial, ...]
    nose_mw: float | None = None  # collapse: the last MW that solved, before the stability margin
    margin_percent: float = 0.0

    @property
    def limited(self) -> bool:
        return self.above is not None

    def binding(self) -> str:
        """The binding constraint in words ("" when the requested MW is clean)."""
        if self.above is None:
            return ""
        if not self.above.converged:
            nose = self.nose_mw if self.nose_mw is not None else self.limit_mw
            margin = f"; limit {self.margin_percent:g} % below it" if self.margin_percent else ""
            return (f"voltage collapse (nose of the P–V curve at {nose:,.0f} MW, no solution at {self.above.mw:,.0f} "
                    f"MW, Q limits on{margin})")
        return self.above.screen.binding()


def bisect_limit(evaluate: Callable[[float], Trial], requested_mw: float, *, tol_mw: float,
                 judge: Callable[[Trial], bool] | None = None, known: Iterable[Trial] = (),
                 hints: Iterable[float] = ()) -> LimitSearch:
    """The largest clean MW in [0, ``requested_mw``] to within ``tol_mw`` (see the module docstring).

    ``evaluate(mw) -> Trial`` solves one point; ``judge(trial) -> bool`` says whether it is clean
    (default: ``trial.screen.clean``).
    """
    ok = judge or (lambda t: t.screen.clean)
    trials = {round(t.mw, 6): t for t in known}

    def get(x: float) -> Trial:
        key = round(float(x), 6)
        if key not in trials:
            trials[key] = evaluate(float(x))
        return trials[key]

    def done(lo, hi):
        srt = tuple(sorted(trials.values(), key=lambda t: t.mw))
        return LimitSearch(requested_mw, lo.mw if lo is not None else 0.0, lo, hi, srt)

    top = get(requested_mw)
    if ok(top):
        return done(top, None)
    # bracket from what is known: the smallest failing trial, the largest clean one below it
    def bracket():
        failing = [t for t in trials.values() if not ok(t) and t.mw > 0]
        hi = min(failing, key=lambda t: t.mw)
        clean = [t for t in trials.values() if ok(t) and 0 < t.mw < hi.mw]
        lo = max(clean, key=lambda t: t.mw) if clean else None
        return lo, hi

    lo, hi = bracket()
    for h in hints:
        lo_mw = lo.mw if lo is not None else 0.0
        if lo_mw + 1e-6 < h < hi.mw - 1e-6:
            get(h)
            lo, hi = bracket()
            lo_mw = lo.mw if lo is not None else 0.0
            # the limit has not moved: the hint and one tolerance above it settle it
            if lo is not None and abs(lo.mw - h) < 1e-6 and h + tol_mw < hi.mw:
                get(h + tol_mw)
                lo, hi = bracket()
    while hi.mw - (lo.mw if lo is not None else 0.0) > tol_mw:
        mid = 0.5 * ((lo.mw if lo is not None else 0.0) + hi.mw)
        get(mid)
        lo, hi = bracket()
    return done(lo, hi)


def with_stability_margin(search: LimitSearch, evaluate: Callable[[float], Trial], margin_percent: float,
                          judge: Callable[[Trial], bool] | None = None, tol_mw: float = 50.0) -> LimitSearch:
    """A collapse-bound limit moved ``margin_percent`` below the nose (the last MW that solved): planners keep
    a real-power margin to the nose of the P–V curve (WECC's voltage stability criterion: at least 5 % for
    the system intact). Other limits are returned as they are."""
    if search.above is None or search.above.converged or margin_percent <= 0 or search.limit_mw <= 0:
        return search
    ok = judge or (lambda t: t.screen.clean)
    nose = search.limit_mw
    x = nose * (1.0 - margin_percent / 100.0)
    t = next((k for k in search.trials if abs(k.mw - x) < 1e-6), None) or evaluate(x)
    trials = tuple(sorted({round(k.mw, 6): k for k in (*search.trials, t)}.values(), key=lambda k: k.mw))
    above = search.above
    if ok(t):
        at = t
    else:  # not clean below the nose either: the limit is lower still, and this trial names it
        below = bisect_limit(evaluate, x, tol_mw=tol_mw, judge=judge, known=[k for k in trials if k.mw <= x])
        at, above, trials = below.at_limit, below.above, tuple(sorted(
            {round(k.mw, 6): k for k in (*trials, *below.trials)}.values(), key=lambda k: k.mw))
        if above is not None and above.converged:  # bound by a violation, not by the collapse
            return LimitSearch(search.requested_mw, at.mw if at is not None else 0.0, at, above, trials)
    return LimitSearch(search.requested_mw, at.mw if at is not None else 0.0, at, above, trials, nose_mw=nose,
                       margin_percent=margin_percent)


def site_min_vm(point: OperatingPoint, buses: np.ndarray) -> float:
    """Lowest |V| at ``buses`` (pu), NaN when the point did not solve (the P–V curve's voltage)."""
    if not point.converged:
        return float("nan")
    return float(np.nanmin(point.result.bus["vm_pu"].to_numpy()[buses]))
