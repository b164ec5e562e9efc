"""``gridflow sweep``: the click command (registered in gridflow.cli)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from gridflow.errors import GridflowError


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("sweep_out"),
              show_default=True, help="Folder for results/task-*.parquet, sweep.json, summary.csv, summary.png.")
@click.option("--workers", type=int, help="Worker processes of a local Dask cluster (default: the CPU count); "
                                          "0: run in this process without Dask.")
@click.option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) instead of a local cluster.")
@click.option("--resume", is_flag=True, help="Keep the partitions already in --out and run only the missing tasks.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (it goes to stderr).")
def sweep(spec, out, workers, scheduler, resume, quiet):
    """Sweep datacenter what-ifs: every candidate bus x MW level x hour, N-0 and every contingency (SPEC: a
    TOML file with [case] and [sweep]; see the README's "Sweeps")."""
    from gridflow.sweep.run import sweep as run
    from gridflow.sweep.spec import load_spec
    from gridflow.sweep.summary import summarize

    if workers is not None and scheduler is not None:
        raise GridflowError("give --workers or --scheduler, not both")
    if workers is not None and workers < 0:
        raise GridflowError(f"--workers must be >= 0, got {workers}")
    t0 = time.perf_counter()
    points = run(load_spec(spec), out=out, workers=workers, scheduler=scheduler, resume=resume, progress=not quiet)
    s = summarize(points)
    click.echo(f"{len(points):,} points at {len(s)} buses in {time.perf_counter() - t0:.1f} s")
    click.echo(f"{'bus':>8s} {'N-0 MW':>8s} {'N-1 MW':>8s}  binding (N-1, at the first failing MW)")
    for _, r in s.iterrows():
        why = (f"{r['binding_n1']} [{r['binding_contingency']}, {r['first_fail_mw_n1']:,.0f} MW, "
               f"hour {r['binding_hour']}]" if r["binding_n1"] else f"none up to {r['mw_max']:,.0f} MW")
        click.echo(f"{int(r['bus']):8d} {r['limit_mw_n0']:8,.0f} {r['limit_mw_n1']:8,.0f}  {why}")
    click.echo(f"wrote {out}/results/ ({len(list((out / 'results').glob('task-*.parquet')))} partitions), "
               f"{out}/summary.csv, {out}/summary.png")
