"""Bus roles per scenario: which equations each bus has after outages, islands and Q limits.

A bus's role in one scenario decides its rows in the Newton system
(:mod:`gridflow.jacobian`):

========================  ============  ============
role                      P equation    Q equation
========================  ============  ============
slack (angle reference)   pinned        pinned
PV (voltage controlled)   free          pinned
PQ                        free          free
de-energized              pinned, V=0   pinned, V=0
========================  ============  ============

With a distributed slack the reference bus keeps its angle but its P
equation is free (the slack power balances it), as in pandapower.

Rules, as :func:`gridflow.network.make_network` applies them to the base case
(MATPOWER's and pandapower's): a PV or REF bus with no generator in service is
PQ; every REF bus with a generator is a slack. After outages in a scenario:

* a generator out of service leaves its bus PQ when it was the bus's last;
* the in-service branches split the energized buses into islands
  (:func:`bridges` finds, once, the branches whose single outage splits one);
* an island with a slack bus keeps it; an island with a voltage-controlling
  generator but no slack **gets one**: the bus whose generators have the most
  Pmax (the choice is reported); an island with neither is **de-energized**
  (its load is not served, reported) — never solved as if connected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from gridflow.case import PV, REF, Case
from gridflow.network import Network


@dataclass(frozen=True)
class Roles:
    """Bus roles of T scenarios.

    Attributes
    ----------
    energized : bool (T, nb)
    p_free, q_free : bool (T, nb)
        The bus's P / Q equation is an equation (not pinned) in that scenario.
    gen_on : bool (T, ng)
        Generators in service at energized buses.
    slack_ref : int or None
        The distributed slack's reference bus (its P equation free), None for single slacks.
    new_slack : dict
        Scenario -> bus indices that became the slack of an island (stated in results).
    main : bool (T, nb) or None
        With a distributed slack: the buses of the reference bus's island (whose generators
        share the slack); other islands keep single slacks.
    """

    energized: np.ndarray
    p_free: np.ndarray
    q_free: np.ndarray
    gen_on: np.ndarray
    slack_ref: int | None
    new_slack: dict
    main: np.ndarray | None = None

    @property
    def T(self) -> int:
        return self.energized.shape[0]


def base_roles(case: Case, net: Network, slack_ref: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(p_free, q_free) bool (nb,) of the base case; ``slack_ref``: the distributed slack's reference bus."""
    nb = case.nb
    p_free = np.zeros(nb, bool)
    q_free = np.zeros(nb, bool)
    p_free[net.pv] = True
    p_free[net.pq] = True
    q_free[net.pq] = True
    if slack_ref is not None:
        main = net.island == net.island[slack_ref]
        refs = net.ref[main[net.ref]]
        p_free[refs] = True  # the other slack buses of its island become PV (pandapower's rule)
    return p_free, q_free


def bridges(case: Case, net: Network) -> np.ndarray:
    """bool (nl,): in-service branches whose outage alone splits an island (graph bridges).

    Parallel branches are never bridges. Iterative Tarjan low-link, O(nb + nl).
    """
    nb, nl = case.nb, case.nl
    on = np.flatnonzero(net.branch_on)
    f, t = case.branch.f[on], case.branch.t[on]
    # adjacency with edge ids, both directions
    src = np.r_[f, t]
    dst = np.r_[t, f]
    eid = np.r_[on, on]
    order = np.argsort(src, kind="stable")
    src, dst, eid = src[order], dst[order], eid[order]
    ptr = np.zeros(nb + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=nb), out=ptr[1:])
    dst_l, eid_l, ptr_l = dst.tolist(), eid.tolist(), ptr.tolist()
    disc = [-1] * nb
    low = [0] * nb
    is_bridge = np.zeros(nl, bool)
    counter = 0
    for root in range(nb):
        if disc[root] >= 0 or ptr_l[root] == ptr_l[root + 1]:
            continue
        disc[root] = low[root] = counter
        counter += 1
        stack = [(root, -1, ptr_l[root])]
        while stack:
            u, pe, i = stack[-1]
            if i < ptr_l[u + 1]:
                stack[-1] = (u, pe, i + 1)
                v, e = dst_l[i], eid_l[i]
                if e == pe:
                    continue
                if disc[v] < 0:
                    disc[v] = low[v] = counter
                    counter += 1
                    stack.append((v, e, ptr_l[v]))
                elif disc[v] < low[u]:
                    low[u] = disc[v]
            else:
                stack.pop()
                if stack:
                    p = stack[-1][0]
                    if low[u] < low[p]:
                        low[p] = low[u]
                    if low[u] > disc[p]:
                        is_bridge[pe] = True
    return is_bridge


