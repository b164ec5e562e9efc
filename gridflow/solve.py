"""``solve(case)``: one AC power flow, from a Case to a PowerFlowResult.

Chooses the start (``init``), runs Newton–Raphson (:mod:`gridflow.newton`),
optionally enforces generator reactive limits, and builds the result tables.

Convergence tolerance: ``tol_mva`` is in MVA: the power flow has converged
when every bus's |dP| and |dQ| is below ``tol_mva`` MW / MVAr. (pandapower
and MATPOWER compare their ``tolerance_mva`` with the per-unit mismatch, which
is MVA only on a 1 MVA base; on a 100 MVA base their 1e-8 is 1e-6 MVA.)

Network data that depends only on topology (Ybus, bus types, the Jacobian's
pattern and the linear solver's symbolic analysis) is cached, keyed by a hash
of the topology arrays, so what-if cases that change only loads or dispatch
reuse it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.case import Case, check_case
from gridflow.errors import GridflowError
from gridflow.jacobian import jacobian_pattern, ybus_diagonal
from gridflow.linalg import make_solver
from gridflow.network import Network, make_network, make_sbus
from gridflow.newton import newtonpf
from gridflow.results import PowerFlowResult, gen_dispatch, make_result

log = logging.getLogger(__name__)

INITS = ("auto", "flat", "dc", "case")
#: the starts "auto" tries, in order
AUTO_SEQUENCE = ("case", "dc", "flat")
#: under "auto", a solution with some energized |V| below this (pu) is taken for a spurious
#: low-voltage solution and the next start is tried; the highest-voltage solution wins
VM_PLAUSIBLE = 0.5
_CACHE_SIZE = 8
_cache: OrderedDict = OrderedDict()


def topology_key(case: Case) -> str:
    """A hash of everything Ybus, bus types and islands depend on."""
    h = hashlib.blake2b(digest_size=16)
    b, br, g = case.bus, case.branch, case.gen
    for a in (b.type, b.gs, b.bs, br.f, br.t, br.r, br.x, br.b, br.tap, br.shift, br.status, br.g, br.r_asym,
              br.x_asym, br.g_asym, br.b_asym, g.bus, g.status):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class Prepared:
    """Topology-dependent solver data for one case: network, Jacobian patterns, linear solvers."""

    def __init__(self, case: Case, solver: str = "auto"):
        self.net: Network = make_network(case)
        self.solver = solver
        self._lin: dict = {}
        Y = self.net.Ybus
        self.Yrow = np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))
        self.diag = ybus_diagonal(self.Yrow, Y.indices)

    def linear(self, pv, pq):
        """(pattern, linear solver) for these bus types, built once."""
        key = (pv.tobytes(), pq.tobytes(), self.solver)
        if key not in self._lin:
            if len(self._lin) > 4:
                self._lin.pop(next(iter(self._lin)))
            pattern = jacobian_pattern(self.net.Ybus, pv, pq)
            # no unknowns (only slack buses energized): nothing to factorize
            self._lin[key] = (pattern, make_solver(self.solver, pattern) if pattern.n else None)
        return self._lin[key]


def prepare(case: Case, solver: str = "auto") -> Prepared:
    """The cached :class:`Prepared` for this case's topology."""
    key = (topology_key(case), solver)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    prep = Prepared(case, solver)
    _cache[key] = prep
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return prep


def initial_voltage(case: Case, net: Network, init: str, Sbus=None) -> np.ndarray:
    """Start voltages, pu (nb,).

    * ``flat``: |V| = 1, angle 0;
    * ``case``: the case's stored Vm and Va (MATPOWER's default start);
    * ``dc``: angles of the DC power flow, |V| = 1;

    in each, generator buses take their generators' voltage setpoints and
    de-energized buses are 0.
    """
    nb = case.nb
    if init == "flat":
        V = np.ones(nb, complex)
    elif init == "case":
        V = case.bus.vm * np.exp(1j * case.bus.va)
    elif init == "dc":
        V = np.exp(1j * dc_angles(case, net, Sbus))
    else:
        raise GridflowError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    return _with_setpoints(case, net, V)


