"""``PowerFlowModel``: the solver state of one network topology, owned by the caller.

A model holds what depends only on the topology — Ybus, the bus types, the
Jacobian patterns of the formulations used so far and the linear solver's
symbolic analysis of each — and runs every power flow of that network through
the one Newton engine (:func:`gridflow.newton.newton`):

* ``model.solve(...)`` — one case (T = 1), with the starts of ``init``;
* ``model.solve_batch(...)`` — T scenarios of loads, dispatch and outages;
* ``model.contingency(...)`` — N-1 (:mod:`gridflow.contingency`).

Thread safety: the shared parts (network, patterns, symbolic analyses) are
immutable once built and built under a lock; every numeric factorization
belongs to one thread (a thread-local solver per pattern, on the shared
analysis), so any number of threads may call one model at once and get the
answers a single thread gets.

Options that change the equations, per scenario:

* **Outages** (``branch_out``, ``gen_out``): Ybus changes by the outaged
  branches' admittances, the patterns do not; islands and bus types follow
  :mod:`gridflow.topology`.
* **Distributed slack** (``distributed_slack=True``): one more unknown, the
  slack power, shared by participation factors (:mod:`gridflow.slack`), solved
  inside the Newton iteration as pandapower's ``runpp(distributed_slack=True)``
  does. A generator pushed past Pmax (or below Pmin) is held at the limit and
  its share goes to the others (reported as ``p_limited``).
* **Generator Q limits** (``enforce_q_lims=True``): PYPOWER's rule — every
  generator at a PV bus beyond a Q limit is held at it, its bus becomes PQ,
  and the power flow is solved again from the last solution, until none is
  beyond (a bus stays PQ once switched). The other generators at a switched bus
  hold their output. With a distributed slack, the reference bus's generators
  are checked too (its voltage is then no longer held; the angle reference
  stays).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gridflow import linalg
from gridflow.backends.base import BatchSpec, BranchTerms
from gridflow.case import Case, check_case
from gridflow.errors import GridflowError
from gridflow.jacobian import JacobianPattern, jacobian_pattern, ybus_diagonal
from gridflow.network import Network, make_network
from gridflow.newton import CONVERGED, REASONS, newton
from gridflow.topology import Roles, bridges, distributed_reference, scenario_roles

log = logging.getLogger(__name__)

#: patterns (and symbolic analyses) a model keeps, least recently used dropped
_PATTERNS_KEPT = 16
#: Q-limit and P-limit rounds at most
_LIMIT_ROUNDS = 50
#: a generator counts as beyond a limit when past it by more than this, pu
_LIMIT_TOL = 1e-9
#: ``q_release``: a held bus whose voltage is this far on the wrong side of its setpoint gets its voltage
#: control back (a dead band, as voltage regulators have: without it buses at the edge flip back and
#: forth), at most MAX_RELEASES rounds per scenario
RELEASE_PU = 1e-3
MAX_RELEASES = 2


def topology_key(case: Case) -> str:
    """A hash of everything Ybus, bus types and islands depend on."""
    h = hashlib.blake2b(digest_size=16)
    b, br, g = case.bus, case.branch, case.gen
    for a in (b.type, b.gs, b.bs, br.f, br.t, br.r, br.x, br.b, br.tap, br.shift, br.status, br.g, br.r_asym,
              br.x_asym, br.g_asym, br.b_asym, g.bus, g.status):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def make_backend(backend, threads: int | None = None):
    """The backend object for ``backend`` ("cpu", "gpu", or a Backend instance)."""
    if not isinstance(backend, str):
        return backend
    if backend == "cpu":
        from gridflow.backends.cpu import CPUBackend

        return CPUBackend(threads)
    if backend == "gpu":
        from gridflow.backends import gpu_available

        if not gpu_available():
            raise GridflowError("backend 'gpu' needs CuPy and a CUDA device (pip install 'gridflow[gpu]')")
        from gridflow.backends.gpu import GPUBackend

        return GPUBackend()
    raise GridflowError(f"unknown backend {backend!r}; choose from auto, cpu, gpu")


_tokens = itertools.count()


class EngineState:
    """Ybus-level state: Jacobian patterns, symbolic analyses, per-thread factorizations, a thread pool.

    Parameters
    ----------
    Ybus : scipy.sparse.csr_matrix complex128 (nb, nb), sorted, every diagonal stored
    backend : "cpu", "gpu" or a backend object
    solver : "auto", "klu" or "superlu" (CPU)
    threads : int, optional
        Threads for batches on the CPU (default: the CPUs this process may use).
    """

    def __init__(self, Ybus, *, backend="cpu", solver: str = "auto", threads: int | None = None):
        self.Ybus = Ybus
        self.Yrow = np.repeat(np.arange(Ybus.shape[0]), np.diff(Ybus.indptr))
        self.Ydiag = ybus_diagonal(self.Yrow, Ybus.indices)
        self.solver_name = linalg.resolve_name(solver)
        self.backend = make_backend(backend, threads)
        self.threads = threads
        self._lock = threading.Lock()
        self._patterns: OrderedDict = OrderedDict()
        self._symbolic: dict = {}
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- patterns and solvers

    def pattern(self, ang, mag, slack_ref: int | None = None, slack_buses=None) -> JacobianPattern:
        """The Jacobian pattern of a formulation (built once, kept)."""
        ang = np.asarray(ang, np.int64)
        mag = np.asarray(mag, np.int64)
        sb = np.zeros(0, np.int64) if slack_buses is None else np.asarray(slack_buses, np.int64)
        fmt = getattr(self.backend, "pattern_fmt", "csc")
        key = hashlib.blake2b(b"".join([ang.tobytes(), b"|", mag.tobytes(), b"|", sb.tobytes(),
                                        str((slack_ref, fmt)).encode()]), digest_size=16).hexdigest()
        with self._lock:
            hit = self._patterns.get(key)
            if hit is not None:
                self._patterns.move_to_end(key)
                return hit
        pat = jacobian_pattern(self.Ybus, None, None, fmt, ang=ang, mag=mag, slack_ref=slack_ref, slack_buses=sb)
        object.__setattr__(pat, "_token", next(_tokens))
        sym = linalg.analyze(self.solver_name, pat) if fmt == "csc" else None
        with self._lock:
            if key in self._patterns:  # another thread built it meanwhile
                return self._patterns[key]
            self._patterns[key] = pat
            self._symbolic[pat._token] = sym
            while len(self._patterns) > _PATTERNS_KEPT:
                _, old = self._patterns.popitem(last=False)
                self._symbolic.pop(old._token, None)
        return pat

    def new_solver(self, pattern):
        """A fresh CPU solver for ``pattern`` on its shared symbolic analysis."""
        sym = self._symbolic.get(getattr(pattern, "_token", None))
        return linalg.make_solver(self.solver_name, pattern, sym)

    def local_solver(self, pattern, purpose: str = "step"):
        """This thread's solver for ``pattern`` (its numeric factorization is refactorized call after call);
        ``purpose`` keeps separate factorizations for separate uses (Newton steps, the chord Jacobian)."""
        solvers = self._local.__dict__.setdefault("solvers", {})
        token = getattr(pattern, "_token", None)
        token = None if token is None else (token, purpose)
        lin = solvers.get(token) if token is not None else None
        if lin is None:
            lin = self.new_solver(pattern)
            if token is not None:
                if len(solvers) >= _PATTERNS_KEPT:
                    solvers.pop(next(iter(solvers)))
                solvers[token] = lin
        return lin

    # ---------------------------------------------------------------- threads

    def threads_for(self, T: int, threads: int | None = None) -> int:
        n = threads or self.threads or len(os.sched_getaffinity(0))
        return max(1, min(int(n), int(T)))

    def run_threaded(self, fn, n_items: int, n_threads: int) -> None:
        """``fn(rows)`` over ``range(n_items)`` split in ``n_threads`` chunks (the model's pool)."""
        if n_threads <= 1 or n_items <= 1:
            fn(range(n_items))
            return
        with self._lock:
            if self._pool is None or self._pool._max_workers < n_threads:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="gridflow")
            pool = self._pool
        chunks = np.array_split(np.arange(n_items), n_threads)
        for f in [pool.submit(fn, c) for c in chunks]:
            f.result()

    def spec(self, T: int, out_t=None, out_k=None, free=None, terms=None, threads=None) -> BatchSpec:
        e = np.zeros(0, np.int64)
        return BatchSpec(T=int(T), out_t=e if out_t is None else np.asarray(out_t, np.int64),
                         out_k=e if out_k is None else np.asarray(out_k, np.int64), free=free, terms=terms,
                         threads=threads)

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class YbusModel(EngineState):
    """Engine state for a bare Ybus (the PYPOWER-shaped :func:`gridflow.newton.newtonpf`)."""


