"""``gridflow study`` and ``gridflow buses``: the click commands (registered in gridflow.cli)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gridflow.study.scenario import POLICIES


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", type=click.Choice(POLICIES), help="Override the scenario's load-shed policy.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("study_out"),
              show_default=True, help="Folder for summary.json, the CSV tables and the plots.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--no-sensitivity", is_flag=True, help="Skip the sensitivity table (saves a few searches).")
@click.option("--template", is_flag=True, help="Print a complete commented scenario (every key, its default) and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines (they go to stderr).")
def study(scenario, policy, out, no_plots, no_sensitivity, template, quiet):
    """Datacenter growth on a footprint's peak day: network limits, the emergency ladder, zone obligations,
    rolling blackouts, every interval verified in AC (SCENARIO: a TOML file).

    Without SCENARIO: the embedded default, Northern Virginia and PJM datacenter growth on a summer peak day on
    the 25,000-bus US Northeast/Mid-Atlantic grid (case_ACTIVSg25k), PJM footprint.
    """
    from gridflow.study.scenario import default_scenario, load_scenario
    from gridflow.study.scenario import template as scenario_template

    if template:
        click.echo(scenario_template(), nl=False)
        return
    from gridflow.study.report import sensitivity_report, step_report, study_intro, write_study
    from gridflow.study.run import run_study

    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"[{time.perf_counter() - t0:5.1f} s] {msg}", err=True)

    sc = load_scenario(scenario) if scenario is not None else default_scenario()
    res = run_study(sc, policy=policy, progress=progress, sensitivity=not no_sensitivity)
    click.echo(study_intro(res))
    for st in res.steps:
        click.echo("")
        click.echo(step_report(res, st))
    if res.sensitivity is not None:
        click.echo("")
        click.echo(sensitivity_report(res))
    progress("writing files" + ("" if no_plots else " and plots"))
    files = write_study(res, out, plots=not no_plots)
    click.echo("")
    click.echo(f"wrote {len(files)} files to {out}/ in {time.perf_counter() - t0:.1f} s")


@click.command()
@click.argument("case")
@click.option("--zone", help="Only buses of this zone (of the zone map).")
@click.option("--kv-min", type=float, default=0.0, show_default=True, help="Only buses at or above this base kV.")
@click.option("--name", "text", help="Only buses whose name contains this text (case-insensitive).")
@click.option("--zones", "zone_map", help="Zone map: a shipped name or a CSV (default: the case's shipped map).")
@click.option("--top", type=click.IntRange(min=1), default=40, show_default=True, help="Rows to print at most.")
def buses(case, zone, kv_min, text, zone_map, top):
    """List candidate points of interconnection of CASE: bus number, name, kV, zone, RTO and existing load,
    highest kV first (for a scenario's ``buses = [...]``)."""
    from gridflow.io import load_case
    from gridflow.study.zones import candidate_buses, default_zone_map, load_zone_map

    c = load_case(case)
    zones = load_zone_map(zone_map or default_zone_map(c), c)
    df = candidate_buses(c, zones, zone=zone, kv_min=kv_min, name=text)
    click.echo(f"{c.name}: {len(df):,} buses match (zones from {Path(zones.source).name})")
    click.echo(f"{'bus':>8s}  {'name':24s} {'kV':>6s}  {'zone':34s} {'RTO':9s} {'load MW':>8s}")
    for _, r in df.head(top).iterrows():
        click.echo(f"{int(r['bus']):8d}  {str(r['name'])[:24]:24s} {r['kv']:6g}  {str(r['zone'])[:34]:34s} "
                   f"{str(r['rto'])[:9]:9s} {r['load_mw']:8.1f}")
    if len(df) > top:
        click.echo(f"... {len(df) - top} more (--top N)")
