"""N-1 contingency analysis (NERC TPL-001 category P1): every single outage, solved in AC.

For a case and a list of outages (:class:`gridflow.outages.Outage`; default:
every in-service branch):

1. **Base case**: solved once; its voltages start every contingency (warm start).
2. **DC screening** with line outage distribution factors (LODF): for a
   single-branch outage k, the post-contingency flow on branch l is
   ``f_l + LODF[l, k] f_k`` with ``LODF[l, k] = PTDF_l(k) / (1 - PTDF_k(k))``,
   where ``PTDF_l(k)`` is the DC flow on l per MW injected at k's from bus and
   withdrawn at its to bus (the reduced DC system ``B θ = P`` factorized once);
   ``1 - PTDF_k(k) ≈ 0`` means k is a bridge (its outage splits an island). A
   generator outage moves its MW to the slack buses (DC). The estimates rank
   the contingencies (``dc_max_loading_percent``) and are reported beside the
   AC answer; multi-element outages get no DC estimate.
3. **AC**: every contingency is solved by the batched Newton engine
   (:meth:`gridflow.model.PowerFlowModel.solve_batch`: chord steps with the base
   Jacobian while they contract, then Newton per scenario), in chunks that bound
   memory. Islands follow :mod:`gridflow.topology`: a part with no slack and no
   voltage-controlling generator is de-energized (``islanded_buses``: the buses the
   contingency cuts off, beyond those already dead in the base case), a part
   with one gets its own slack (``new_slack_bus``).

Ratings: post-contingency loading is judged on ``rating`` (TPL-001: emergency
ratings after a contingency). A rating B or C of 0 means "not given" and falls
back to rate A for that branch; branches without any rating are not
monitored; both counts are reported (:func:`gridflow.results.rating_counts`).
The pre-contingency loading in the violation table is on the same rating.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.errors import GridflowError
from gridflow.linalg import SingularJacobian
from gridflow.model import PowerFlowModel
from gridflow.outages import Outage, check_outages, single_branch_outages
from gridflow.results import PowerFlowResult, loading_percent, rating_counts, rating_mva

log = logging.getLogger(__name__)

#: AC chunk: scenarios x (buses + branches) per batch, about this many numbers; small enough for the
#: batch's arrays to stay in cache (measured on ACTIVSg2000: 3206 scenarios at once take twice the CPU
#: time of chunks of 128), chunks run on the threads at once
_CHUNK_CELLS = 1_000_000
_CHUNK_MIN = 16

#: the per-contingency table's first columns (names fixed: scripts read them)
COLUMNS = ["contingency", "branch", "gen", "converged", "iterations", "max_loading_percent", "max_loading_branch",
           "vm_min_pu", "vm_max_pu", "islanded_buses"]


@dataclass(frozen=True)
class ContingencyResult:
    """Outcome of :func:`contingency`.

    Attributes
    ----------
    case : Case
    base : PowerFlowResult
        The solved base case.
    outages : list of Outage
    table : pandas.DataFrame
        One row per contingency: :data:`COLUMNS`, then ``max_loading_from_bus``, ``max_loading_to_bus``,
        ``vm_min_bus``, ``vm_max_bus``, ``new_slack_bus``, ``dc_max_loading_percent``, ``overloads``,
        ``voltage_violations``, ``branches``, ``gens`` (all outaged rows, ";"-joined), ``reason``.
        ``branch``/``gen`` hold the outaged row of a single-element contingency (empty otherwise).
    violations : pandas.DataFrame
        One row per (contingency, element) beyond a limit after the contingency: ``contingency``,
        ``kind`` ("overload", "voltage_low", "voltage_high"), ``element`` (branch row or bus number),
        ``from_bus``, ``to_bus``, ``from_name``, ``to_name``, ``kv``, ``rating``, ``rating_mva``,
        ``pre_percent``, ``post_percent`` (overloads), ``vm_pu``, ``vmin_pu``, ``vmax_pu`` (voltages).
    rating : str
        The rating post-contingency loading is judged on.
    rating_fallback : int
        In-service branches whose rating B/C is 0 and are judged on rate A.
    unrated : int
        In-service branches with no rating: not monitored.
    loading : float64 (K, nl) or None
        Every branch's post-contingency loading, percent, when asked for.
    seconds : float
        Wall time of the whole analysis.
    """

    case: Case
    base: PowerFlowResult
    outages: list
    table: pd.DataFrame
    violations: pd.DataFrame
    rating: str
    rating_fallback: int
    unrated: int
    loading: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0

    def write(self, path) -> list:
        """Write the per-contingency table to ``path`` (.csv or .parquet) and the violations beside it
        (``<stem>_violations.<ext>``); returns the paths written."""
        from pathlib import Path

        path = Path(path)
        ext = path.suffix.lower()
        if ext not in (".csv", ".parquet"):
            raise GridflowError(f"{path}: use a .csv or .parquet file name")
        vpath = path.with_name(f"{path.stem}_violations{ext}")
        try:
            for df, p in ((self.table, path), (self.violations, vpath)):
                if ext == ".csv":
                    df.to_csv(p, index=False)
                else:
                    try:
                        df.to_parquet(p, index=False)
                    except ImportError:
                        raise GridflowError("writing Parquet needs pyarrow (pip install pyarrow)") from None
        except OSError as e:
            raise GridflowError(f"cannot write {path}: {e.strerror}") from None
        return [path, vpath]

    def report(self, top: int = 10) -> str:
        """A readable summary: counts, ratings, the worst contingencies, what did not converge."""
        s = self.summary()
        t = self.table
        lines = [f"{s['case']}: {s['contingencies']} contingencies "
                 f"({int(t['branch'].notna().sum())} single branch, {int(t['gen'].notna().sum())} single generator, "
                 f"{int((t['branch'].isna() & t['gen'].isna()).sum())} multi-element) in {s['seconds']:.1f} s"]
        rating = f"  post-contingency loading on rating {self.rating}"
        if self.rating != "A":
            rating += f" ({self.rating_fallback} branches have no rating {self.rating} and are judged on rate A)"
        rating += f"; {self.unrated} branches unrated, not monitored"
        lines.append(rating)
        lines.append(f"  converged {s['converged']}, not converged {s['not_converged']}; {s['islanding']} split "
                     f"the network ({int(t['islanded_buses'].sum())} bus-outages de-energized, "
                     f"{int(t['new_slack_bus'].notna().sum())} islands given their own slack)")
        lines.append(f"  {s['with_overloads']} contingencies overload a branch, {s['with_voltage_violations']} "
                     "leave a voltage outside its limits")
        worst = t[t["converged"]].sort_values("max_loading_percent", ascending=False).head(top)
        if len(worst):
            lines.append(f"  worst {len(worst)} by post-contingency loading:")
            lines.append(f"    {'contingency':42s} {'loading %':>9s}  {'branch (from-to)':>22s}  {'vm min':>7s}  "
                         f"{'DC est. %':>9s}")
            for r in worst.itertuples(index=False):
                br = ("-" if r.max_loading_branch is pd.NA
                      else f"{r.max_loading_branch} ({r.max_loading_from_bus}-{r.max_loading_to_bus})")
                lines.append(f"    {str(r.contingency)[:42]:42s} {r.max_loading_percent:9.1f}  {br:>22s}  "
                             f"{r.vm_min_pu:7.4f}  {r.dc_max_loading_percent:9.1f}")
        bad = t[~t["converged"]]
        if len(bad):
            lines.append(f"  not converged ({len(bad)}): " + "; ".join(
                f"{r.contingency} ({r.reason})" for r in bad.head(5).itertuples(index=False))
                + (" ..." if len(bad) > 5 else ""))
        return "\n".join(lines)

    def summary(self) -> dict:
        t = self.table
        conv = t["converged"].to_numpy(bool)
        return {
            "case": self.case.name, "contingencies": len(t), "converged": int(conv.sum()),
            "not_converged": int((~conv).sum()),
            "islanding": int((t["islanded_buses"] > 0).sum()),
            "with_overloads": int((t["overloads"] > 0).sum()),
            "with_voltage_violations": int((t["voltage_violations"] > 0).sum()),
            "rating": self.rating, "rating_fallback": self.rating_fallback, "unrated": self.unrated,
            "seconds": self.seconds,
        }


def contingency(case: Case, outages=None, **options) -> ContingencyResult:
    """N-1 contingency analysis of ``case`` (see the module docstring).

    Parameters
    ----------
    case : Case
    outages : list of Outage, optional
        Default: one outage per in-service branch (:func:`gridflow.outages.single_branch_outages`).
    rating : {"A", "B", "C"}
        Post-contingency rating (falls back to A where 0).
    tol_mva : float
        Convergence tolerance of every AC solve, MW / MVAr (default 1e-6).
    max_iter : int
        Steps per contingency at most (default 20).
    enforce_q_lims, distributed_slack, participation, enforce_p_lims
        As in :func:`gridflow.solve` (the base case and every contingency).
    loading_matrix : bool
        Keep every branch's loading per contingency (``result.loading``).
    threads : int, optional
        CPU threads.

    Raises
    ------
    GridflowError
        Bad options, an outage naming a row the case lacks, or a base case that does not converge.
    """
    from gridflow.solve import model_for

    return contingency_with_model(model_for(case), outages, case=case, **options)


def contingency_with_model(model: PowerFlowModel, outages=None, *, case: Case | None = None, rating: str = "A",
                           tol_mva: float = 1e-6, max_iter: int = 20, enforce_q_lims: bool = False,
                           distributed_slack: bool = False, participation=None, enforce_p_lims: bool = True,
                           loading_matrix: bool = False, threads: int | None = None) -> ContingencyResult:
    """:func:`contingency` on a model of the case's topology."""
    from gridflow.batch import batch_with_model
    from gridflow.solve import solve_with_model

    t0 = time.perf_counter()
    case = model.case if case is None else case
    if rating not in ("A", "B", "C"):
        raise GridflowError(f"rating must be A, B or C, got {rating!r}")
    if outages is None:
        outages = single_branch_outages(case)
    outages = list(outages)
    if not outages:
        raise GridflowError("no contingencies to run (the outage list is empty)")
    if not all(isinstance(o, Outage) for o in outages):
        raise GridflowError("outages must be gridflow.outages.Outage objects (see gridflow.io.contab readers)")
    check_outages(case, outages)
    opts = dict(distributed_slack=distributed_slack, participation=participation, enforce_p_lims=enforce_p_lims,
                enforce_q_lims=enforce_q_lims)
    base = solve_with_model(model, case, tol_mva=tol_mva, **opts)
    if not base.converged:
        raise GridflowError(f"the base case does not converge, so no contingency can be judged: {base.message}")
    q_held = None
    if enforce_q_lims:  # every contingency starts from the base case's held set (saves the rounds finding it)
        mask = np.zeros(case.ng, bool)
        mask[np.asarray(base.extra.get("q_held", []), np.int64)] = True
        q_held = (mask, base.gen["q_mvar"].to_numpy() / case.base_mva)
    rate = rating_mva(case, rating)
    counts = rating_counts(case, rating)
    pre = _loading(case, base.branch["p_from_mw"].to_numpy(), base.branch["q_from_mvar"].to_numpy(),
                   base.branch["p_to_mw"].to_numpy(), base.branch["q_to_mvar"].to_numpy(),
                   base.bus["vm_pu"].to_numpy(), rating)
    dc = dc_screen(case, model, outages, base.branch["p_from_mw"].to_numpy(), rate, base.gen["p_mw"].to_numpy())
    K = len(outages)
    chunk = max(_CHUNK_MIN, int(_CHUNK_CELLS // (case.nb + case.nl)))
    vmin_case, vmax_case = case.bus.vmin, case.bus.vmax
    slack_ref = model.dist_ref if distributed_slack else None

    def run(a):
        part = outages[a:a + chunk]
        res = batch_with_model(model, case=case, branch_out=[o.branches for o in part], gen_out=[o.gens for o in part],
                               V0=base.V, tol_mva=tol_mva, max_iter=max_iter, branch_results=True, threads=1,
                               q_held=q_held, **opts)
        roles = model.roles(len(part), branch_out=[o.branches for o in part], gen_out=[o.gens for o in part],
                            slack_ref=slack_ref)
        load = _loading(case, res.p_from_mw, res.q_from_mvar, res.p_to_mw, res.q_to_mvar, res.vm_pu, rating)
        rows, viol = [], []
        for j, o in enumerate(part):
            load[j, list(o.branches)] = np.nan  # an outaged branch carries nothing and is not judged
            if not res.converged[j]:
                load[j] = np.nan
            rows.append(_row(case, o, j, res, load[j], roles, dc[a + j], base.dead_buses))
            if res.converged[j]:
                viol.extend(_violations(case, o, j, res, load[j], pre, rate, rating, vmin_case, vmax_case))
        log.info("contingencies %d-%d of %d solved", a + 1, a + len(part), K)
        return rows, viol, (load if loading_matrix else None)

    starts = list(range(0, K, chunk))
    n_threads = model.threads_for(len(starts), threads)
    if n_threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="gridflow-n1") as pool:
            done = list(pool.map(run, starts))
    else:
        done = [run(a) for a in starts]
    rows = [r for d in done for r in d[0]]
    viol = [v for d in done for v in d[1]]
    mats = [d[2] for d in done]
    table = pd.DataFrame(rows)
    for c in ("branch", "gen", "max_loading_branch", "max_loading_from_bus", "max_loading_to_bus", "vm_min_bus",
              "vm_max_bus", "new_slack_bus"):
        table[c] = table[c].astype("Int64")
    table = table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]
    vcols = ["contingency", "kind", "element", "from_bus", "to_bus", "from_name", "to_name", "kv", "rating",
             "rating_mva", "pre_percent", "post_percent", "vm_pu", "vmin_pu", "vmax_pu"]
    violations = pd.DataFrame(viol, columns=vcols)
    return ContingencyResult(case=case, base=base, outages=outages, table=table, violations=violations,
                             rating=rating, rating_fallback=counts["fallback"], unrated=counts["unrated"],
                             loading=np.concatenate(mats) if loading_matrix else None,
                             seconds=time.perf_counter() - t0)