# ------------------------------------------------------------------------------------------- results of a run


@dataclass
class Solved:
    """What :meth:`PowerFlowModel.run` returns (host arrays, T scenarios; per unit).

    V (T, nb) complex; pg, qg (T, ng) generator outputs; slack (T,) distributed slack power;
    converged (T,) bool; iterations, chord_steps (T,) int; max_mismatch (T,) pu; worst_bus (T,) int;
    reason (T,) str; p_limited, q_limited (T, ng) bool: held at a P / Q limit; roles: the final bus roles.
    """

    V: np.ndarray
    pg: np.ndarray
    qg: np.ndarray
    slack: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    chord_steps: np.ndarray
    max_mismatch: np.ndarray
    worst_bus: np.ndarray
    reason: np.ndarray
    p_limited: np.ndarray
    q_limited: np.ndarray
    roles: Roles


class PowerFlowModel(EngineState):
    """The solver state of one network topology (see the module docstring).

    Parameters
    ----------
    case : Case
        The network; its loads and dispatch are the defaults of every call.
    backend : {"cpu", "gpu"} or a backend object
        Chosen once (:mod:`gridflow.backends`).
    solver : {"auto", "klu", "superlu"}
        CPU sparse LU.
    threads : int, optional
        CPU threads for batches.

    Raises
    ------
    CaseError
        The case cannot be solved by any power flow (:func:`gridflow.case.check_case`).
    """

    def __init__(self, case: Case, *, backend="cpu", solver: str = "auto", threads: int | None = None):
        check_case(case)
        self.case = case
        self.net: Network = make_network(case)
        self.key = topology_key(case)
        super().__init__(self.net.Ybus, backend=backend, solver=solver, threads=threads)
        self._bridges = None
        self._dist_ref = None
        self._terms = None

    # ---------------------------------------------------------------- topology data, built on demand

    @property
    def bridges(self) -> np.ndarray:
        """bool (nl,): branches whose outage alone splits an island (:func:`gridflow.topology.bridges`)."""
        if self._bridges is None:
            self._bridges = bridges(self.case, self.net)
        return self._bridges

    @property
    def dist_ref(self) -> int:
        """The distributed slack's angle reference bus (:func:`gridflow.topology.distributed_reference`)."""
        if self._dist_ref is None:
            self._dist_ref = distributed_reference(self.case, self.net, self.bridges)
        return self._dist_ref

    @property
    def branch_terms(self) -> BranchTerms:
        """Each branch's four Ybus admittances and their positions in Ybus.data."""
        if self._terms is None:
            from gridflow.network import branch_admittances

            c = self.case
            Yff, Yft, Ytf, Ytt = branch_admittances(c, self.net.branch_on)
            Y = self.Ybus

            def pos(i, k):
                start = Y.indptr[i]
                end = Y.indptr[i + 1]
                out = np.empty(len(i), np.int64)
                for j in range(len(i)):  # once per topology
                    row = Y.indices[start[j]:end[j]]
                    out[j] = start[j] + np.searchsorted(row, k[j])
                return out

            f, t = c.branch.f, c.branch.t
            self._terms = BranchTerms(f=f, t=t, Yff=Yff, Yft=Yft, Ytf=Ytf, Ytt=Ytt, pff=pos(f, f), pft=pos(f, t),
                                      ptf=pos(t, f), ptt=pos(t, t))
        return self._terms

    def check_same_topology(self, case: Case) -> None:
        if case is not self.case and topology_key(case) != self.key:
            raise GridflowError(f"case {case.name} has another topology than the model's ({self.case.name}): "
                                "make a PowerFlowModel for it")

    # ---------------------------------------------------------------- public calls

    def solve(self, case: Case | None = None, **options):
        """One AC power flow; see :func:`gridflow.solve` for the options."""
        from gridflow.solve import solve_with_model

        return solve_with_model(self, self.case if case is None else case, **options)

    def solve_batch(self, p_mw=None, q_mvar=None, **options):
        """T power flows of this network; see :func:`gridflow.solve_batch` for the options (``case=``: a
        what-if of the same topology whose loads and dispatch are the defaults)."""
        from gridflow.batch import batch_with_model

        return batch_with_model(self, p_mw, q_mvar, **options)

    def contingency(self, outages=None, **options):
        """N-1 contingency analysis; see :func:`gridflow.contingency`."""
        from gridflow.contingency import contingency_with_model

        return contingency_with_model(self, outages, **options)

    # ---------------------------------------------------------------- the driver

    def roles(self, T: int, *, branch_out=None, gen_out=None, slack_ref=None) -> Roles:
        """Bus roles of T scenarios (:func:`gridflow.topology.scenario_roles`)."""
        need_bridges = branch_out is not None and any(len(b) == 1 for b in branch_out)
        return scenario_roles(self.case, self.net, T, branch_out=branch_out, gen_out=gen_out, slack_ref=slack_ref,
                              bridge=self.bridges if need_bridges else None)

    def run(self, V0, *, pd, qd, pg, qg, roles: Roles, branch_out=None, participation=None, q_lims: bool = False,
            p_lims: bool = True, q_release: bool = False, q_held=None, tol: float, max_iter: int,
            line_search: bool = True, chord: bool = True, threads: int | None = None,
            case: Case | None = None) -> Solved:
        """Solve T scenarios: loads ``pd``, ``qd`` (T, nb), generator schedules ``pg``, ``qg`` (T, ng),
        per unit; starts ``V0`` (T, nb) (setpoints applied by the caller); ``roles`` from :meth:`roles`;
        ``branch_out`` list of T int arrays; ``participation`` (T, ng) generator participation
        factors of a distributed slack (any scale; normalized here over each scenario's in-service
        generators in the reference bus's island), or None for single slack buses; ``p_lims``: hold
        the distributed slack's participants within [Pmin, Pmax]; ``q_lims``: PYPOWER's Q-limit rule;
        ``q_release``: also give a held bus back its voltage control when its voltage ends on the side of its
        setpoint that the held limit cannot explain (:data:`RELEASE_PU` dead band, at most
        :data:`MAX_RELEASES` rounds); ``q_held``: (mask (T, ng), q (T, ng) pu), generators held at a Q limit
        from the start (a warm start's held set: their buses start as PQ);
        ``case``: the what-if whose generator limits apply (same topology; default the model's case).
        """
        case = self.case if case is None else case
        T = roles.T
        dist = participation is not None
        gen = case.gen
        pg = np.array(pg, dtype=float)
        qg = np.array(qg, dtype=float)
        p_free = roles.p_free.copy()
        q_free = roles.q_free.copy()
        gen_on = roles.gen_on
        p_limited = np.zeros((T, case.ng), bool)
        q_limited = np.zeros((T, case.ng), bool)
        releases = np.zeros(T, np.int64)
        if q_lims and q_held is not None:
            hm = np.broadcast_to(np.asarray(q_held[0], bool), (T, case.ng)) & gen_on
            q_limited |= hm
            qg = np.where(hm, np.broadcast_to(np.asarray(q_held[1], float), (T, case.ng)), qg)
            for t in np.flatnonzero(hm.any(axis=1)):
                buses = np.unique(gen.bus[hm[t]])
                # a bus that is a slack in this scenario (an island's own, or every slack bus without a distributed
                # slack) keeps its voltage: never held
                buses = buses[roles.p_free[t, buses]]
                q_free[t, buses] = roles.energized[t, buses]
                q_limited[t] &= np.isin(gen.bus, buses)
        wg = None
        if dist:
            wg = np.where(gen_on, np.maximum(np.asarray(participation, float), 0.0), 0.0)
            main = _island_of(self.net, roles, roles.slack_ref)
            wg = np.where(main[:, gen.bus], wg, 0.0)
        out_t, out_k = _pairs(branch_out, T)
        # with Q limits, every bus whose voltage a generator holds may become PQ: the pattern carries them all
        # from the start (their Q rows pinned until they switch), so switching changes pins, not the pattern
        # (one symbolic analysis instead of one per set of switched buses)
        q_pool = (roles.energized & ~roles.q_free).any(axis=0) if q_lims else None
        terms = self.branch_terms if len(out_t) else None
        V = np.array(V0, dtype=complex)
        slack = np.zeros(T)
        conv = np.zeros(T, bool)
        iters = np.zeros(T, np.int64)
        chords = np.zeros(T, np.int64)
        norm = np.full(T, np.inf)
        worst = np.zeros(T, np.int64)
        reason = np.full(T, "", dtype=object)
        todo = np.arange(T)
        for _round in range(_LIMIT_ROUNDS):
            if dist:
                wsum = wg[todo].sum(axis=1)
                none = wsum <= 0
                if none.any():
                    reason[todo[none]] = "no generator left to take the distributed slack"
                    conv[todo[none]] = False
                    todo = todo[~none]
            if not len(todo):
                break
            sub = _subset_roles(roles, todo, p_free, q_free)
            w_bus = None
            if dist:
                w_g = wg[todo] / wg[todo].sum(axis=1, keepdims=True)
                w_bus = np.zeros((len(todo), case.nb))
                for j in range(len(todo)):
                    w_bus[j] = np.bincount(gen.bus, w_g[j], minlength=case.nb)
            pattern, free = self._formulation(sub, dist, q_pool if q_lims else None)
            Sbus = _sbus(case, sub, pd[todo], qd[todo], pg[todo], qg[todo])
            sel = np.isin(out_t, todo)
            loc = np.full(T, -1, np.int64)
            loc[todo] = np.arange(len(todo))
            spec = self.spec(len(todo), loc[out_t[sel]], out_k[sel], free, terms, threads)
            ops = self.backend.batch_ops(self, pattern, spec)
            try:
                out = newton(ops, pattern, Sbus, V[todo], w=w_bus, free=free, tol=tol, max_iter=max_iter,
                             line_search=line_search, chord=chord)
            finally:
                ops.close()
            V[todo] = out.V
            slack[todo] = out.slack
            conv[todo] = out.converged
            iters[todo] += out.iterations
            chords[todo] += out.chord_steps
            norm[todo] = out.max_mismatch
            worst[todo] = out.worst_bus
            reason[todo] = [REASONS[int(s)] for s in out.status]
            ok = todo[out.status == CONVERGED]
            again = np.zeros(T, bool)
            if dist and p_lims and len(ok):
                again |= _hold_p_limits(case, ok, wg, pg, slack, p_limited)
            if q_lims and len(ok):
                held = _hold_q_limits(case, self._injections(V, ok, out_t, out_k), ok, V, qd, qg, roles, q_free,
                                      q_limited)
                again |= held
                if q_release:
                    calm = ok[~held[ok] & (releases[ok] < MAX_RELEASES)]
                    back = _release_q_limits(case, calm, V, qg, q_free, q_limited)
                    releases += back
                    again |= back
            todo = np.flatnonzero(again)
            if not len(todo):
                break
            log.info("limits: %d scenarios solved again (%s held)", len(todo),
                     ", ".join(n for n, m in (("P", p_limited), ("Q", q_limited)) if m[todo].any()))
        else:
            conv[todo] = False
            reason[todo] = f"generator limits still changing after {_LIMIT_ROUNDS} rounds"
        ref0 = int(self.net.ref[0])
        if dist and roles.slack_ref != ref0:
            # the angle was held at another bus (model.dist_ref): the case's slack bus gets the start's angle back
            # wherever it shares the reference's island, as if it had been the reference
            V0a = np.broadcast_to(np.asarray(V0, dtype=complex), V.shape)
            main = _island_of(self.net, roles, roles.slack_ref)
            for t in np.flatnonzero(main[:, ref0] & (np.abs(V[:, ref0]) > 0)):
                V[t, main[t]] *= np.exp(1j * (np.angle(V0a[t, ref0]) - np.angle(V[t, ref0])))
        final = Roles(roles.energized, p_free, q_free, gen_on, roles.slack_ref, roles.new_slack, roles.main)
        Sinj = self._injections(V, np.arange(T), out_t, out_k)
        pg_out, qg_out = _gen_outputs(case, Sinj, pd, qd, pg, qg, wg, slack, final, q_limited)
        return Solved(V=V, pg=pg_out, qg=qg_out, slack=slack, converged=conv, iterations=iters, chord_steps=chords,
                      max_mismatch=norm, worst_bus=worst, reason=reason, p_limited=p_limited, q_limited=q_limited,
                      roles=final)

    def _injections(self, V, rows, out_t, out_k) -> np.ndarray:
        """Bus injections ``S = V conj(Ybus V)`` (len(rows), nb), pu, of the scenarios ``rows`` with each
        scenario's branch outages (``out_t``, ``out_k`` from :func:`_pairs`) taken out of its Ybus."""
        rows = np.asarray(rows, np.int64)
        Vr = V[rows]
        Ibus = np.asarray((self.Ybus @ Vr.T).T)
        if len(out_t) and len(rows):
            loc = np.full(len(V), -1, np.int64)
            loc[rows] = np.arange(len(rows))
            sel = loc[out_t] >= 0
            j, k = loc[out_t[sel]], out_k[sel]
            tm = self.branch_terms
            f, t = tm.f[k], tm.t[k]
            np.subtract.at(Ibus, (j, f), tm.Yff[k] * Vr[j, f] + tm.Yft[k] * Vr[j, t])
            np.subtract.at(Ibus, (j, t), tm.Ytf[k] * Vr[j, f] + tm.Ytt[k] * Vr[j, t])
        return Vr * np.conj(Ibus)

    def _formulation(self, roles: Roles, dist: bool, q_pool=None):
        """Pattern covering every scenario's free equations (and the Q rows of ``q_pool`` (nb,), pinned where
        not free), and the per-scenario free rows (or None)."""
        p_any = roles.p_free.any(axis=0)
        q_any = roles.q_free.any(axis=0)
        if q_pool is not None:
            q_any = q_any | q_pool
        slack_ref = roles.slack_ref if dist else None
        if dist:
            p_any[slack_ref] = False  # its P row is the slack row
            slack_buses = np.unique(self.case.gen.bus[roles.gen_on.any(axis=0)])
        else:
            slack_buses = None
        ang = np.flatnonzero(p_any)
        mag = np.flatnonzero(q_any)
        pattern = self.pattern(ang, mag, slack_ref, slack_buses)
        free = np.concatenate([roles.p_free[:, pattern.prow], roles.q_free[:, pattern.mag]], axis=1)
        if dist:
            free[:, 0] = roles.energized[:, slack_ref]
        return pattern, (None if free.all() else free)

