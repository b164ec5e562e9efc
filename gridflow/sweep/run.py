"""Running a sweep: resolve the spec against the case, run the tasks (Dask or in-process), keep every result.

Results (:data:`RESULT_COLUMNS`, one row per point) are written as they arrive, one Parquet file per task,
``DIR/results/task-<id>.parquet``, each written under a temporary name in the same folder and then renamed
(``os.replace``), so an interrupted sweep leaves only complete partitions and ``resume=True`` computes only the
missing ones. ``DIR/sweep.json`` records what the sweep computes (its digest); a resume into a folder of another
sweep is refused. The partitions are written by this process (the client) as tasks finish, so the workers need
no shared file system; they need the case and any contingency file at the same path, or a case name.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from gridflow.errors import GridflowError, ScenarioError
from gridflow.study.hosting import POINT_COLUMNS, candidate_buses
from gridflow.study.run import prepare
from gridflow.study.scenario import scenario_from_dict
from gridflow.sweep.spec import SweepSpec, load_spec, spec_from_dict
from gridflow.sweep.summary import plot_summary, summarize
from gridflow.sweep.tasks import Task, make_tasks, partition_name
from gridflow.sweep.worker import Job, remember, run_task

#: columns of the result, one row per point. bus: bus number; mw: datacenter load at the bus, MW (power factor
#: ``power_factor``, balanced by the footprint's units); hour: clock hour of the load shape; contingency: "base"
#: (N-0) or the outage's name; converged: the AC solve converged; deliverable: no violation attributed to the
#: datacenter (N-0 on ``rating``, after a contingency on ``emergency_rating``); max_loading_percent: worst monitored
#: branch loading, % of its rating; vm_min_pu: lowest monitored bus voltage, pu; binding: what stops it ("" if
#: nothing, "voltage collapse" if not converged)
RESULT_COLUMNS = list(POINT_COLUMNS)
_DTYPES = {"bus": "int64", "mw": "float64", "hour": "int64", "contingency": object, "converged": bool,
           "deliverable": bool, "max_loading_percent": "float64", "vm_min_pu": "float64", "binding": object}
#: seconds to wait for a scheduler given by address
CONNECT_TIMEOUT_S = 10
RETRIES = 2


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    df = df[RESULT_COLUMNS].reset_index(drop=True)
    for c in ("contingency", "binding"):
        df[c] = df[c].fillna("").astype(str).astype(object)
    return df.astype(_DTYPES)


# ----------------------------------------------------------------------------------------------- resolution

def resolve(spec: SweepSpec, *, threads: int | None = None):
    """Check the spec against its case and build the grid: (Job, tasks, the Setup built here). Raises
    ScenarioError for an unknown bus or zone, an hour outside the study, anything the study refuses."""
    from gridflow.io import load_case

    src = spec.path or "sweep"
    case = load_case(spec.source)
    if spec.buses is not None:
        known = set(int(n) for n in case.bus.number)
        bad = [b for b in spec.buses if b not in known]
        if bad:
            raise ScenarioError(f"{src}: [sweep] buses: {case.name} has no bus {bad[0]}")
    # the study hours: the window covering the requested hours, else the study's own peak hour (hours = 1: the
    # one-hour window with the most footprint load)
    window = 1 if spec.hours is None else [spec.hours[0], spec.hours[-1] + 1]
    try:
        setup = prepare(scenario_from_dict(spec.scenario_doc(window), src), case=case)
    except ScenarioError as e:
        msg = str(e).replace("datacenter 'sweep'", "[sweep]")
        raise ScenarioError(msg if msg.startswith(src) else f"{src}: {msg}") from None
    day_hours = [int(h) for h in setup.day.hour]
    hours = [day_hours[setup.peak]] if spec.hours is None else list(spec.hours)
    intervals = [day_hours.index(h) for h in hours]
    idx = candidate_buses(setup, spec.buses)
    buses = [int(n) for n in setup.case.bus.number[idx]]
    n_cont = len(setup.contingencies) if setup.n1 is not None else 0
    doc = spec.scenario_doc(window)
    body = json.dumps([doc, list(spec.mw), hours, buses], sort_keys=True, default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    job = Job(scenario=doc, digest=digest, threads=threads)
    return job, make_tasks(buses, hours, intervals, spec.mw, n_cont), setup


def _as_spec(spec) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise ScenarioError(f"sweep: spec must be a SweepSpec, a dict or a TOML path, got {type(spec).__name__}")


# ----------------------------------------------------------------------------------------------- partitions

def write_partition(df: pd.DataFrame, folder: Path, task: Task) -> Path:
    """Write one task's rows to ``folder/task-<id>.parquet`` atomically (temporary name, then os.replace)."""
    final = folder / partition_name(task)
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return final


