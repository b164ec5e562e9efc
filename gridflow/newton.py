"""Newton–Raphson power flow, polar form, CPU (NumPy/SciPy).

Unknowns: ``Va`` at PV and PQ buses, ``Vm`` at PQ buses. Equations: the
mismatch ``mis = V conj(Ybus V) - Sbus``, real part at PV and PQ buses,
imaginary part at PQ buses (MATPOWER's ``newtonpf``). Each iteration fills
J's values into a pattern built once (:mod:`gridflow.jacobian`), factorizes,
solves ``J dx = -F`` and updates ``Va``/``Vm``.

Step control: a full Newton step is taken when it lowers ``||F||_2``;
otherwise the step is halved (backtracking line search, up to 8 times). This
keeps hard starts (flat starts on large cases) from diverging and costs one
mismatch evaluation per trial, no extra factorization.

Convergence: ``||F||_inf < tol`` with ``F`` in per unit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from gridflow.jacobian import jacobian_pattern, jacobian_values, ybus_diagonal
from gridflow.linalg import SingularJacobian, make_solver, solve_checked

log = logging.getLogger(__name__)

#: a step is accepted when ||F||_2^2 grows at most this much; otherwise it is halved, at most
#: LINE_SEARCH_STEPS - 1 times (the last trial is taken whatever it gives)
STEP_GROWTH = 1.0
LINE_SEARCH_STEPS = 9


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of one Newton–Raphson run.

    V : complex128 (nb,) pu; converged : bool; iterations : int;
    max_mismatch : float, ||F||_inf in pu; worst_bus : int, bus index of it;
    reason : str, why it stopped when not converged.
    """

    V: np.ndarray
    converged: bool
    iterations: int
    max_mismatch: float
    worst_bus: int
    reason: str = ""


def mismatch(Ybus, V, Sbus):
    """Complex mismatch ``V conj(Ybus V) - Sbus`` (nb,), pu, and ``Ibus = Ybus V``."""
    Ibus = Ybus @ V
    return V * np.conj(Ibus) - Sbus, Ibus


def _F(mis, pvpq, pq):
    return np.r_[mis[pvpq].real, mis[pq].imag]


def _sumsq(F) -> float:
    """||F||_2^2 without BLAS (a threaded ddot stalls when another process holds a core)."""
    return float(np.sum(F * F))


def _worst(mis, pvpq, pq):
    """Index of the bus with the largest |dP| or |dQ| among the solved equations, and the value."""
    a = np.zeros(len(mis))
    a[pvpq] = np.abs(mis[pvpq].real)
    a[pq] = np.maximum(a[pq], np.abs(mis[pq].imag))
    k = int(np.argmax(a))
    return k, float(a[k])


def newtonpf(Ybus, Sbus, V0, ref, pv, pq, *, tol: float = 1e-8, max_iter: int = 30,
             solver: str = "auto", line_search: bool = True, pattern=None, lin=None) -> NewtonResult:
    """Solve the AC power flow by Newton–Raphson.

    Parameters
    ----------
    Ybus : scipy.sparse.csr_matrix complex128 (nb, nb)
        Sorted, every diagonal stored (see :func:`gridflow.network.make_ybus`).
    Sbus : complex128 (nb,)
        Scheduled injections, pu.
    V0 : complex128 (nb,)
        Start voltages, pu.
    ref, pv, pq : int arrays
        Bus indices by type; buses in none of them are ignored.
    tol : float
        Convergence threshold on ``||F||_inf``, pu.
    max_iter : int
        Newton iterations at most.
    solver : str
        Linear solver name (:func:`gridflow.linalg.make_solver`).
    line_search : bool
        Backtrack when a full step does not lower ``||F||_2``.
    pattern : JacobianPattern, optional
        Reuse a pattern built for the same Ybus and bus types.
    lin : linear solver, optional
        Reuse a solver made by :func:`gridflow.linalg.make_solver` for ``pattern``
        (keeps its symbolic analysis).
    """
    pv = np.asarray(pv, np.int64)
    pq = np.asarray(pq, np.int64)
    pvpq = np.r_[pv, pq]
    npvpq = len(pvpq)
    if pattern is None:
        pattern = jacobian_pattern(Ybus, pv, pq)
    if lin is None and pattern.n:
        lin = make_solver(solver, pattern)
    Yrow = np.repeat(np.arange(Ybus.shape[0]), np.diff(Ybus.indptr))
    Ycol = Ybus.indices
    Ydata = Ybus.data
    diag = ybus_diagonal(Yrow, Ycol)

    V = np.array(V0, dtype=complex)
    Va, Vm = np.angle(V), np.abs(V)
    mis, Ibus = mismatch(Ybus, V, Sbus)
    F = _F(mis, pvpq, pq)
    normF = np.linalg.norm(F, np.inf) if F.size else 0.0
    it = 0
    reason = ""
    while normF >= tol:
        if it >= max_iter:
            reason = f"no convergence in {max_iter} iterations"
            break
        it += 1
        data = jacobian_values(V, Ibus, Ydata, Yrow, Ycol, pattern, diag=diag)
        try:
            dx = -solve_checked(lin.factorize(data), F)
        except SingularJacobian as e:
            reason = str(e)
            break
        merit = _sumsq(F)
        alpha = 1.0
        trials = LINE_SEARCH_STEPS if line_search else 1
        for trial in range(trials):
            Va_n = Va.copy()
            Vm_n = Vm.copy()
            Va_n[pvpq] += alpha * dx[:npvpq]
            Vm_n[pq] += alpha * dx[npvpq:]
            V_n = Vm_n * np.exp(1j * Va_n)
            mis_n, Ibus_n = mismatch(Ybus, V_n, Sbus)
            F_n = _F(mis_n, pvpq, pq)
            if (np.isfinite(F_n).all() and _sumsq(F_n) < STEP_GROWTH * merit) or trial == trials - 1:
                break
            alpha *= 0.5
        if alpha < 1.0:
            log.debug("iteration %d: step scaled by %g", it, alpha)
        if not np.isfinite(F_n).all():
            reason = "the Newton iteration diverged (non-finite voltages)"
            break
        Va, Vm, V, mis, Ibus, F = Va_n, Vm_n, V_n, mis_n, Ibus_n, F_n
        normF = np.linalg.norm(F, np.inf)
        log.debug("iteration %d: ||F||_inf = %.3e pu", it, normF)
    worst, _ = _worst(mis, pvpq, pq)
    return NewtonResult(V=V, converged=bool(normF < tol), iterations=it, max_mismatch=float(normF),
                        worst_bus=worst, reason=reason if normF >= tol else "")
