"""Newton–Raphson power flow, polar form: one engine for one and many scenarios (T >= 1).

Unknowns: ``Va`` at the buses ``ang``, ``Vm`` at ``mag`` and, with a
distributed slack, the slack power ``s`` (see :mod:`gridflow.jacobian` for the
formulation). Equations: the mismatch ``mis = V conj(Ybus V) - Sbus - w s``,
real part at the buses ``prow``, imaginary part at ``mag`` (MATPOWER's
``newtonpf`` is ``ang = prow = pvpq``, ``mag = pq``, no ``s``). A *pinned* row
(``free`` False: a de-energized bus, a PV bus's Q row in a formulation that
also carries PQ buses, an island's own slack) is the identity with zero
mismatch, so its unknown never moves.

A single case is the batch with T = 1; every scenario runs the same steps and
stops on its own. Step control, per scenario:

1. **Chord steps** (the "dishonest" Newton of circuit simulators):
   ``d = J0^-1 F`` with ``J0`` the Jacobian at the first scenario's start,
   factorized once and shared by all scenarios, so a step costs one triangular
   solve instead of a factorization. A scenario keeps taking them while each
   shrinks ``||F||_2`` at least ``1/CHORD_RATE``-fold. The first chord step from
   a scenario's own start *is* its Newton step.
2. **Newton steps** with backtracking: the full step is taken when it lowers
   ``||F||_2``, otherwise it is halved up to ``LINE_SEARCH_STEPS`` times; when no
   trial lowers it, the scenario stops ("line search failed") instead of
   spending its remaining iterations.

Convergence: ``||F||_inf < tol`` (pu), judged on the true mismatch, so chord
steps never change the answer, only the work.

The device operations (``Ybus V``, factorizations, solves) come from a
:class:`gridflow.backends.base.BatchOps`; this module only uses its array
module ``xp``, with one device→host sync per iteration (marked ``# sync``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from gridflow.jacobian import jacobian_pattern
from gridflow.linalg import SingularJacobian

log = logging.getLogger(__name__)

#: chord steps go on while each shrinks ||F||_2 at least this much (a chord step costs a small
#: fraction of a Newton step: no Jacobian, no factorization)
CHORD_RATE = 0.3
MAX_CHORD_STEPS = 30
#: trials of the backtracking line search: the full step, then halvings
LINE_SEARCH_STEPS = 9

#: why a scenario stopped
RUNNING, CONVERGED, MAX_ITER, SINGULAR, LINE_SEARCH, DIVERGED = range(6)
REASONS = {
    RUNNING: "", CONVERGED: "",
    MAX_ITER: "no convergence within the iteration limit",
    SINGULAR: "the Jacobian is singular",
    LINE_SEARCH: "line search failed: no step along the Newton direction lowers the mismatch",
    DIVERGED: "the Newton iteration diverged (non-finite voltages)",
}


@dataclass(frozen=True)
class NewtonOutcome:
    """Outcome of one engine run (host arrays, T scenarios).

    V : complex128 (T, nb), pu; slack : float64 (T,), pu (distributed slack power, 0 without);
    converged : bool (T,); iterations : int (T,) Newton steps (factorizations);
    chord_steps : int (T,); max_mismatch : float64 (T,) ||F||_inf, pu;
    worst_bus : int (T,) bus index of it; status : int8 (T,) (RUNNING ... DIVERGED).
    """

    V: np.ndarray
    slack: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    chord_steps: np.ndarray
    max_mismatch: np.ndarray
    worst_bus: np.ndarray
    status: np.ndarray

    def reason(self, t: int = 0) -> str:
        return REASONS[int(self.status[t])]


def newton(ops, pattern, Sbus, V0, *, w=None, free=None, tol: float, max_iter: int, chord: bool = True,
           line_search: bool = True) -> NewtonOutcome:
    """Solve T power flows that share Ybus's pattern and the Jacobian's.

    Parameters
    ----------
    ops : gridflow.backends.base.BatchOps
        The device operations of this batch (outages per scenario live there).
    pattern : gridflow.jacobian.JacobianPattern
        The formulation (``prow``, ``ang``, ``mag``, ``slack``).
    Sbus : complex128 (T, nb)
        Scheduled injections, pu.
    V0 : complex128 (T, nb) or (nb,)
        Starts, pu (0 at de-energized buses).
    w : float64 (T, nb), optional
        Participation factors of the distributed slack (patterns with ``slack``).
    free : bool (T, n), optional
        False where a row is pinned.
    tol : float
        ``||F||_inf`` threshold, pu.
    max_iter : int
        Steps at most per scenario, chord and Newton steps alike.
    chord : bool
        Take chord steps first (see the module docstring).
    line_search : bool
        Backtrack; without it every full step is taken.
    """
    xp = ops.xp
    dev = ops.to_device
    Sbus = dev(Sbus)
    T, nb = Sbus.shape
    V = dev(V0).astype(complex)
    V = xp.array(xp.broadcast_to(V, (T, nb)))
    prow, ang, mag = dev(pattern.prow), dev(pattern.ang), dev(pattern.mag)
    n_p, s0 = len(pattern.prow), 1 if pattern.slack else 0
    n_a = len(pattern.ang)
    if pattern.slack and w is None:
        raise ValueError("a distributed-slack pattern needs participation factors w")
    w = None if w is None else dev(w)
    free = None if free is None else dev(free)
    Va, Vm = xp.angle(V), xp.abs(V)
    s = xp.zeros(T)
    n = pattern.n
    everyone = xp.arange(T)

    def residual(idx, V_, s_):
        Ibus = ops.ibus(idx, V_)
        mis = V_ * xp.conj(Ibus) - Sbus[idx]
        if w is not None:
            mis = mis - w[idx] * s_[:, None]
        F = xp.concatenate([mis[:, prow].real, mis[:, mag].imag], axis=1)
        if free is not None:
            F = xp.where(free[idx], F, 0.0)
        norm = xp.abs(F).max(axis=1) if n else xp.zeros(len(F))
        return F, Ibus, norm

    def apply(idx, d, alpha):
        """Trial unknowns x - alpha d for the scenarios idx."""
        Va_t, Vm_t, s_t = Va[idx], Vm[idx], s[idx]
        a = alpha[:, None]
        Va_t[:, ang] -= a * d[:, s0:s0 + n_a]
        Vm_t[:, mag] -= a * d[:, n_p:]
        if s0:
            s_t = s_t - alpha * d[:, 0]
        return Va_t, Vm_t, s_t, Vm_t * xp.exp(1j * Va_t)

    F, Ibus, norm = residual(everyone, V, s)
    merit = (F ** 2).sum(axis=1)
    status = xp.where(norm < tol, CONVERGED, RUNNING).astype(xp.int8)
    status = xp.where(xp.isfinite(norm), status, DIVERGED).astype(xp.int8)
    iters = xp.zeros(T, dtype=xp.int64)
    chords = xp.zeros(T, dtype=xp.int64)

    def accept(idx, ok, Va_t, Vm_t, s_t, V_t, F_t, I_t, n_t, m_t):
        keep = idx[ok]
        Va[keep], Vm[keep], s[keep], V[keep] = Va_t[ok], Vm_t[ok], s_t[ok], V_t[ok]
        F[keep], Ibus[keep], norm[keep], merit[keep] = F_t[ok], I_t[ok], n_t[ok], m_t[ok]
        status[keep] = xp.where(n_t[ok] < tol, CONVERGED, RUNNING)

    # 1. chord steps with the Jacobian at the first scenario's start
    if chord and n and bool((status == RUNNING).any()):  # sync
        try:
            ops.chord_factorize(V[0], Ibus[0], None if w is None else w[0])
        except SingularJacobian:
            chord = False
        chordable = status == RUNNING
        for _ in range(min(MAX_CHORD_STEPS, max_iter) if chord else 0):
            idx = xp.flatnonzero(chordable)
            if int(idx.size) == 0:  # sync
                break
            d = ops.chord_solve(F[idx])
            if free is not None:
                d = xp.where(free[idx], d, 0.0)
            Va_t, Vm_t, s_t, V_t = apply(idx, d, xp.ones(len(idx)))
            F_t, I_t, n_t = residual(idx, V_t, s_t)
            m_t = (F_t ** 2).sum(axis=1)
            better = xp.isfinite(m_t) & (m_t < merit[idx])
            fast = better & (m_t < CHORD_RATE ** 2 * merit[idx])
            accept(idx, better, Va_t, Vm_t, s_t, V_t, F_t, I_t, n_t, m_t)
            chords[idx[better]] += 1
            chordable[idx] = fast & (n_t >= tol)

    # 2. Newton steps with backtracking
    trials = LINE_SEARCH_STEPS if line_search else 1
    for _ in range(max_iter):
        status = xp.where((status == RUNNING) & (iters + chords >= max_iter), MAX_ITER, status).astype(xp.int8)
        idx = xp.flatnonzero(status == RUNNING)
        if int(idx.size) == 0:  # sync: once per iteration
            break
        d = ops.newton_step(idx, V[idx], Ibus[idx], F[idx], None if w is None else w[idx])
        singular = ~xp.isfinite(d).all(axis=1)
        status[idx[singular]] = SINGULAR
        d = xp.where(singular[:, None], 0.0, d)
        if free is not None:
            d = xp.where(free[idx], d, 0.0)
        iters[idx] += 1
        alpha = xp.ones(len(idx))
        todo = xp.flatnonzero(~singular)
        for trial in range(trials):
            if int(todo.size) == 0:  # sync
                break
            sub = idx[todo]
            Va_t, Vm_t, s_t, V_t = apply(sub, d[todo], alpha[todo])
            F_t, I_t, n_t = residual(sub, V_t, s_t)
            m_t = (F_t ** 2).sum(axis=1)
            ok = xp.isfinite(m_t) & (m_t < merit[sub]) if line_search else xp.isfinite(m_t)
            accept(sub, ok, Va_t, Vm_t, s_t, V_t, F_t, I_t, n_t, m_t)
            if trial == trials - 1:
                failed = sub[~ok]
                status[failed] = LINE_SEARCH if line_search else DIVERGED
            todo = todo[~ok]
            alpha[todo] *= 0.5
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Newton step: %d scenarios, max ||F||_inf %.3e pu", int(idx.size), float(norm[idx].max()))
    status = xp.where(status == RUNNING, MAX_ITER, status).astype(xp.int8)
    # where the mismatch is largest, in bus numbers
    rowbus = np.r_[pattern.prow, pattern.mag]
    if n:
        worst_row = ops.to_host(xp.abs(F).argmax(axis=1))
        worst = rowbus[worst_row] if len(rowbus) else np.zeros(T, np.int64)
    else:
        worst = np.zeros(T, np.int64)
    host = ops.to_host
    return NewtonOutcome(V=host(V), slack=host(s), converged=host(status == CONVERGED), iterations=host(iters),
                         chord_steps=host(chords), max_mismatch=host(norm), worst_bus=np.asarray(worst),
                         status=host(status))


# ---------------------------------------------------------------------------- PYPOWER-shaped wrapper


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of :func:`newtonpf` (one case).

    V : complex128 (nb,) pu; converged : bool; iterations : int; max_mismatch : float,
    ||F||_inf in pu; worst_bus : int, bus index of it; reason : str, why it stopped when not converged.
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


def newtonpf(Ybus, Sbus, V0, ref, pv, pq, *, tol: float = 1e-8, max_iter: int = 30, solver: str = "auto",
             line_search: bool = True) -> NewtonResult:
    """MATPOWER's ``newtonpf`` contract on the engine: one case, no network object.

    Parameters
    ----------
    Ybus : scipy.sparse.csr_matrix complex128 (nb, nb)
        Sorted, every diagonal stored (see :func:`gridflow.network.make_ybus`).
    Sbus : complex128 (nb,)
        Scheduled injections, pu.
    V0 : complex128 (nb,)
        Start voltages, pu.
    ref, pv, pq : int arrays
        Bus indices by type; buses in none of them keep their start voltage.
    tol : float
        Convergence threshold on ``||F||_inf``, pu.
    max_iter : int
        Newton iterations at most.
    solver : str
        Linear solver name (:func:`gridflow.linalg.make_solver`).
    line_search : bool
        Backtrack when a full step does not lower ``||F||_2``.
    """
    from gridflow.model import YbusModel

    model = YbusModel(Ybus, solver=solver)
    pattern = jacobian_pattern(Ybus, np.asarray(pv, np.int64), np.asarray(pq, np.int64))
    ops = model.backend.batch_ops(model, pattern, model.spec(1))
    try:
        out = newton(ops, pattern, np.asarray(Sbus, complex)[None, :], np.asarray(V0, complex), tol=tol,
                     max_iter=max_iter, line_search=line_search)
    finally:
        ops.close()
    return NewtonResult(V=out.V[0], converged=bool(out.converged[0]), iterations=int(out.iterations[0]),
                        max_mismatch=float(out.max_mismatch[0]), worst_bus=int(out.worst_bus[0]),
                        reason=out.reason(0))