# ------------------------------------------------------------------------------------------- helpers


def _hold_p_limits(case, ok, wg, pg, slack, p_limited) -> np.ndarray:
    """Distributed slack: hold participants pushed beyond Pmax / below Pmin at the limit; True where re-solved.

    A unit whose schedule is already outside its limits (data) is held at its schedule, never moved
    further out; the others' share is found again by the next round.
    """
    gen = case.gen
    again = np.zeros(len(slack), bool)
    for t in ok:
        tot = wg[t].sum()
        if tot <= 0:
            continue
        p = pg[t] + wg[t] / tot * slack[t]
        part = wg[t] > 0
        hi = np.maximum(gen.pmax, pg[t])
        lo = np.minimum(gen.pmin, pg[t])
        over = part & (p > hi + _LIMIT_TOL)
        under = part & (p < lo - _LIMIT_TOL)
        if over.any() or under.any():
            # the units beyond a limit are held there; the slack is found again and shared by the
            # others in proportion to their participation factors (renormalized without the held ones)
            pg[t] = np.where(over, hi, np.where(under, lo, pg[t]))
            wg[t] = np.where(over | under, 0.0, wg[t])
            p_limited[t] |= over | under
            slack[t] = 0.0
            again[t] = True
    return again


def _hold_q_limits(case, Sinj, ok, V, qd, qg, roles, q_free, q_limited) -> np.ndarray:
    """PYPOWER's Q-limit rule (see the module docstring) on the scenarios ``ok`` (their bus injections
    ``Sinj`` (len(ok), nb)); True where re-solved."""
    gen = case.gen
    again = np.zeros(len(V), bool)
    for i, t in enumerate(ok):
        on = roles.gen_on[t]
        q = _gen_q(case, Sinj[i], qd[t], on, qg[t], q_limited[t])
        controlled = roles.energized[t] & ~q_free[t]
        # a bus whose P is pinned is a slack (every slack bus without a distributed slack; an island's own with
        # one): it keeps its voltage whatever its Q (documented); holding it would leave its island without
        # a voltage reference (a lone generator cut off by its step-up transformer: a singular Jacobian)
        controlled[~roles.p_free[t]] = False
        cand = on & controlled[gen.bus] & ~q_limited[t]
        over = cand & (q > gen.qmax + _LIMIT_TOL)
        under = cand & (q < gen.qmin - _LIMIT_TOL)
        if not (over.any() or under.any()):
            continue
        buses = np.unique(gen.bus[over | under])
        at_bus = on & np.isin(gen.bus, buses)
        qg[t] = np.where(over, gen.qmax, np.where(under, gen.qmin, np.where(at_bus & ~q_limited[t], q, qg[t])))
        q_limited[t] |= over | under
        q_free[t, buses] = True
        # the other generators at a switched bus hold their output (not at a limit: not flagged)
        again[t] = True
    return again

