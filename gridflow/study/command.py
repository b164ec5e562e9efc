"""``gridflow study``: the click command (registered in gridflow.cli)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gridflow.study.scenario import POLICIES


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", type=click.Choice(POLICIES), help="Override the scenario's allocation policy.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("study_out"),
              show_default=True, help="Folder for summary.json, the CSV tables and the plots.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
def study(scenario, policy, out, no_plots):
    """Datacenter what-if and rolling-blackout allocation from SCENARIO (TOML).

    Without SCENARIO: the embedded default, Northern Virginia datacenter growth of 10, 20, 30 and
    40 GW on the 25,000-bus US Northeast/Mid-Atlantic grid (case_ACTIVSg25k).
    """
    from gridflow.study.report import step_headline, write_study, zone_table
    from gridflow.study.run import run_study
    from gridflow.study.scenario import default_scenario, load_scenario

    t0 = time.perf_counter()
    sc = load_scenario(scenario) if scenario is not None else default_scenario()
    res = run_study(sc, policy=policy)
    click.echo(f"{sc.name}: {res.case.name}, {res.case.nb} buses, zones from {Path(res.zone_map.source).name}; "
               f"{len(res.base.overloaded)} branches already over rating {sc.study.rating} in the base case"
               + (f"; {res.base.unrated} branches unrated (no rate {sc.study.rating}), not monitored"
                  if res.base.unrated else ""))
    for st in res.steps:
        click.echo("")
        click.echo(step_headline(st))
        click.echo(zone_table(st))
        for note in st.notes:
            click.echo(f"  note: {note}")
    files = write_study(res, out, plots=not no_plots)
    click.echo("")
    click.echo(f"wrote {len(files)} files to {out}/ in {time.perf_counter() - t0:.1f} s")
