"""Running one task, on a Dask worker or in this process.

The Setup (case read, zones, footprint, references for the study hours, the N-1 judge) is built once per
process and kept in a module-level cache keyed by the job's digest, so a worker reads the case once however
many tasks it runs. With ``processes=True`` (the default of :func:`gridflow.sweep`) every Dask worker is its
own process and has its own cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import pandas as pd

from gridflow.study.hosting import POINT_COLUMNS, evaluate_points
from gridflow.study.run import Setup, prepare
from gridflow.study.scenario import scenario_from_dict
from gridflow.sweep.tasks import Task


@dataclass(frozen=True)
class Job:
    """What every task of a sweep shares: the study scenario (a dict for
    :func:`~gridflow.study.scenario.scenario_from_dict`, its hours the window covering the sweep's), its
    ``digest`` and ``threads`` (CPU threads each task's contingency batches may use; None: all the process may)."""

    scenario: dict
    digest: str
    threads: int | None = None


_SETUPS: dict[str, Setup] = {}
_LOCK = threading.Lock()


def setup_for(job: Job) -> Setup:
    """The Setup of ``job``, built on first use in this process and cached."""
    with _LOCK:
        su = _SETUPS.get(job.digest)
        if su is None:
            su = _primed(prepare(scenario_from_dict(job.scenario, "sweep")))
            _SETUPS.clear()  # one sweep at a time per process: do not keep an old case alive
            _SETUPS[job.digest] = su
    if job.threads is not None and su.n1 is not None:
        su.n1.model.threads = job.threads
    return su


def remember(job: Job, setup: Setup) -> None:
    """Put a Setup built elsewhere in this process (the driver's) in the cache."""
    with _LOCK:
        _SETUPS.clear()
        _SETUPS[job.digest] = _primed(setup)


def _primed(setup: Setup) -> Setup:
    """``setup`` with every contingency solved at each reference hour, from the reference itself: the rows of a
    task then depend on the task alone, not on which tasks this process ran before (every worker, and a run in
    this process, gives the same rows)."""
    if setup.n1 is not None:
        for ref in setup.references:
            setup.n1.prime_references(ref)
    return setup


def run_task(job: Job, task: Task) -> pd.DataFrame:
    """The rows of ``task``: :data:`~gridflow.study.hosting.POINT_COLUMNS`, ``task.n_points`` of them."""
    su = setup_for(job)
    if su.n1 is not None:  # no warm starts from earlier tasks
        su = replace(su, n1=su.n1.fresh())
    b = int(su.case.bus_index([task.bus])[0])
    df = evaluate_points(su, b, task.mw, task.interval, contingencies=True)
    return df[POINT_COLUMNS].reset_index(drop=True)
