"""A sweep of 2,040 points on case_ACTIVSg2000 with N-1, in this process and on 1 and 2 Dask workers.

10 candidate buses of the Coast zone x 4 MW levels x 1 hour (the study's peak) x (N-0 + 50 single-branch
outages, the first 50 of the study's "auto" set) = 2,040 points in 10 tasks. Every run computes the same rows
(asserted). Timed: the whole ``gridflow.sweep`` call, wall clock, from the spec to the returned DataFrame,
including (on Dask) starting the local cluster and each worker building its Setup; the cluster start alone is
timed beside. Prints a table: points/s and speedup over 1 worker.

    python3 bench/bench_sweep.py            # ~2 min on 2 cores
    GRIDFLOW_BENCH_QUICK=1 python3 bench/bench_sweep.py    # 2 buses: a smoke run, not figures

Not collected by pytest (bench/ is outside ``testpaths``); a script, since Dask's worker processes are spawned
and must not re-run a test session.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

import gridflow
from gridflow.study.n1 import study_contingencies

CASE = "case_ACTIVSg2000"
BUSES = [7002, 7003, 7018, 7019, 7029, 7035, 7037, 7038, 7040, 7042]
MW = [250, 500, 750, 1000]
N_OUTAGES = 50
QUICK = os.environ.get("GRIDFLOW_BENCH_QUICK") == "1"


def _spec(folder: Path) -> Path:
    """The spec and its outage CSV (branch rows), written into ``folder``."""
    from gridflow.study.zones import load_zone_map

    case = gridflow.load_case(CASE)
    zones = load_zone_map("activsg2000", case)
    cs = study_contingencies("auto", case, zones.zone, ["Coast"], 230.0)
    rows = [o.branches[0] for o in cs.outages if len(o.branches) == 1 and not o.gens][:N_OUTAGES]
    pd.DataFrame({"branch": rows}).to_csv(folder / "outages.csv", index=False)
    buses = BUSES[:2] if QUICK else BUSES
    p = folder / "sweep.toml"
    p.write_text(f'[case]\nsource = "{CASE}"\nzones = "activsg2000"\n\n[sweep]\nbuses = {buses}\nmw = {MW}\n'
                 'contingencies = "outages.csv"\nfootprint = "ERCOT"\n')
    return p


def _cluster_start_s(n: int) -> float:
    from gridflow.sweep.run import local_cluster

    t0 = time.perf_counter()
    cluster, client = local_cluster(n)
    dt = time.perf_counter() - t0
    client.close()
    cluster.close()
    return dt


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        spec = _spec(Path(d))
        runs = []
        ref = None
        for label, workers in (("in-process", 0), ("1 worker", 1), ("2 workers", 2)):
            t0 = time.perf_counter()
            df = gridflow.sweep(spec, workers=workers, progress=False)
            wall = time.perf_counter() - t0
            if ref is None:
                ref = df
            pd.testing.assert_frame_equal(df, ref, check_exact=True)
            start = _cluster_start_s(workers) if workers else 0.0
            runs.append((label, workers, len(df), wall, start))
            print(f"{label}: {len(df):,} points in {wall:.1f} s", flush=True)
    one = next(r for r in runs if r[1] == 1)
    print(f"\n{CASE}: {len(BUSES[:2] if QUICK else BUSES)} buses x {len(MW)} MW x 1 hour x (base + {N_OUTAGES} "
          f"outages); {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print("| run | points | wall s | points/s | speedup vs 1 worker | of which cluster start s |")
    print("|---|---|---|---|---|---|")
    for label, _w, n, wall, start in runs:
        start_s = f"{start:.1f}" if _w else "-"
        print(f"| {label} | {n:,} | {wall:.1f} | {n / wall:,.1f} | {one[3] / wall:.2f} | {start_s} |")


if __name__ == "__main__":
    main()
