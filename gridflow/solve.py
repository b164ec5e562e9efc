"""``solve(case)``: one AC power flow, from a Case to a PowerFlowResult.

Chooses the start (``init``), runs the Newton engine through the case's
:class:`~gridflow.model.PowerFlowModel` (optionally with generator reactive
limits and a distributed slack) and builds the result tables.

Convergence tolerance: ``tol_mva`` is in MVA: the power flow has converged
when every bus's |dP| and |dQ| is below ``tol_mva`` MW / MVAr. (pandapower
and MATPOWER compare their ``tolerance_mva`` with the per-unit mismatch, which
is MVA only on a 1 MVA base; on a 100 MVA base their 1e-8 is 1e-6 MVA.)

Models are cached by topology (:func:`model_for`), so what-if cases that
change only loads or dispatch reuse Ybus, the Jacobian patterns and the
symbolic analyses. The cache holds models, never a factorization in use:
numeric factorizations are per thread (see :mod:`gridflow.model`), so
``solve`` may be called from several threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np

from gridflow.case import Case, check_case
from gridflow.errors import GridflowError
from gridflow.model import PowerFlowModel, topology_key
from gridflow.results import PowerFlowResult, make_result
from gridflow.slack import participation_factors
from gridflow.start import AUTO_SEQUENCE, INITS, initial_voltage, with_setpoints

log = logging.getLogger(__name__)

#: under "auto", a solution with some energized |V| below this (pu) is taken for a spurious
#: low-voltage solution and the next start is tried; the highest-voltage solution wins
VM_PLAUSIBLE = 0.5
_CACHE_SIZE = 8
_models: OrderedDict = OrderedDict()
_models_lock = threading.Lock()


def model_for(case: Case, solver: str = "auto") -> PowerFlowModel:
    """The cached :class:`PowerFlowModel` for this case's topology (made on first use)."""
    key = (topology_key(case), solver)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
            return model
    model = PowerFlowModel(case, solver=solver)
    with _models_lock:
        model = _models.setdefault(key, model)
        while len(_models) > _CACHE_SIZE:
            _models.popitem(last=False)
    return model


def check_options(*, backend="auto", init="auto", tol_mva=1e-8, max_iter=30):
    if backend not in ("auto", "cpu", "gpu"):
        raise GridflowError(f"unknown backend {backend!r}; choose from auto, cpu, gpu")
    if init not in INITS:
        raise GridflowError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    if not (tol_mva > 0):
        raise GridflowError(f"tol_mva must be positive, got {tol_mva}")
    if max_iter < 1:
        raise GridflowError(f"max_iter must be at least 1, got {max_iter}")


