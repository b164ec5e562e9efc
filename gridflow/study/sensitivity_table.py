"""How the headline moves: the binding datacenter's N-0 limit under other attribution rules and placements.

A reviewer asks what an answer depends on. For the study's last step, the first
datacenter whose limit binds is searched again (the datacenters before it at
their limits, as in the study) with

* ``dfax_cutoff_percent`` at 3 % and 10 % (the study's default is 5 %),
* ``loading_tolerance_percent`` at 0 and 3 points (default 1),
* its MW spread over every load bus of its zone in proportion to their load
  instead of its own placement.

The attribution variants judge the trials already made again from their recorded
violations (:func:`gridflow.study.screening.rejudge`) and solve only the new
points their bisection needs; the placement variant is a new search. All of them
stop at twice the study's ``limit_tolerance_mw`` (at least 100 MW).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from gridflow.study.datacenters import place_one
from gridflow.study.screening import rejudge
from gridflow.study.search import Trial, bisect_limit, with_stability_margin

COLUMNS = ["variant", "datacenter", "limit_mw", "change_mw", "binding", "ac_solves"]


def _judged(trial: Trial, attributed) -> Trial:
    s = trial.screen
    if not s.converged:
        return trial
    v = s.violations.assign(attributed=attributed.to_numpy())
    return replace(trial, screen=replace(s, violations=v))


def sensitivity_table(setup, step, *, progress=lambda _m: None) -> pd.DataFrame:
    """One row per variant (:data:`COLUMNS`); empty when no datacenter's limit binds in ``step``."""
    from gridflow.study.run import limit_evaluator

    opts = setup.opts
    lim = next((x for x in step.limits if x.search.limited), None)
    if lim is None:
        return pd.DataFrame(columns=COLUMNS)
    i = next(k for k, x in enumerate(step.limits) if x is lim)
    tol = max(2 * opts.limit_tolerance_mw, 100.0)
    n0_mw = lim.deliverable_mw_n0  # the variants are N-0 searches: compared with the study's N-0 limit
    progress(f"sensitivity of {lim.name}'s N-0 limit ({n0_mw:,.0f} MW at {step.datacenter_mw:,.0f} MW):")
    rows = [("as studied", lim.name, n0_mw, 0.0, lim.search.binding(), len(lim.search.trials))]
    known = lim.search.trials
    for label, cutoff, tolp in ((f"DFAX cut-off 3 % (study: {opts.dfax_cutoff_percent:g} %)", 3.0,
                                 opts.loading_tolerance_percent),
                                (f"DFAX cut-off 10 % (study: {opts.dfax_cutoff_percent:g} %)", 10.0,
                                 opts.loading_tolerance_percent),
                                (f"loading tolerance 0 points (study: {opts.loading_tolerance_percent:g})",
                                 opts.dfax_cutoff_percent, 0.0),
                                (f"loading tolerance 3 points (study: {opts.loading_tolerance_percent:g})",
                                 opts.dfax_cutoff_percent, 3.0)):
        if cutoff == opts.dfax_cutoff_percent and tolp == opts.loading_tolerance_percent:
            continue
        monitor = replace(setup.monitor, dfax_cutoff_percent=cutoff, loading_tolerance_percent=tolp)
        evaluate = limit_evaluator(setup, i, lim.earlier_mw, lim.reference, lim.reference_table, monitor=monitor)
        rejudged = [_judged(t, rejudge(t.screen.violations, dfax_cutoff_percent=cutoff,
                                       loading_tolerance_percent=tolp)) if t.converged else t for t in known]
        n0 = len(rejudged)
        res = bisect_limit(evaluate, lim.requested_mw, tol_mw=tol, known=rejudged, hints=())
        res = with_stability_margin(res, evaluate, opts.voltage_stability_margin_percent, tol_mw=tol)
        rows.append((label, lim.name, res.limit_mw, res.limit_mw - n0_mw, res.binding(), len(res.trials) - n0))
        progress(f"  {label}: {res.limit_mw:,.0f} MW [{len(res.trials) - n0} new AC solves]")
    pl = place_one(lim.placement.datacenter, setup.case, setup.zones, rule="all-load")
    placements = list(setup.placements)
    placements[i] = pl
    evaluate = limit_evaluator(setup, i, lim.earlier_mw, lim.reference, lim.reference_table, placements=placements)
    res = bisect_limit(evaluate, lim.requested_mw, tol_mw=tol, hints=(n0_mw,))
    res = with_stability_margin(res, evaluate, opts.voltage_stability_margin_percent, tol_mw=tol)
    label = f"placement: every load bus of its zone(s) ({len(pl.bus)} buses; study: {len(lim.placement.bus)})"
    rows.append((label, lim.name, res.limit_mw, res.limit_mw - n0_mw, res.binding(), len(res.trials)))
    progress(f"  {label}: {res.limit_mw:,.0f} MW [{len(res.trials)} AC solves]")
    return pd.DataFrame(rows, columns=COLUMNS)