def _loading(case, pf, qf, pt, qt, vm, rating):
    """Branch loading on ``rating`` (..., nl), percent, NaN where unrated: :func:`gridflow.results.loading_percent`
    with the end voltages (current ratings of pandapower nets need them)."""
    vm = np.nan_to_num(vm, nan=1.0)
    return loading_percent(case, pf + 1j * qf, pt + 1j * qt, rating, vm_from=vm[..., case.branch.f],
                           vm_to=vm[..., case.branch.t])


def _row(case, o: Outage, j, res, load, roles, dc, base_dead) -> dict:
    ok = bool(res.converged[j])
    vm = res.vm_pu[j]
    live = np.isfinite(vm)
    row = {
        "contingency": o.label,
        "branch": o.branches[0] if len(o.branches) == 1 and not o.gens else pd.NA,
        "gen": o.gens[0] if len(o.gens) == 1 and not o.branches else pd.NA,
        "converged": ok,
        "iterations": int(res.iterations[j] + res.chord_steps[j]),
        "islanded_buses": int(res.dead_buses[j] - base_dead),
        "branches": ";".join(str(b) for b in o.branches), "gens": ";".join(str(g) for g in o.gens),
        "dc_max_loading_percent": dc,
        "new_slack_bus": (int(case.bus.number[roles.new_slack[j][0]]) if j in roles.new_slack else pd.NA),
        "reason": "" if ok else str(res.reason[j]),
    }
    if ok and np.isfinite(load).any():
        m = int(np.nanargmax(load))
        row.update(max_loading_percent=float(load[m]), max_loading_branch=m,
                   max_loading_from_bus=int(case.bus.number[case.branch.f[m]]),
                   max_loading_to_bus=int(case.bus.number[case.branch.t[m]]))
    else:
        row.update(max_loading_percent=np.nan, max_loading_branch=pd.NA, max_loading_from_bus=pd.NA,
                   max_loading_to_bus=pd.NA)
    if ok and live.any():
        lo, hi = int(np.nanargmin(vm)), int(np.nanargmax(vm))
        row.update(vm_min_pu=float(vm[lo]), vm_max_pu=float(vm[hi]), vm_min_bus=int(case.bus.number[lo]),
                   vm_max_bus=int(case.bus.number[hi]))
    else:
        row.update(vm_min_pu=np.nan, vm_max_pu=np.nan, vm_min_bus=pd.NA, vm_max_bus=pd.NA)
    if ok:
        row["overloads"] = int(np.sum(np.nan_to_num(load) > 100.0))
        low = live & (np.nan_to_num(vm, nan=1.0) < case.bus.vmin - 1e-9)
        high = live & (np.nan_to_num(vm, nan=1.0) > case.bus.vmax + 1e-9)
        row["voltage_violations"] = int(low.sum() + high.sum())
    else:
        row["overloads"] = 0
        row["voltage_violations"] = 0
    return row