def solve(case: Case, *, backend: str = "auto", init: str = "auto", tol_mva: float = 1e-8, max_iter: int = 30,
          enforce_q_lims: bool = False, distributed_slack: bool = False, participation=None,
          enforce_p_lims: bool = True, q_release: bool = False, solver: str = "auto", line_search: bool = True,
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
        flow, then a flat start, and stops at the first solution whose voltages
        are all above ``VM_PLAUSIBLE`` (a power flow can have low-voltage
        solutions; operators want the high-voltage one).
    tol_mva : float
        Converged when every |dP| and |dQ| is below this many MW / MVAr.
    max_iter : int
        Newton iterations per start (and per limit round).
    enforce_q_lims : bool
        Hold generators beyond their Q limits at the limit (PV -> PQ) and re-solve (PYPOWER's rule).
    distributed_slack : bool
        Share the slack power among generators by ``participation`` inside the Newton iteration
        (pandapower's ``runpp(distributed_slack=True)``), generators held at Pmax/Pmin.
    participation : None, "pmax", "headroom" or array (ng,)
        Participation factors (:func:`gridflow.slack.participation_factors`).
    q_release : bool
        With ``enforce_q_lims``: a held bus whose voltage ends on the side of its setpoint that its limit
        cannot explain gets its voltage control back (PYPOWER never releases; see
        :meth:`gridflow.model.PowerFlowModel.run`).
    enforce_p_lims : bool
        With a distributed slack: hold participants pushed beyond Pmax or below Pmin at the limit and
        share their part among the others (reported in ``extra["p_limited"]``). pandapower's
        ``runpp(distributed_slack=True)`` does not; ``False`` reproduces it.
    solver : {"auto", "klu", "superlu"}
        CPU sparse LU.
    line_search : bool
        Backtracking step control (see :mod:`gridflow.newton`).
    V0 : complex array (nb,), optional
        A warm start (e.g. the solution of a nearby case), tried before ``init``'s starts;
        voltage-controlled buses still take their setpoints.

    Returns
    -------
    PowerFlowResult
        ``converged`` is False when no start converged; nothing is raised for
        that (the CLI turns it into exit code 3).
    """
    check_options(backend=backend, init=init, tol_mva=tol_mva, max_iter=max_iter)
    if backend == "gpu":
        raise GridflowError("single-case solves run on the CPU (a GPU wins on batches): use "
                            "gridflow.solve_batch(case, ..., backend='gpu')")
    check_case(case)
    return solve_with_model(model_for(case, solver), case, init=init, tol_mva=tol_mva, max_iter=max_iter,
                            enforce_q_lims=enforce_q_lims, distributed_slack=distributed_slack,
                            participation=participation, enforce_p_lims=enforce_p_lims, q_release=q_release,
                            line_search=line_search,
                            V0=V0)


def solve_with_model(model: PowerFlowModel, case: Case, *, init: str = "auto", tol_mva: float = 1e-8,
                     max_iter: int = 30, enforce_q_lims: bool = False, distributed_slack: bool = False,
                     participation=None, enforce_p_lims: bool = True, q_release: bool = False,
                     line_search: bool = True, V0=None, q_held=None, fallback: bool = True) -> PowerFlowResult:
    """:func:`solve` on a model of the case's topology (``case`` may differ in loads and dispatch);
    ``q_held``: (mask (ng,), q (ng,) pu) generators held at a Q limit from the start (a warm start's);
    ``fallback=False``: with ``V0``, try the warm start only (searches that approach a limit in steps)."""
    check_options(init=init, tol_mva=tol_mva, max_iter=max_iter)
    if case is not model.case:
        check_case(case)
        model.check_same_topology(case)
    net = model.net
    base = case.base_mva
    slack_ref = model.dist_ref if distributed_slack else None
    wg = participation_factors(case, participation)[None, :] if distributed_slack else None
    roles = model.roles(1, slack_ref=slack_ref)
    controlled = roles.energized & ~roles.q_free
    starts = AUTO_SEQUENCE if init == "auto" else (init,)
    warm = None
    if V0 is not None:
        warm = np.asarray(V0, dtype=complex)
        if warm.shape != (case.nb,) or not np.isfinite(warm).all():
            raise GridflowError(f"V0 must be {case.nb} finite complex voltages")
        starts = ("warm",) + (starts if fallback else ())
    loads = dict(pd=case.bus.pd[None, :], qd=case.bus.qd[None, :], pg=case.gen.pg[None, :], qg=case.gen.qg[None, :])
    tol = tol_mva / base
    total_it = 0
    best = r = None
    for start in starts:
        if start == "warm":
            ctl = controlled[0]
            if q_held is not None and enforce_q_lims:  # buses held at a Q limit keep the warm start's voltage
                ctl = ctl.copy()
                ctl[case.gen.bus[np.asarray(q_held[0], bool) & net.gen_on]] = False
            V = with_setpoints(case, warm, net.energized, net.gen_on, ctl)
        else:
            Vb = initial_voltage(case, net, start)
            V = with_setpoints(case, Vb, net.energized, net.gen_on, controlled[0])
        r = model.run(V[None, :], **loads, roles=roles, participation=wg, q_lims=enforce_q_lims,
                      p_lims=enforce_p_lims, q_release=q_release, tol=tol, max_iter=max_iter,
                      line_search=line_search, case=case, q_held=q_held if start == "warm" else None)
        total_it += int(r.iterations[0] + r.chord_steps[0])
        vmin = float(np.min(np.abs(r.V[0][net.energized]), initial=1.0))
        log.info("init=%s: converged=%s after %d Newton + %d chord steps (%.2e MVA), min |V| %.3f pu", start,
                 bool(r.converged[0]), r.iterations[0], r.chord_steps[0], r.max_mismatch[0] * base, vmin)
        if r.converged[0] and (best is None or vmin > best[2]):
            best = (r, start, vmin)
        if r.converged[0] and (init != "auto" or vmin >= VM_PLAUSIBLE):
            break
    if best is not None:
        r, start, _ = best
    ok = bool(r.converged[0])
    message = "" if ok else (
        f"power flow did not converge (init={init}, {total_it} iterations): worst mismatch "
        f"{r.max_mismatch[0] * base:.4g} MVA at bus {int(case.bus.number[r.worst_bus[0]])}"
        + (f"; {r.reason[0]}" if r.reason[0] else ""))
    extra = {"newton_steps": int(r.iterations[0]), "chord_steps": int(r.chord_steps[0])}
    if distributed_slack:
        extra.update(slack_mw=float(r.slack[0] * base), p_limited=np.flatnonzero(r.p_limited[0]))
    if enforce_q_lims:
        extra["q_limited"] = np.flatnonzero(r.q_limited[0])
        # every generator whose Q is held (at a limit, or holding its output at a bus switched to PQ):
        # with its Q, the held set a warm start of a nearby case takes (``q_held``)
        switched = r.roles.q_free[0] & controlled[0]
        extra["q_held"] = np.flatnonzero(r.roles.gen_on[0] & switched[case.gen.bus])
    return make_result(case, net, r.V[0], converged=ok, iterations=total_it, max_mismatch_pu=float(r.max_mismatch[0]),
                       worst_bus=int(r.worst_bus[0]), init=start, backend=model.backend.name, message=message,
                       gen_p=r.pg[0], gen_q=r.qg[0], extra=extra)