def _with_setpoints(case: Case, net: Network, V) -> np.ndarray:
    """V (nb,) with generator buses at their setpoints (angle kept), 1 pu where V is 0, 0 where de-energized."""
    V = np.where(np.abs(V) > 0, V, 1.0)
    g = net.gen_on
    gb = case.gen.bus[g]
    V[gb] = case.gen.vg[g] * V[gb] / np.abs(V[gb])
    return np.where(net.energized, V, 0.0)


def dc_angles(case: Case, net: Network, Sbus=None) -> np.ndarray:
    """Bus voltage angles of the DC power flow, radians (nb,); ref buses keep their stored angle."""
    br = case.branch
    on = net.branch_on
    b = np.where(on, 1.0 / np.where(br.x != 0, br.x, 1e-6), 0.0) / br.tap
    nb, nl = case.nb, case.nl
    rows = np.r_[np.arange(nl), np.arange(nl)]
    Cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (rows, np.r_[br.f, br.t])), shape=(nl, nb))
    Bf = sp.diags(b) @ Cft
    Bbus = (Cft.T @ Bf).tocsc()
    Pbusinj = Cft.T @ (-b * br.shift)
    if Sbus is None:
        Sbus = make_sbus(case, net)
    P = Sbus.real - Pbusinj - case.bus.gs
    Va = np.where(net.energized, case.bus.va, 0.0)
    ref = net.ref
    pvpq = np.sort(net.pvpq)
    if len(pvpq):
        rhs = P[pvpq] - Bbus[pvpq][:, ref] @ Va[ref]
        A = Bbus[pvpq][:, pvpq].tocsc()
        try:
            Va[pvpq] = spla.spsolve(A, rhs)
        except RuntimeError:
            pass
        if not np.isfinite(Va).all():
            Va = np.where(net.energized, case.bus.va, 0.0)
    return Va


def solve(case: Case, *, backend: str = "auto", init: str = "auto", tol_mva: float = 1e-8, max_iter: int = 30,
          enforce_q_lims: bool = False, solver: str = "auto", line_search: bool = True,
          V0=None) -> PowerFlowResult:
    """Solve the AC power flow of ``case`` by Newton–Raphson.

    Parameters
    ----------
    case : Case
    backend : {"auto", "cpu", "gpu"}
        Single cases run on the CPU ("gpu" is refused with a pointer to
        :func:`gridflow.solve_batch`, where a GPU wins).
    init : {"auto", "flat", "dc", "case"}
        Start. "auto" tries the case's stored voltages, then the DC power
        flow, then a flat start, each with a line-searched Newton, and stops at
        the first solution whose voltages are all above ``VM_PLAUSIBLE``
        (a power flow can have low-voltage solutions; operators want the
        high-voltage one).
    tol_mva : float
        Converged when every |dP| and |dQ| is below this many MW / MVAr.
    max_iter : int
        Newton iterations per start (and per Q-limit round).
    enforce_q_lims : bool
        Switch PV buses whose generators exceed Q limits to PQ at the limit, and re-solve.
    solver : {"auto", "klu", "superlu"}
        CPU sparse LU.
    line_search : bool
        Backtracking step control (see :mod:`gridflow.newton`).
    V0 : complex array (nb,), optional
        A warm start (e.g. the solution of a nearby case), tried before ``init``'s starts;
        generator buses still take their setpoints.

    Returns
    -------
    PowerFlowResult
        ``converged`` is False when no start converged; nothing is raised for
        that (the CLI turns it into exit code 3).
    """
    if backend not in ("auto", "cpu", "gpu"):
        raise GridflowError(f"unknown backend {backend!r}; choose from auto, cpu, gpu")
    if init not in INITS:
        raise GridflowError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    if not (tol_mva > 0):
        raise GridflowError(f"tol_mva must be positive, got {tol_mva}")
    if max_iter < 1:
        raise GridflowError(f"max_iter must be at least 1, got {max_iter}")
    if backend == "gpu":
        raise GridflowError("single-case solves run on the CPU (a GPU wins on batches): use "
                            "gridflow.solve_batch(case, ..., backend='gpu')")
    check_case(case)
    prep = prepare(case, solver)
    net = prep.net
    Sbus = make_sbus(case, net)
    tol = tol_mva / case.base_mva
    starts = AUTO_SEQUENCE if init == "auto" else (init,)
    if V0 is not None:
        V0 = np.asarray(V0, dtype=complex)
        if V0.shape != (case.nb,) or not np.isfinite(V0).all():
            raise GridflowError(f"V0 must be {case.nb} finite complex voltages")
        starts = ("warm",) + starts
    warm = V0
    total_it = 0
    best = None
    for start in starts:
        V0 = _with_setpoints(case, net, warm) if start == "warm" else initial_voltage(case, net, start, Sbus)
        pattern, lin = prep.linear(net.pv, net.pq)
        r = newtonpf(net.Ybus, Sbus, V0, net.ref, net.pv, net.pq, tol=tol, max_iter=max_iter,
                     line_search=line_search, pattern=pattern, lin=lin)
        total_it += r.iterations
        vmin = float(np.min(np.abs(r.V[net.energized]), initial=1.0))
        log.info("init=%s: converged=%s after %d iterations (%.2e MVA), min |V| %.3f pu", start, r.converged,
                 r.iterations, r.max_mismatch * case.base_mva, vmin)
        if r.converged and (best is None or vmin > best[2]):
            best = (r, start, vmin)
        if r.converged and (init != "auto" or vmin >= VM_PLAUSIBLE):
            break
    if best is not None:
        r, start, _ = best
    if r.converged and enforce_q_lims:
        r, case_q, extra_it, pv_fixed = _enforce_q_lims(case, prep, Sbus, r, tol, max_iter, line_search)
        total_it += extra_it
    message = "" if r.converged else (
        f"power flow did not converge (init={init}, {total_it} iterations): worst mismatch "
        f"{r.max_mismatch * case.base_mva:.4g} MVA at bus {int(case.bus.number[r.worst_bus])}"
        + (f"; {r.reason}" if r.reason else ""))
    return make_result(case, net, r.V, converged=r.converged, iterations=total_it, max_mismatch_pu=r.max_mismatch,
                       worst_bus=r.worst_bus, init=start, backend="cpu", message=message)


