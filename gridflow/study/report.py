"""Study outputs: the console report, the files and the plots.

Files written to the output folder (``step`` = the datacenter total of the step):

* ``summary.json`` — the study's modelling choices and, per step, the headline
  (served / curtailed / backup datacenter MW, firm shed), each datacenter's N-0
  limit and binding constraint, the ladder, the zones' obligations, the AC
  verification per interval, the OE-417 flag, notes; the sensitivity table;
* ``zones.csv`` — step, zone, state, rto, load, datacenter MW requested and
  served, shed by kind at the worst interval, % shed, share, obligation, firm shed
  (MW, MWh), blocks, minutes dark per block (max, mean), unserved MW, OE-417;
* ``ladder.csv`` — step, interval, level, mw;
* ``schedule.csv`` — step, interval, block, zone, dark (zones with an obligation);
* ``shed_by_bus.csv`` — step, interval, bus, p_shed_mw, q_shed_mvar, kind
  (``not_deliverable``, ``flexible``, ``backup``, ``curtailed``, ``firm``,
  ``cold_load_pickup``);
* ``bus_demand.csv`` — step, interval, bus, p_mw, q_mvar: demand served;
* ``gen_dispatch.csv`` — step, interval, gen (0-based row), p_mw, q_mvar;
* ``violations.csv`` — every violation of the verified intervals and of the
  trial above each limit, attributed or not (:data:`gridflow.study.tables.VIOLATIONS_COLUMNS`);
* ``limits.csv``, ``pv_curve.csv`` (every limit-search trial), ``pv_sweep.csv``
  (the P–V curve of the first datacenter), ``sensitivity.csv``;
* ``hosting_by_bus.csv`` (``hosting_map = true``) — bus, name, kv, zone,
  limit_mw_n0, limit_mw_n1, binding, binding_contingency: each candidate bus alone;
* plots: ``firm_shed_heatmap.png`` (zone x interval), ``ladder.png``,
  ``shed_by_zone.png``, ``pv_curve.png``, ``hosting_map.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gridflow.errors import GridflowError
from gridflow.study import tables
from gridflow.study.ladder import LEVELS
from gridflow.study.run import StepResult, StudyResult
from gridflow.study.scenario import options_table


def _mw(x) -> str:
    return f"{x:,.0f}"


def study_intro(study: StudyResult) -> str:
    su = study.setup
    o = su.opts
    lines = [f"{study.scenario.name}: {su.case.name}, {su.case.nb:,} buses; {su.footprint.describe()}"
             + (f" ({o.unavailable_mw:,.0f} MW unavailable)" if o.unavailable_mw else ""),
             f"  day: {o.load_shape if isinstance(o.load_shape, str) else 'given'} load shape, {su.day.T} intervals of "
             f"{su.day.interval_minutes} min from {su.day.label(0)} (peak {su.day.label(su.peak)}); reserve "
             f"{_mw(o.reserve_mw)} MW; policy {o.policy}",
             f"  physics: AC, generator Q limits {'ON' if o.q_limits else 'OFF (not a planning answer)'}; only "
             f"{su.footprint.name}'s units respond (by headroom), interchange fixed, emergency import up to "
             f"{_mw(o.emergency_import_mw)} MW; {_n1_line(su)}"
             + (f"; angle reference at bus {int(su.case.bus.number[su.reference_bus])} (the footprint's most Q "
                "margin)" if su.reference_bus is not None else ""),
             f"  attribution: branches >= {o.monitored_kv_min:g} kV or in the datacenters' zones, rating {o.rating} "
             f"({su.monitor.unrated_monitored:,} monitored branches unrated, not checked), DFAX >= "
             f"{o.dfax_cutoff_percent:g} %, pre-existing overloads worsened > {o.loading_tolerance_percent:g} points, "
             f"voltage in the footprint beyond limits by > {o.voltage_tolerance_pu:g} pu",
             f"  firm shed: zone shares from {_share_source(study)}; blocks of {o.block_mw:g} MW, "
             f"{_pct(o.critical_percent)} critical + {_pct(o.ufls_percent)} UFLS-armed never rotate; cap "
             f"{o.max_hours_dark:g} h dark in a row"]
    return "\n".join(lines)


def _n1_line(su) -> str:
    if su.contingencies is None:
        return "N-0 only (contingencies = \"none\")"
    c = su.n1.counts
    fb = f", {c['fallback']:,} branches without it judged on rate A" if c["fallback"] else ""
    return (f"N-1: {su.contingencies.source}, screened with LODFs and the screened ones solved in AC, "
            f"post-contingency rating {su.opts.emergency_rating}{fb}")


def _pct(v) -> str:
    return f"{v:g} %" if not isinstance(v, dict) else "per-zone %"


def _share_source(study: StudyResult) -> str:
    s = study.setup.opts.zone_shares
    if isinstance(s, str) and s == "":
        return f"the prior-peak table of {study.scenario.zones or 'the base case'}"
    return "the scenario" if isinstance(s, dict) else s


def step_headline(study: StudyResult, step: StepResult) -> str:
    """One line: served / curtailed / backup datacenter MW and firm shed at the worst interval."""
    h = tables.headline(study, step)
    lab = study.setup.day.label(h["interval"])
    firm = (f"firm load shed {_mw(h['firm_shed_mw'])} MW ({_mw(h['firm_shed_mwh'])} MWh over the day)"
            if h["firm_shed_mw_max"] > 1e-6 else "no firm load shed")
    oe = "OE-417 reportable (firm shed >= 100 MW)" if h["oe417"] else "not OE-417 reportable"
    ver = step.verification
    return (f"{_mw(step.datacenter_mw)} MW of datacenters requested, at {lab}: served {_mw(h['served_datacenter_mw'])}"
            f" MW, not deliverable {_mw(h['not_deliverable_mw'])}, curtailed {_mw(h['curtailed_datacenter_mw'])}, on "
            f"backup {_mw(h['backup_mw'])}; {firm}; {oe}; AC-verified {ver.n_ok}/{len(ver.checks)} intervals")


def step_report(study: StudyResult, step: StepResult, top: int = 12) -> str:
    su = study.setup
    lines = [step_headline(study, step)]
    for p in step.placements:
        lines.append(f"  placed {p}")
    for lim in step.limits:
        b = f"; binding: {lim.binding}" if lim.limited else ""
        n1 = "" if lim.n1 is None else f", N-1 {_mw(lim.n1.limit_mw)}"
        lines.append(f"  limit at {su.day.label(su.peak)}: {lim.name} {_mw(lim.deliverable_mw)} of "
                     f"{_mw(lim.requested_mw)} MW (N-0 {_mw(lim.deliverable_mw_n0)}{n1}){b}")
    c = step.climb
    used = [(lev, c.by_kind(k).max(initial=0)) for k, lev in LEVELS.items() if k != "firm"]
    used = [(lev, mw) for lev, mw in used if mw > 0.5]
    if c.need_mw.max(initial=0) > 0:
        lines.append(f"  ladder (max MW in an interval): shortfall {_mw(c.need_mw.max())}; "
                     + ", ".join(f"{lev} {_mw(mw)}" for lev, mw in used)
                     + f", firm load {_mw(c.firm_mw.max(initial=0))}")
    else:
        lines.append(f"  no capacity shortfall (margin {_mw(-c.need_mw.max())} MW at the tightest interval)")
    z = tables.zone_rows(study, step)
    z = z[z["obligation_mw_max"].fillna(0) > 1e-6]
    if len(z):
        lines.append(f"  {'zone':34s} {'share':>6s} {'oblig. MW':>9s} {'blocks':>6s} {'min dark/block max':>18s} "
                     f"{'mean':>5s} {'unserved MW':>11s}")
        for _, r in z.head(top).iterrows():
            lines.append(f"  {str(r['zone'])[:34]:34s} {r['share'] * 100:5.1f}% {r['obligation_mw_max']:9,.0f} "
                         f"{int(r['blocks']):6d} {r['minutes_dark_max']:18.0f} {r['minutes_dark_mean']:5.0f} "
                         f"{r['unserved_mw_max']:11,.0f}")
        if len(z) > top:
            lines.append(f"  ... {len(z) - top} more zones in zones.csv")
    for note in step.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def sensitivity_report(study: StudyResult) -> str:
    s = study.sensitivity
    if s is None or not len(s):
        return ("sensitivity: no datacenter's N-0 limit binds in the last step (the table varies the N-0 "
                "attribution rules; an N-1 limit is in limits.csv)")
    lines = [f"sensitivity of {s['datacenter'].iloc[0]}'s N-0 limit (last step):"]
    for _, r in s.iterrows():
        ch = "" if r["variant"] == "as studied" else f" ({r['change_mw']:+,.0f})"
        lines.append(f"  {r['variant']:58s} {r['limit_mw']:8,.0f} MW{ch:>10s}  {r['binding'] or 'requested MW clean'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ files

def summary_dict(study: StudyResult) -> dict:
    su = study.setup
    out = {"scenario": study.scenario.name, "case": su.case.name, "zones": su.zones.source,
           "footprint": su.footprint.name, "footprint_capacity_mw": su.footprint.capacity_mw,
           "q_limits": su.opts.q_limits, "contingencies": su.opts.contingencies,
           "intervals": su.day.labels, "interval_minutes": su.day.interval_minutes,
           "peak_interval": su.day.label(su.peak), "zone_shares": {k: float(v) for k, v in su.shares.items()},
           "options": {k: (v if not isinstance(v, tuple) else list(v)) for k, v in options_table(su.opts)},
           "oe417_definition": "firm load shed >= 100 MW in some interval (datacenter curtailment and backup "
                               "generation do not count)",
           "steps": [], "seconds": round(study.seconds, 1)}
    for st in study.steps:
        h = tables.headline(study, st)
        h["interval"] = su.day.label(h["interval"])
        z = tables.zone_rows(study, st)
        out["steps"].append({
            "datacenter_mw": st.datacenter_mw, **h,
            "deliverable_mw_n0": float(sum(x.deliverable_mw_n0 for x in st.limits)),
            "deliverable_mw_n1": (None if any(x.n1 is None for x in st.limits)
                                  else float(sum(x.n1.limit_mw for x in st.limits))),
            "binding": tables.binding(st),
            "limits": tables.limit_rows(st).drop(columns=["step_mw"]).to_dict("records"),
            "placements": list(st.placements),
            "ladder": st.climb.table(su.day.labels).to_dict("records"),
            "zones_oe417": [str(x) for x in z.loc[z["oe417"].astype(bool), "zone"]],
            "verified": st.verified,
            "verification": [{"interval": c.label, "result": c.describe(), "ok": c.ok,
                              "max_loading_percent": c.screen.max_loading_percent, "min_vm_pu": c.vm_min_pu,
                              "reserve_kept_mw": c.reserve_kept_mw, "losses_mw": c.losses_mw}
                             for c in st.verification.checks],
            "notes": list(st.notes), "seconds": round(st.seconds, 2),
        })
    if study.sensitivity is not None:
        out["sensitivity"] = study.sensitivity.to_dict("records")
    if study.hosting is not None:
        out["hosting_by_bus"] = study.hosting.to_dict("records")
    return out


def write_study(study: StudyResult, out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write the study's files into folder ``out`` (created if needed); returns them."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GridflowError(f"cannot create {out}: {e.strerror}") from None
    su = study.setup

    def stack(fn, name="step"):
        every = [fn(st).assign(**{name: st.datacenter_mw}) for st in study.steps]
        frames = [f for f in every if len(f)]
        if not frames:  # nothing to list: the header still says what the columns are
            cols = list(dict.fromkeys(c for f in every for c in f.columns))
            return pd.DataFrame(columns=[name] + [c for c in cols if c != name])
        df = pd.concat(frames, ignore_index=True)
        return df[[name] + [c for c in df.columns if c != name]]

    written = []
    p = out / "summary.json"
    p.write_text(json.dumps(_clean(summary_dict(study)), indent=1, default=_json_default, allow_nan=False))
    written.append(p)
    files = {
        "zones.csv": stack(lambda st: tables.zone_rows(study, st)),
        "ladder.csv": stack(lambda st: st.climb.table(su.day.labels)),
        "schedule.csv": stack(lambda st: st.rotation.schedule),
        "shed_by_bus.csv": stack(lambda st: st.verification.shed_by_bus),
        "bus_demand.csv": stack(lambda st: st.verification.bus_demand),
        "gen_dispatch.csv": stack(lambda st: st.verification.gen_dispatch),
        "violations.csv": _concat([tables.violation_rows(st, su.day.label(su.peak)) for st in study.steps],
                                  tables.VIOLATIONS_COLUMNS),
        "limits.csv": _concat([tables.limit_rows(st) for st in study.steps]),
        "pv_curve.csv": _concat([tables.pv_rows(st) for st in study.steps]),
    }
    if study.sensitivity is not None:
        files["sensitivity.csv"] = study.sensitivity
    if study.pv is not None:
        files["pv_sweep.csv"] = study.pv
    if study.hosting is not None:
        files["hosting_by_bus.csv"] = study.hosting
    for name, df in files.items():
        p = out / name
        df.to_csv(p, index=False)
        written.append(p)
    if plots:
        from gridflow.study.plots import write_plots

        written += write_plots(study, out)
    return written


def _concat(frames, columns=None) -> pd.DataFrame:
    """Rows of every frame, columns in order (``columns``, else as they come); all-NaN columns survive."""
    frames = [f for f in frames if len(f)]
    cols = list(columns) if columns is not None else list(dict.fromkeys(c for f in frames for c in f.columns))
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat([f.dropna(axis=1, how="all") for f in frames], ignore_index=True)
    return df.reindex(columns=cols)


def _clean(o):
    """NaN and infinities as null (JSON has no NaN)."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (frozenset, set, tuple)):
        return list(o)
    raise TypeError(type(o).__name__)