def _prepare_out(out: Path, job: Job, spec: SweepSpec, resume: bool) -> Path:
    results = out / "results"
    manifest = out / "sweep.json"
    if resume and manifest.is_file():
        try:
            old = json.loads(manifest.read_text()).get("digest")
        except (OSError, ValueError):
            old = None
        if old != job.digest:
            raise ScenarioError(f"--resume: {out} holds the results of another sweep (digest {old}, this one "
                                f"{job.digest}); give another --out or drop --resume")
    results.mkdir(parents=True, exist_ok=True)
    for p in results.glob(".task-*.tmp"):  # left by a writer that was killed mid-write
        p.unlink(missing_ok=True)
    if not resume:
        old_parts = list(results.glob("task-*.parquet"))
        if old_parts:  # never thrown away: a rerun into the same folder is a resume or a new folder
            raise ScenarioError(f"{out} already holds {len(old_parts)} result partitions: --resume to continue that "
                                "sweep, or give another --out")
    manifest.write_text(json.dumps({"digest": job.digest, "scenario": job.scenario, "mw": list(spec.mw),
                                    "columns": RESULT_COLUMNS}, indent=1, default=str) + "\n")
    return results


# ----------------------------------------------------------------------------------------------- progress

class _Progress:
    """Points done, points/s and time left: tqdm if installed, else plain lines on stderr."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.total, self.done, self.enabled = total, initial, enabled
        self.t0 = time.perf_counter()
        self.start = initial
        self.bar = None
        self.last = 0.0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            self.bar = tqdm(total=total, initial=initial, unit="pt", desc="sweep", smoothing=0.1, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last < 2 and self.done < self.total:
            return
        self.last = now
        rate = (self.done - self.start) / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        print(f"sweep: {self.done:,}/{self.total:,} points, {rate:,.1f} points/s, {left:,.0f} s left",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _note(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- clients

def connect(address: str, timeout_s: float | None = None):
    """A distributed.Client on the scheduler at ``address``; GridflowError (one line) if it cannot be reached
    within ``timeout_s`` (default :data:`CONNECT_TIMEOUT_S`)."""
    from distributed import Client

    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise GridflowError(f"--scheduler {address}: cannot reach the scheduler ({first})") from None


def local_cluster(n_workers: int):
    """A LocalCluster of ``n_workers`` processes, one task thread each, and its client. Each worker's BLAS may use
    its share of this machine's CPUs (``cpu_count // n_workers``); Dask's MALLOC_TRIM_THRESHOLD_ is not set."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    share = max(1, (os.cpu_count() or 1) // n_workers)
    # Dask's default worker environment also sets MALLOC_TRIM_THRESHOLD_, which turns off glibc's dynamic mmap
    # threshold: every large temporary array is then mmap'ed and zeroed afresh (measured: tasks 2x slower)
    spawn_env = {k: share for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    # the cluster's and client's INFO lines would bury the progress bar: warnings and errors only
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                 "distributed.http.proxy", "distributed.core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    return cluster, Client(cluster, set_as_default=False)


def _dashboard(client) -> str | None:
    try:
        if "dashboard" in client.scheduler_info().get("services", {}):
            return client.dashboard_link
    except Exception:
        return None
    return None


# ----------------------------------------------------------------------------------------------- the sweep

def sweep(spec, client=None, *, out=None, workers: int | None = None, scheduler: str | None = None,
          resume: bool = False, progress: bool = True, sequential: bool = False,
          retries: int = RETRIES) -> pd.DataFrame:
    """Run a sweep: every candidate bus x MW level x hour, N-0 and every contingency.

    Parameters
    ----------
    spec : SweepSpec | dict | str | os.PathLike
        The spec (:mod:`gridflow.sweep.spec`): checked object, parsed TOML, or a TOML file.
    client : distributed.Client, optional
        Run the tasks on this client's cluster (e.g. ``Client(SLURMCluster(...))``); not closed here.
    out : path, optional
        Folder for ``results/task-<id>.parquet`` (one per task), ``sweep.json``, ``summary.csv`` and
        ``summary.png``. None: nothing written (results only returned).
    workers : int, optional
        Without ``client``/``scheduler``: a LocalCluster of this many worker processes (default
        ``os.cpu_count()``); 0 runs the tasks in this process without Dask (as ``sequential=True``).
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); GridflowError if it cannot be reached.
    resume : bool
        Keep the partitions already in ``out/results`` and compute only the missing tasks.
    progress : bool
        A progress bar (points, points/s, time left) and the dashboard link on stderr.
    retries : int
        Times Dask reruns a task whose worker died.

    Returns
    -------
    pandas.DataFrame
        :data:`RESULT_COLUMNS`, one row per point, tasks in grid order (bus, hour), within a task by MW with
        "base" first, then the contingencies in the study's order.

    Raises
    ------
    ScenarioError
        A bad spec (unknown key, bus or zone, empty axis, ...), or ``resume`` into another sweep's folder.
    GridflowError
        Both ``client`` and ``scheduler`` or ``workers`` given, or an unreachable scheduler.
    """
    spec = _as_spec(spec)
    given = [n for n, v in (("client", client), ("scheduler", scheduler), ("workers", workers)) if v is not None]
    if len(given) > 1:
        raise GridflowError(f"sweep: give at most one of client, scheduler, workers (got {', '.join(given)})")
    if workers is not None and workers < 0:
        raise GridflowError(f"sweep: workers must be >= 0, got {workers}")
    if resume and out is None:
        raise GridflowError("sweep: resume needs an output folder (out)")
    in_process = sequential or workers == 0
    n_local = None
    if not in_process and client is None and scheduler is None:
        n_local = workers or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // n_local) if n_local else None
    own: list = []  # clients and clusters made here, closed here
    try:
        if not in_process and client is None and scheduler is not None:
            client = connect(scheduler)  # first: an unreachable scheduler is reported before any work
            own.append(client)
        return _sweep(spec, client, own, out=out, in_process=in_process, n_local=n_local, threads=threads,
                      resume=resume, progress=progress, retries=retries)
    finally:
        for c in own:
            try:
                c.close()
            except Exception:  # closing after an interrupt: nothing more to do
                pass


def _sweep(spec: SweepSpec, client, own: list, *, out, in_process, n_local, threads, resume, progress,
           retries) -> pd.DataFrame:
    job, tasks, setup = resolve(spec, threads=threads)
    if in_process:
        remember(job, setup)
    del setup
    frames: dict[str, pd.DataFrame] = {}
    results = None
    if out is not None:
        out = Path(out)
        results = _prepare_out(out, job, spec, resume)
    done = {p.name for p in results.glob("task-*.parquet")} if (results is not None and resume) else set()
    todo = [t for t in tasks if partition_name(t) not in done]
    total = sum(t.n_points for t in tasks)
    n_hours = len({t.hour for t in tasks})
    n_cases = 1 + (tasks[0].n_contingencies if tasks else 0)
    _note(progress, f"sweep: {len(tasks) // max(1, n_hours)} buses x {len(spec.mw)} MW levels x {n_hours} "
                    f"hour{'s' if n_hours != 1 else ''} x {n_cases:,} cases (N-0 and each contingency) = {total:,} "
                    f"points in {len(tasks)} tasks"
                    + (f"; {len(tasks) - len(todo)} done before, {len(todo)} to run" if resume else ""))
    if not in_process and client is None and todo:
        cluster, client = local_cluster(n_local)
        own += [client, cluster]
    if not in_process and client is not None:
        link = _dashboard(client)
        if link:
            _note(progress, f"sweep: Dask dashboard at {link}")
    bar = _Progress(total, total - sum(t.n_points for t in todo), progress)

    def finished(task: Task, df: pd.DataFrame) -> None:
        df = _normalize(df)
        if results is not None:
            write_partition(df, results, task)
        frames[task.id] = df
        bar.update(len(df))

    try:
        if in_process:
            for t in todo:
                finished(t, run_task(job, t))
        elif todo:
            _run_dask(client, job, todo, finished, retries=retries)
    finally:
        bar.close()
    parts = []
    for t in tasks:
        df = frames.get(t.id)
        if df is None:
            df = _normalize(pd.read_parquet(results / partition_name(t)))
        parts.append(df)
    points = pd.concat(parts, ignore_index=True) if parts else _normalize(pd.DataFrame(columns=RESULT_COLUMNS))
    if out is not None:
        summ = summarize(points)
        summ.to_csv(out / "summary.csv", index=False)
        plot_summary(summ, out / "summary.png", title=f"{spec.source}: hosting over {total:,} swept points")
    return points


def _run_dask(client, job: Job, todo: list[Task], finished, *, retries: int) -> None:
    """Submit every task of ``todo`` and hand each result to ``finished`` as it arrives; on any error or
    interrupt the tasks still pending are cancelled."""
    from distributed import as_completed

    by_key = {}
    futures = []
    for t in todo:
        f = client.submit(run_task, job, t, key=f"gridflow-sweep-{job.digest}-{t.id}", retries=retries, pure=False)
        by_key[f.key] = t
        futures.append(f)
    try:
        for f in as_completed(futures, loop=client.loop):
            finished(by_key[f.key], f.result())
            f.release()
    except BaseException:
        client.cancel(futures)
        raise
