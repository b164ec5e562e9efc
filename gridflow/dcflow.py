"""DC outage distribution factors: post-contingency flows estimated from a solved point, without solving.

DC model of the in-service network: branch susceptance ``b_l = 1 / (x_l tap_l)``,
``Bf = diag(b) Cft``, ``Bbus = Cft^T Bf``, angles fixed at the slack buses; the reduced
``Bbus`` is factorized once (KLU).

* A branch k out of service: inject 1 MW at its from bus and take it out at its to
  bus; the resulting flows ``PTDF(k)`` give ``LODF[l, k] = PTDF_l(k) / (1 - PTDF_k(k))``
  and the post-contingency flow ``f_l + LODF[l, k] f_k`` (Wood & Wollenberg,
  *Power Generation, Operation and Control*, ch. 7). ``1 - PTDF_k(k) = 0`` means
  k is a bridge: the DC model has no answer (NaN).
* A generator out of service: its MW is taken up at the slack buses; the flows change
  by the PTDF of that transfer times the MW.

Estimates for several base points at once share the factor work (the study screens a
point and its reference together). Columns are computed in chunks of ``chunk``
outages, so memory stays ``nl x chunk``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gridflow.case import Case
from gridflow.linalg import factorized
from gridflow.network import Network

#: 1 - PTDF_k(k) below this: the branch is a bridge (its outage splits an island)
BRIDGE_TOL = 1e-6


class OutageFactors:
    """The DC model of one network and its outage factors (see the module docstring).

    Raises :class:`gridflow.linalg.SingularJacobian` when the reduced DC matrix is singular.
    """

    def __init__(self, case: Case, net: Network):
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

    def post_flows(self, outages, flows_mw, pg_mw=None, chunk: int = 256):
        """Yield ``(k, post)`` for every single-element outage k of ``outages`` the DC model can answer:
        ``post`` (P, nl), the estimated post-contingency from-end MW flows for each of the P base points
        ``flows_mw`` (P, nl) (out-of-service branches 0, the outaged branch 0). ``pg_mw`` (P, ng): the points'
        generator outputs (generator outages). Multi-element outages and bridges are skipped."""
        case, net = self.case, self.net
        br, gen = case.branch, case.gen
        f0 = np.where(net.branch_on, np.atleast_2d(np.asarray(flows_mw, float)), 0.0)
        pg = None if pg_mw is None else np.atleast_2d(np.asarray(pg_mw, float))
        if self.lu is None:
            return
        items = [(k, "branch", o.branches[0]) for k, o in enumerate(outages) if len(o.branches) == 1 and not o.gens]
        items += [(k, "gen", o.gens[0]) for k, o in enumerate(outages) if len(o.gens) == 1 and not o.branches]
        for a in range(0, len(items), chunk):
            part = items[a:a + chunk]
            rhs = np.zeros((len(self.idx), len(part)))
            for c, (_, kind, e) in enumerate(part):
                if kind == "branch":
                    if self.pos[br.f[e]] >= 0:
                        rhs[self.pos[br.f[e]], c] += 1.0
                    if self.pos[br.t[e]] >= 0:
                        rhs[self.pos[br.t[e]], c] -= 1.0
                elif self.pos[gen.bus[e]] >= 0:
                    rhs[self.pos[gen.bus[e]], c] -= 1.0  # 1 MW lost at the generator, taken up at the slack
            theta = np.zeros((case.nb, len(part)))
            theta[self.idx] = self.lu.solve(rhs)
            dflow = self.Bf @ theta  # (nl, chunk): MW per MW
            for c, (k, kind, e) in enumerate(part):
                if kind == "branch":
                    if not net.branch_on[e]:
                        continue
                    denom = 1.0 - dflow[e, c]
                    if abs(denom) < BRIDGE_TOL:
                        continue
                    post = f0 + dflow[:, c][None, :] / denom * f0[:, e:e + 1]
                    post[:, e] = 0.0
                else:
                    if pg is None or not net.gen_on[e]:
                        continue
                    post = f0 + dflow[:, c][None, :] * pg[:, e:e + 1]
                yield k, post