def _release_q_limits(case, rows, V, qg, q_free, q_limited) -> np.ndarray:
    """Give voltage control back to held buses whose voltage ended on the side of the setpoint their limit
    cannot explain (held at Qmax yet above the setpoint, or at Qmin yet below it, by more than
    :data:`RELEASE_PU`), their voltage (in ``V``) back at the setpoint; True where re-solved. A generator with
    Qmin = Qmax never regulates: never released."""
    gen = case.gen
    again = np.zeros(len(V), bool)
    if not len(rows):
        return again
    vset = np.zeros(case.nb)
    on = np.flatnonzero(gen.status)[::-1]
    _, last = np.unique(gen.bus[on], return_index=True)  # the last generator listed at a bus sets it (MATPOWER)
    vset[gen.bus[on[last]]] = gen.vg[on[last]]
    span = gen.qmax - gen.qmin > 1e-9
    for t in rows:
        lim = q_limited[t] & span
        if not lim.any():
            continue
        vm = np.abs(V[t][gen.bus])
        at_max = lim & (qg[t] >= gen.qmax - _LIMIT_TOL)
        at_min = lim & (qg[t] <= gen.qmin + _LIMIT_TOL)
        wrong = (at_max & (vm > vset[gen.bus] + RELEASE_PU)) | (at_min & (vm < vset[gen.bus] - RELEASE_PU))
        if wrong.any():
            buses = np.unique(gen.bus[wrong])
            q_free[t, buses] = False
            q_limited[t, np.isin(gen.bus, buses)] = False
            # back under voltage control: the bus starts the next solve at its setpoint (Vm is no unknown there)
            V[t, buses] = vset[buses] * V[t, buses] / np.abs(V[t, buses])
            again[t] = True
    return again