def distributed_reference(case: Case, net: Network, bridge: np.ndarray) -> int:
    """The distributed slack's angle reference bus: the case's first slack bus, unless a single branch
    outage can cut it off from the bulk of its island (a generator behind its step-up transformer); then
    the bus nearest to it (fewest branches away) in its island's largest 2-edge-connected part (the buses no
    single outage separates). With a distributed slack the reference only fixes the angle (its P is an
    equation), so any bus can hold it; this one stays with the bulk after every single outage.
    """
    ref = int(net.ref[0])
    nb = case.nb
    br = case.branch
    core = net.branch_on & ~bridge
    adj = sp.coo_matrix((np.ones(int(core.sum())), (br.f[core], br.t[core])), shape=(nb, nb))
    _, label = connected_components(adj, directed=False)
    mine = net.energized & (net.island == net.island[ref])
    sizes = np.bincount(label[mine], minlength=label.max() + 1)
    big = int(np.argmax(sizes))
    if label[ref] == big or sizes[label[ref]] == sizes[big]:
        return ref
    on = net.branch_on
    full = sp.coo_matrix((np.ones(int(on.sum())), (br.f[on], br.t[on])), shape=(nb, nb)).tocsr()
    order = breadth_first_order(full + full.T, ref, directed=True, return_predecessors=False)
    return int(next(b for b in order if label[b] == big))


def scenario_roles(case: Case, net: Network, T: int, *, branch_out=None, gen_out=None, slack_ref: int | None = None,
                   bridge: np.ndarray | None = None) -> Roles:
    """Bus roles of T scenarios with their outages.

    Parameters
    ----------
    case, net : the base case and its network
    T : int
    branch_out, gen_out : list of T int arrays (rows out of service in each scenario), or None
    slack_ref : int, optional
        Distributed slack: its reference bus (then islands without it get single slacks).
    bridge : bool (nl,), optional
        :func:`bridges` of the base network (computed if needed and not given).
    """
    nb = case.nb
    p0, q0 = base_roles(case, net, slack_ref)
    energized = np.repeat(net.energized[None, :], T, axis=0)
    p_free = np.repeat(p0[None, :], T, axis=0)
    q_free = np.repeat(q0[None, :], T, axis=0)
    gen_on = np.repeat(net.gen_on[None, :], T, axis=0)
    main = None if slack_ref is None else np.repeat((net.island == net.island[slack_ref])[None, :], T, axis=0)
    new_slack: dict = {}
    if branch_out is None and gen_out is None:
        return Roles(energized, p_free, q_free, gen_on, slack_ref, new_slack, main)
    gen = case.gen
    br = case.branch
    is_ref = (case.bus.type == REF)
    is_vc = np.isin(case.bus.type, (PV, REF))  # voltage-controlled when a generator is in service
    for t in range(T):
        bo = np.asarray(branch_out[t] if branch_out is not None else (), np.int64)
        go = np.asarray(gen_out[t] if gen_out is not None else (), np.int64)
        bo = bo[net.branch_on[bo]] if len(bo) else bo
        if not len(bo) and not len(go):
            continue
        g_on = gen_on[t]
        g_on[go] = False
        has_gen = np.zeros(nb, bool)
        has_gen[gen.bus[g_on]] = True
        split = len(bo) > 1 or (len(bo) == 1 and (bridge if bridge is not None else bridges(case, net))[bo[0]])
        live = net.energized.copy()
        label = net.island
        if split:
            on = net.branch_on.copy()
            on[bo] = False
            adj = sp.coo_matrix((np.ones(int(on.sum())), (br.f[on], br.t[on])), shape=(nb, nb))
            _, label = connected_components(adj, directed=False)
        islands = [np.flatnonzero(live & (label == c)) for c in np.unique(label[live])]
        pf = np.zeros(nb, bool)
        qf = np.zeros(nb, bool)
        for isl in islands:
            vc = isl[is_vc[isl] & has_gen[isl]]
            refs = isl[is_ref[isl] & has_gen[isl]]
            if slack_ref is not None and slack_ref in isl:
                # distributed slack: the reference keeps its angle, its P balance is an equation
                pf[isl] = True
                qf[isl] = True
                qf[vc] = False
                qf[slack_ref] = not has_gen[slack_ref]
                main[t] = False
                main[t, isl] = True
                continue
            if len(refs) == 0:
                if len(vc) == 0:
                    live[isl] = False  # nothing holds its voltage: de-energized
                    continue
                pmax = np.bincount(gen.bus[g_on], np.maximum(gen.pmax[g_on], 0.0), minlength=nb)[vc]
                refs = vc[[int(np.argmax(pmax))]]
                new_slack.setdefault(t, []).extend(int(b) for b in refs)
            pf[isl] = True
            qf[isl] = True
            qf[vc] = False
            pf[refs] = False
        g_on &= live[gen.bus]
        energized[t] = live
        p_free[t] = pf & live
        q_free[t] = qf & live
    return Roles(energized, p_free, q_free, gen_on, slack_ref, new_slack, main)


def island_mask(net: Network, roles: Roles, bus: int) -> np.ndarray:
    """bool (T, nb): the buses that share the distributed slack with ``bus`` (``roles.main``), or every
    energized bus of ``bus``'s base island when the roles carry no such mask."""
    if roles.main is not None:
        return roles.main & roles.energized
    return np.repeat((net.island == net.island[bus])[None, :], roles.T, axis=0) & roles.energized
