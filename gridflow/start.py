"""Start voltages for Newton–Raphson: flat, the case's stored voltages, DC angles, or a warm start.

In every start, voltage-controlled buses (PV and slack buses with a generator in
service) take their generators' voltage setpoint, keeping the start's angle;
where several in-service generators at one bus give different setpoints, the
last one listed wins, as in MATPOWER (``V0(gbus) = gen(on, VG) ...``, assigned in
generator order) — the readers warn about such buses. A generator at a PQ bus
sets nothing (MATPOWER and pandapower apply ``Vg`` only at PV and slack
buses). De-energized buses start (and stay) at 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.case import Case
from gridflow.errors import GridflowError
from gridflow.network import Network

INITS = ("auto", "flat", "dc", "case")
#: the starts "auto" tries, in order
AUTO_SEQUENCE = ("case", "dc", "flat")


def with_setpoints(case: Case, V, energized, gen_on, controlled) -> np.ndarray:
    """V (..., nb) with voltage-controlled buses at their generators' setpoints (angle kept),
    1 pu where V is 0, and 0 where de-energized.

    ``energized``, ``controlled`` bool (..., nb) (``controlled``: PV or slack in that scenario);
    ``gen_on`` bool (..., ng).
    """
    V = np.where(np.abs(V) > 0, V, 1.0 + 0j)
    shape = np.broadcast_shapes(V.shape, np.shape(energized), np.shape(controlled), np.shape(gen_on)[:-1] + (1,))
    V = np.array(np.broadcast_to(V, shape), dtype=complex)
    V2 = V.reshape(-1, case.nb)
    on = np.broadcast_to(gen_on, shape[:-1] + (case.ng,)).reshape(-1, case.ng)
    ctl = np.broadcast_to(controlled, shape).reshape(-1, case.nb)
    gb = case.gen.bus
    t, g = np.nonzero(on & ctl[:, gb])
    if len(t):
        # generator order: the last one listed at a bus wins (np.unique keeps the first of the reversed list)
        key = t * case.nb + gb[g]
        _, first = np.unique(key[::-1], return_index=True)
        pick = len(key) - 1 - first
        tt, bb, gg = t[pick], gb[g[pick]], g[pick]
        Vb = V2[tt, bb]
        V2[tt, bb] = case.gen.vg[gg] * Vb / np.abs(Vb)
    return np.where(energized, V2.reshape(shape), 0.0)


def initial_voltage(case: Case, net: Network, init: str, Sbus=None) -> np.ndarray:
    """Start voltages of the base topology, pu (nb,): ``flat`` (|V| = 1, angle 0), ``case`` (the
    stored Vm, Va: MATPOWER's default) or ``dc`` (DC power-flow angles, |V| = 1), with setpoints."""
    nb = case.nb
    if init == "flat":
        V = np.ones(nb, complex)
    elif init == "case":
        V = case.bus.vm * np.exp(1j * case.bus.va)
    elif init == "dc":
        V = np.exp(1j * dc_angles(case, net, Sbus))
    else:
        raise GridflowError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    controlled = np.zeros(nb, bool)
    controlled[net.ref] = True
    controlled[net.pv] = True
    return with_setpoints(case, V, net.energized, net.gen_on, controlled)


def dc_angles(case: Case, net: Network, Sbus=None) -> np.ndarray:
    """Bus voltage angles of the DC power flow, radians (nb,); ref buses keep their stored angle."""
    from gridflow.network import make_sbus

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
            with np.errstate(all="ignore"):
                Va[pvpq] = spla.spsolve(A, rhs)
        except RuntimeError:
            pass
        if not np.isfinite(Va).all():
            Va = np.where(net.energized, case.bus.va, 0.0)
    return Va