def _gen_outputs(case, S, pd, qd, pg, qg, wg, slack, roles: Roles, q_limited):
    """Generator P and Q (T, ng), pu, as MATPOWER's ``pfsoln`` assigns them, with the distributed slack;
    ``S`` (T, nb): the solved bus injections (:meth:`PowerFlowModel._injections`)."""
    gen = case.gen
    T = len(S)
    P = np.zeros((T, case.ng))
    Q = np.zeros((T, case.ng))
    for t in range(T):
        on = roles.gen_on[t]
        Sinj = S[t]
        # buses whose Q is an unknown of the generators: voltage-controlled ones (Q pinned)
        held = ~roles.q_free[t] & roles.energized[t]
        q = _gen_q(case, Sinj, qd[t], on, qg[t], q_limited[t])
        Q[t] = np.where(on, np.where(held[gen.bus] | q_limited[t], q, qg[t]), 0.0)
        p = np.where(on, pg[t], 0.0)
        if wg is not None and wg[t].sum() > 0:
            p = p + wg[t] / wg[t].sum() * slack[t]
        # single slack buses (every slack without a distributed slack; with one, the slacks of the other
        # islands): the first generator at each takes the bus's P balance
        for r in np.flatnonzero(roles.energized[t] & ~roles.p_free[t]):
            at = np.flatnonzero(on & (gen.bus == r))
            if len(at):
                p[at[0]] = Sinj[r].real + pd[t, r] - p[at[1:]].sum()
        P[t] = p
    return P, Q