def _enforce_q_lims(case, prep, Sbus, r, tol, max_iter, line_search):
    """PYPOWER's Q-limit loop: fix violating generators at their limit, PV -> PQ, re-solve."""
    net = prep.net
    pv = net.pv.copy()
    pq = net.pq.copy()
    Sbus = Sbus.copy()
    gen = case.gen
    fixed = np.zeros(case.ng, bool)
    qfix = np.zeros(case.ng)
    extra = 0
    for _ in range(len(pv) + 1):
        _, Qg = gen_dispatch(case, net.Ybus, r.V, net.ref, net.gen_on)
        candidates = net.gen_on & ~fixed & np.isin(gen.bus, pv)
        over = candidates & (Qg > gen.qmax + tol)
        under = candidates & (Qg < gen.qmin - tol)
        if not (over | under).any():
            break
        fixed |= over | under
        qfix = np.where(over, gen.qmax, np.where(under, gen.qmin, qfix))
        buses = np.unique(gen.bus[over | under])
        # generators at a switched bus hold Q: at the limit if violating, else their current output
        at_bus = net.gen_on & np.isin(gen.bus, buses)
        hold = at_bus & ~(over | under) & ~fixed
        qfix = np.where(hold, Qg, qfix)
        fixed |= at_bus
        pv = np.setdiff1d(pv, buses)
        pq = np.sort(np.r_[pq, buses])
        Qsched = np.zeros(case.nb)
        np.add.at(Qsched, gen.bus[fixed], qfix[fixed] - gen.qg[fixed])
        Sbus_q = Sbus + 1j * Qsched
        pattern, lin = prep.linear(pv, pq)
        r = newtonpf(net.Ybus, Sbus_q, r.V, net.ref, pv, pq, tol=tol, max_iter=max_iter, line_search=line_search,
                     pattern=pattern, lin=lin)
        extra += r.iterations
        if not r.converged:
            break
    return r, case, extra, fixed
