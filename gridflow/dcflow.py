"""DC outage distribution factors: post-contingency flows estimated from a solved point, without solving.

DC model of the in-service network: branch susceptance ``b_l = 1 / (x_l tap_l)``,
``Bf = diag(b) Cft``, ``Bbus = Cft^T Bf``, angles fixed at the slack buses; the reduced
``Bbus`` is factorized once (KLU). ``u(i)``: the flows of 1 MW injected at bus i and
taken up by the slack (by the generators in proportion to ``participation`` when it
is given, as a distributed slack takes it up; at the slack buses otherwise).

* A branch k out of service: inject 1 MW at its from bus and take it out at its to
  bus; the resulting flows ``PTDF(k)`` give ``LODF[l, k] = PTDF_l(k) / (1 - PTDF_k(k))``
  and the post-contingency flow ``f_l + LODF[l, k] f_k`` (Wood & Wollenberg,
  *Power Generation, Operation and Control*, ch. 7).
* A bridge k (``1 - PTDF_k(k) = 0``: its outage splits the island; a generator's
  step-up transformer, a radial feed): the part cut off (the side away from the
  slack) stops exchanging ``f_k`` with the rest; the rest's flows change by
  ``u(m) F_mk``, m the bridge's end that stays, ``F_mk`` the flow from m into k;
  branches in the part cut off are estimated at 0.
* A generator out of service: its MW is lost at its bus: ``-u(bus) Pg``.

Estimates for several base points at once share the factor work (the study screens a
point and its reference together). Columns are computed in chunks of ``chunk``
outages, so memory stays ``nl x chunk``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, depth_first_order

from gridflow.case import Case
from gridflow.linalg import factorized
from gridflow.network import Network
from gridflow.topology import bridges as find_bridges

#: 1 - PTDF_k(k) below this: the branch is a bridge (its outage splits an island)
BRIDGE_TOL = 1e-6


class OutageFactors:
    """The DC model of one network and its outage factors (see the module docstring).

    Parameters
    ----------
    case, net : the case and its network; bridge : bool (nl,), optional, the network's bridges
    (:func:`gridflow.topology.bridges`; found when not given).

    Raises :class:`gridflow.linalg.SingularJacobian` when the reduced DC matrix is singular.
    """

    def __init__(self, case: Case, net: Network, bridge: np.ndarray | None = None):
        br = case.branch
        nb, nl = case.nb, case.nl
        on = net.branch_on
        b = np.where(on, 1.0 / np.where(br.x != 0, br.x, 1e-6), 0.0) / br.tap
        rows = np.r_[np.arange(nl), np.arange(nl)]
        Cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (rows, np.r_[br.f, br.t])), shape=(nl, nb))
        self.Bf = (sp.diags(b) @ Cft).tocsr()
        Bbus = (Cft.T @ self.Bf).tocsc()
        keep = net.energized.copy()
        keep[net.ref] = False
        self.idx = np.flatnonzero(keep)
        self.pos = np.full(nb, -1, np.int64)
        self.pos[self.idx] = np.arange(len(self.idx))
        self.case, self.net = case, net
        self.lu = factorized(Bbus[self.idx][:, self.idx]) if len(self.idx) else None
        self.bridge = find_bridges(case, net) if bridge is None else bridge
        self._tree = None

    # ------------------------------------------------------------------ bridges

    def _bridge_tree(self):
        """Components without the bridges (2-edge-connected parts), and a depth-first order of the tree the
        bridges make of them, rooted at each island's slack: (label, depth, tin, size)."""
        if self._tree is None:
            case, net = self.case, self.net
            br = case.branch
            nb = case.nb
            core = net.branch_on & ~self.bridge
            adj = sp.coo_matrix((np.ones(int(core.sum())), (br.f[core], br.t[core])), shape=(nb, nb))
            nc, label = connected_components(adj, directed=False)
            bk = np.flatnonzero(net.branch_on & self.bridge)
            a, c = label[br.f[bk]], label[br.t[bk]]
            tree = sp.coo_matrix((np.ones(2 * len(bk)), (np.r_[a, c], np.r_[c, a])), shape=(nc, nc)).tocsr()
            depth = np.full(nc, -1, np.int64)
            tin = np.full(nc, -1, np.int64)
            size = np.ones(nc, np.int64)
            order_all = []
            for r in np.unique(label[net.ref]):
                order, pred = depth_first_order(tree, int(r), directed=False, return_predecessors=True)
                base = len(order_all)
                tin[order] = base + np.arange(len(order))
                depth[r] = 0
                for v in order[1:]:
                    depth[v] = depth[pred[v]] + 1
                for v in order[::-1][:-1]:
                    size[pred[v]] += size[v]
                order_all.extend(order.tolist())
            self._tree = (label, depth, tin, size)
        return self._tree

    def _cut_off(self, k: int):
        """(m, cut): the end of bridge k that stays with the slack, and bool (nb,) the buses cut off; None when
        neither side reaches a slack."""
        label, depth, tin, size = self._bridge_tree()
        br = self.case.branch
        cf, ct = label[br.f[k]], label[br.t[k]]
        if depth[cf] < 0 or depth[ct] < 0:
            return None
        m, child = (br.f[k], ct) if depth[cf] < depth[ct] else (br.t[k], cf)
        comp = tin[label]
        cut = (comp >= tin[child]) & (comp < tin[child] + size[child])
        return int(m), cut

    # ------------------------------------------------------------------ estimates

    def post_flows(self, outages, flows_mw, pg_mw=None, participation=None, chunk: int = 256):
        """Yield ``(k, post)`` for every single-element outage k of ``outages`` the DC model can answer:
        ``post`` (P, nl), the estimated post-contingency from-end MW flows for each of the P base points
        ``flows_mw`` (P, nl) (out-of-service branches 0, the outaged branch and branches cut off with it 0).
        ``pg_mw`` (P, ng): the points' generator outputs (generator outages); ``participation`` (ng,): who takes
        up MW lost or freed (any scale; None: the slack buses). Multi-element outages are skipped."""
        case, net = self.case, self.net
        br, gen = case.branch, case.gen
        f0 = np.where(net.branch_on, np.atleast_2d(np.asarray(flows_mw, float)), 0.0)
        pg = None if pg_mw is None else np.atleast_2d(np.asarray(pg_mw, float))
        if self.lu is None:
            return
        w_flow = w_norm = share_bus = None
        if participation is not None:
            w = np.where(net.gen_on, np.maximum(np.asarray(participation, float), 0.0), 0.0)
            if w.sum() > 0:
                w_norm = w / w.sum()
                share_bus = np.bincount(gen.bus, w_norm, minlength=case.nb)
                theta = np.zeros(case.nb)
                theta[self.idx] = self.lu.solve(share_bus[self.idx])
                w_flow = self.Bf @ theta  # the flows of 1 MW taken up by the participants
        items = [(k, "branch", o.branches[0]) for k, o in enumerate(outages) if len(o.branches) == 1 and not o.gens]
        items += [(k, "gen", o.gens[0]) for k, o in enumerate(outages) if len(o.gens) == 1 and not o.branches]
        # one right-hand side per item: e_f - e_t for a branch (its PTDF), e_m for a bridge (m: the end that
        # stays with the slack), e_bus for a generator
        cols = []
        for k, kind, e in items:
            if kind == "gen":
                if pg is None or not net.gen_on[e]:
                    continue
                cols.append((k, kind, e, (gen.bus[e],), None))
            elif net.branch_on[e]:
                if self.bridge[e]:
                    cut = self._cut_off(e)
                    if cut is None:
                        continue
                    cols.append((k, "bridge", e, (cut[0],), cut[1]))
                else:
                    cols.append((k, kind, e, (br.f[e], br.t[e]), None))
        for a in range(0, len(cols), chunk):
            part = cols[a:a + chunk]
            rhs = np.zeros((len(self.idx), len(part)))
            for c, (_, _, _, ends, _) in enumerate(part):
                for sign, bus in zip((1.0, -1.0)[:len(ends)], ends, strict=True):
                    if self.pos[bus] >= 0:
                        rhs[self.pos[bus], c] = sign
            theta = np.zeros((case.nb, len(part)))
            theta[self.idx] = self.lu.solve(rhs)
            u = self.Bf @ theta  # (nl, chunk): a branch's PTDF, or u(bus) (slack buses) of a bridge or generator

            def taken_up(col, lost_share=0.0):
                """u(bus) ``col`` (slack buses); with participation, taken up by the participants other than
                those lost with the outage (``lost_share`` of the weight, whose own u equals u(bus) outside
                the part lost): u - (w_flow - s u) / (1 - s)."""
                if w_flow is None:
                    return col
                return col - (w_flow - lost_share * col) / (1.0 - lost_share)

            for c, (k, kind, e, ends, off) in enumerate(part):
                col = u[:, c]
                if kind == "gen":
                    lost = 0.0 if w_norm is None else float(w_norm[e])
                    if lost > 1.0 - 1e-9:
                        continue
                    yield k, f0 - taken_up(col, lost)[None, :] * pg[:, e:e + 1]
                    continue
                if kind == "branch":
                    denom = 1.0 - col[e]
                    if abs(denom) >= BRIDGE_TOL:
                        post = f0 + col[None, :] * (f0[:, e:e + 1] / denom)
                        post[:, e] = 0.0
                        yield k, post
                        continue
                    cut = self._cut_off(e)  # numerically a bridge, though the graph search did not mark it
                    if cut is None:
                        continue
                    ends, off = (cut[0],), cut[1]
                    th = np.zeros((case.nb, 1))
                    rhs1 = np.zeros((len(self.idx), 1))
                    if self.pos[ends[0]] >= 0:
                        rhs1[self.pos[ends[0]], 0] = 1.0
                    th[self.idx] = self.lu.solve(rhs1)
                    col = (self.Bf @ th)[:, 0]
                m = ends[0]
                F = f0[:, e:e + 1] if m == br.f[e] else -f0[:, e:e + 1]
                lost = 0.0 if share_bus is None else float(share_bus[off].sum())
                if lost > 1.0 - 1e-9:
                    continue
                um = taken_up(col, lost)
                post = f0 + um[None, :] * F
                post[:, off[br.f] | off[br.t]] = 0.0
                post[:, e] = 0.0
                yield k, post
