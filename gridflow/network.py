"""From a Case to the solver's network: Ybus, Yf, Yt, Sbus, bus types, islands.

Admittance model (MATPOWER's, per unit): a branch from bus f to bus t with
series admittance ``ys = 1/(r + jx)``, total charging ``b`` and complex ratio
``N = tap * exp(j*shift)`` at the from side has::

    [If]   [ (ys + jb/2)/|N|^2   -ys/conj(N) ] [Vf]
    [It] = [ -ys/N               ys + jb/2   ] [Vt]

pandapower's branches may add a charging conductance ``g`` and, for its
impedance elements, different series and charging admittances on the to side
(``r_asym``...); they enter the same way. ``Yf`` (nl x nb) and ``Yt`` give branch-end currents, and
``Ybus = Cf^T Yf + Ct^T Yt + diag(Gs + jBs)`` gives bus injections ``I = Ybus V``.

Bus types as MATPOWER reads them: a REF or PV bus with no in-service generator
becomes PQ; type-4 (isolated) buses and the branches touching them are out.
Islands are the connected components of the in-service branches; an island
without a REF bus is de-energized (its buses get V = 0 and its load is not
served) and reported, never solved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gridflow.case import NONE, PV, REF, Case
from gridflow.errors import CaseError


@dataclass(frozen=True)
class Network:
    """Solver-ready arrays for one topology. Per unit throughout.

    Attributes
    ----------
    Ybus : scipy.sparse.csr_matrix, complex128 (nb, nb)
        Bus admittance matrix, sorted int32 indices, every diagonal entry stored.
    Yf, Yt : scipy.sparse.csr_matrix, complex128 (nl, nb)
        From-end and to-end branch current matrices (out-of-service rows are zero).
    ref, pv, pq : int64 arrays
        Bus indices by type after island and generator checks (every REF bus with an
        in-service generator is a slack bus).
    energized : bool (nb,)
        Buses in an island with a slack bus.
    gen_on : bool (ng,)
        In-service generators at energized buses.
    branch_on : bool (nl,)
        In-service branches between energized buses.
    dead_islands : list[np.ndarray]
        Bus indices of each de-energized island (no slack bus).
    island : int64 (nb,)
        Island label of every bus (connected components of the in-service branches); -1 where
        de-energized.
    """

    Ybus: sp.csr_matrix
    Yf: sp.csr_matrix
    Yt: sp.csr_matrix
    ref: np.ndarray
    pv: np.ndarray
    pq: np.ndarray
    energized: np.ndarray
    gen_on: np.ndarray
    branch_on: np.ndarray
    dead_islands: list
    island: np.ndarray = None

    @property
    def pvpq(self) -> np.ndarray:
        return np.r_[self.pv, self.pq]


def make_network(case: Case) -> Network:
    """Build Ybus, Yf, Yt, bus types and islands for ``case``."""
    nb, _nl = case.nb, case.nl
    bus, br, gen = case.bus, case.branch, case.gen
    alive = bus.type != NONE
    on = br.status & alive[br.f] & alive[br.t]

    # islands of in-service branches among live buses
    adj = sp.coo_matrix((np.ones(int(on.sum())), (br.f[on], br.t[on])), shape=(nb, nb))
    n_comp, label = connected_components(adj, directed=False)
    gen_live = gen.status & alive[gen.bus]
    has_gen = np.zeros(nb, bool)
    has_gen[gen.bus[gen_live]] = True
    is_ref = (bus.type == REF) & has_gen
    if not is_ref.any():
        raise CaseError("no slack (reference) bus with an in-service generator", source=case.name)
    comp_has_ref = np.zeros(n_comp, bool)
    comp_has_ref[label[is_ref]] = True
    energized = alive & comp_has_ref[label]
    dead = alive & ~energized
    dead_islands = [np.flatnonzero(dead & (label == c)) for c in np.unique(label[dead])]

    on = on & energized[br.f]
    gen_on = gen_live & energized[gen.bus]
    has_gen = np.zeros(nb, bool)
    has_gen[gen.bus[gen_on]] = True
    ref_mask = (bus.type == REF) & has_gen & energized
    pv_mask = (bus.type == PV) & has_gen & energized
    pq_mask = energized & ~ref_mask & ~pv_mask
    # every REF bus is a slack (fixed |V| and angle), as in MATPOWER and pandapower
    ref = np.flatnonzero(ref_mask)
    Ybus, Yf, Yt = make_ybus(case, on)
    island = np.where(energized, label, -1).astype(np.int64)
    return Network(Ybus=Ybus, Yf=Yf, Yt=Yt, ref=ref, pv=np.flatnonzero(pv_mask), pq=np.flatnonzero(pq_mask),
                   energized=energized, gen_on=gen_on, branch_on=on, dead_islands=dead_islands, island=island)


def branch_admittances(case: Case, on: np.ndarray | None = None):
    """Each branch's two-port admittances ``(Yff, Yft, Ytf, Ytt)``, complex128 (nl,) each, pu;
    zero where the branch is not in ``on`` (default: ``case.branch.status``)."""
    br = case.branch
    if on is None:
        on = br.status
    with np.errstate(divide="ignore", invalid="ignore"):
        Ysf = np.where(on, 1.0 / (br.r + 1j * br.x), 0.0)
        Yst = np.where(on, 1.0 / (br.r + br.r_asym + 1j * (br.x + br.x_asym)), 0.0)
    Ycf = np.where(on, br.g + 1j * br.b, 0.0)
    Yct = np.where(on, br.g + br.g_asym + 1j * (br.b + br.b_asym), 0.0)
    N = br.tap * np.exp(1j * br.shift)
    Ytt = Yst + 0.5 * Yct
    Yff = (Ysf + 0.5 * Ycf) / (N * np.conj(N))
    Yft = -Ysf / np.conj(N)
    Ytf = -Yst / N
    return Yff, Yft, Ytf, Ytt


def make_ybus(case: Case, on: np.ndarray | None = None):
    """Ybus (nb, nb), Yf and Yt (nl, nb) as CSR complex128 with int32 sorted indices.

    ``on`` selects the branches in service (default: ``case.branch.status``).
    Ybus stores every diagonal entry, zero or not, and every branch's four
    entries even where the branch is out of service (as explicit zeros), so the
    Jacobian's pattern never depends on values or on which branches are in service.
    """
    nb, nl = case.nb, case.nl
    br = case.branch
    Yff, Yft, Ytf, Ytt = branch_admittances(case, on)
    rows = np.r_[np.arange(nl), np.arange(nl)]
    Yf = sp.csr_matrix((np.r_[Yff, Yft], (rows, np.r_[br.f, br.t])), shape=(nl, nb))
    Yt = sp.csr_matrix((np.r_[Ytf, Ytt], (rows, np.r_[br.f, br.t])), shape=(nl, nb))
    Ysh = case.bus.gs + 1j * case.bus.bs
    i = np.r_[br.f, br.f, br.t, br.t, np.arange(nb)]
    k = np.r_[br.f, br.t, br.f, br.t, np.arange(nb)]
    v = np.r_[Yff, Yft, Ytf, Ytt, Ysh]
    Ybus = sp.csr_matrix((v, (i, k)), shape=(nb, nb))  # duplicates summed, explicit zeros kept
    for m in (Ybus, Yf, Yt):
        m.sum_duplicates()
        m.sort_indices()
        m.indices = m.indices.astype(np.int32)
        m.indptr = m.indptr.astype(np.int32)
    return Ybus, Yf, Yt


def make_sbus(case: Case, net: Network) -> np.ndarray:
    """Scheduled complex injections, pu (nb,): generation minus constant-power load.

    Loads at de-energized buses are not served (zero).
    """
    nb = case.nb
    g = net.gen_on
    Sg = np.zeros(nb, complex)
    np.add.at(Sg, case.gen.bus[g], case.gen.pg[g] + 1j * case.gen.qg[g])
    Sd = case.bus.pd + 1j * case.bus.qd
    return np.where(net.energized, Sg - Sd, 0.0)