def _violations(case, o, j, res, load, pre, rate, rating, vmin, vmax) -> list:
    out = []
    br = case.branch
    names = case.bus.name
    for m in np.flatnonzero(np.nan_to_num(load) > 100.0):
        f, t = br.f[m], br.t[m]
        out.append((o.label, "overload", int(m), int(case.bus.number[f]), int(case.bus.number[t]), str(names[f]),
                    str(names[t]), float(max(case.bus.base_kv[f], case.bus.base_kv[t])), rating, float(rate[m]),
                    float(pre[m]), float(load[m]), np.nan, np.nan, np.nan))
    vm = res.vm_pu[j]
    for kind, bad in (("voltage_low", vm < vmin - 1e-9), ("voltage_high", vm > vmax + 1e-9)):
        for b in np.flatnonzero(np.isfinite(vm) & bad):
            out.append((o.label, kind, int(case.bus.number[b]), int(case.bus.number[b]), pd.NA, str(names[b]), "",
                        float(case.bus.base_kv[b]), "", np.nan, np.nan, np.nan, float(vm[b]), float(vmin[b]),
                        float(vmax[b])))
    return out


# ------------------------------------------------------------------------------------------ DC screening


def dc_screen(case: Case, model: PowerFlowModel, outages, flow_mw: np.ndarray, rate_mva: np.ndarray,
              pg_mw: np.ndarray | None = None) -> np.ndarray:
    """DC estimate of each contingency's largest post-contingency loading, percent (K,); NaN where there is
    none (multi-element outages, unrated networks): :mod:`gridflow.dcflow` (the slack buses take up what an
    outage frees or loses).

    ``flow_mw`` (nl,): the base case's branch flows (MW, from end), to which the LODFs apply; ``pg_mw`` (ng,):
    its generator outputs (generator outages; default the case's schedule).
    """
    from gridflow.dcflow import OutageFactors

    out = np.full(len(outages), np.nan)
    if not (rate_mva > 0).any():
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_rate = np.where(rate_mva > 0, 100.0 / rate_mva, 0.0)
    try:
        of = OutageFactors(case, model.net, model.bridges)
    except SingularJacobian:
        return out
    pg = case.gen.pg * case.base_mva if pg_mw is None else pg_mw
    for k, post in of.post_flows(outages, flow_mw, pg):
        out[k] = float(np.max(np.abs(post[0]) * inv_rate))
    return out