def _pairs(branch_out, T):
    if branch_out is None:
        e = np.zeros(0, np.int64)
        return e, e
    ts, ks = [], []
    for t, b in enumerate(branch_out):
        b = np.asarray(b, np.int64).reshape(-1)
        ts.append(np.full(len(b), t, np.int64))
        ks.append(b)
    return (np.concatenate(ts) if ts else np.zeros(0, np.int64)), (np.concatenate(ks) if ks else np.zeros(0, np.int64))


def _subset_roles(roles: Roles, idx, p_free, q_free) -> Roles:
    return Roles(roles.energized[idx], p_free[idx], q_free[idx], roles.gen_on[idx], roles.slack_ref,
                 {j: roles.new_slack[t] for j, t in enumerate(idx) if t in roles.new_slack},
                 None if roles.main is None else roles.main[idx])


def _island_of(net: Network, roles: Roles, bus) -> np.ndarray:
    """bool (T, nb): buses in the island of ``bus`` in each scenario (energized buses connected to it).

    With a distributed slack every energized bus without a slack of its own belongs to the reference
    bus's island: the others hold their angle at a pinned slack (``p_free`` False).
    """
    from gridflow.topology import island_mask

    return island_mask(net, roles, bus)


def _sbus(case: Case, roles: Roles, pd, qd, pg, qg):
    """Scheduled injections (T, nb), pu: in-service generation minus load, 0 where de-energized."""
    gen = case.gen
    T = roles.T
    S = np.zeros((T, case.nb), complex)
    for t in range(T):
        on = roles.gen_on[t]
        S[t] = np.bincount(gen.bus[on], pg[t, on], minlength=case.nb) + 1j * np.bincount(gen.bus[on], qg[t, on],
                                                                                         minlength=case.nb)
    S -= pd + 1j * qd
    return np.where(roles.energized, S, 0.0)


def _gen_q(case: Case, Sinj, qd, on, qg, fixed):
    """Generator Q (ng,), pu, MATPOWER's rule: a bus's Q (from the bus injections ``Sinj`` (nb,)) shared in
    proportion to the generators' Q ranges (equally where the ranges are zero); generators with ``fixed``
    keep ``qg`` and the rest share what remains."""
    gen = case.gen
    nb = case.nb
    Qg = np.zeros(case.ng)
    share = on & ~fixed
    idx = np.flatnonzero(share)
    if not len(idx):
        return np.where(on, qg, 0.0)
    gbus = gen.bus[idx]
    Qtot = Sinj.imag + qd - np.bincount(gen.bus[on & fixed], qg[on & fixed], minlength=nb)
    qmin = gen.qmin[idx].copy()
    qmax = gen.qmax[idx].copy()
    M = np.abs(Qtot[gbus]).sum() + np.abs(np.r_[qmin[np.isfinite(qmin)], qmax[np.isfinite(qmax)]]).sum()
    M = max(M, 1.0)
    qmin = np.where(np.isfinite(qmin), qmin, -M)
    qmax = np.where(np.isfinite(qmax), qmax, M)
    count = np.bincount(gbus, minlength=nb)
    bus_qmin = np.bincount(gbus, qmin, minlength=nb)
    bus_qmax = np.bincount(gbus, qmax, minlength=nb)
    rng = bus_qmax[gbus] - bus_qmin[gbus]
    frac = np.where(rng > 0, (Qtot[gbus] - bus_qmin[gbus]) / np.where(rng > 0, rng, 1.0), 0.0)
    Qg[idx] = np.where(rng > 0, qmin + frac * (qmax - qmin), Qtot[gbus] / count[gbus])
    Qg[on & fixed] = qg[on & fixed]
    return Qg
