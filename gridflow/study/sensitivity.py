"""DC sensitivities of branch flows to load shed, with the generators' response.

Shedding 1 MW of load at bus i raises the net injection there by 1 MW; the
generators give up the same 1 MW in total, in proportion to weights ``w``
(default: their present output above Pmin, as :func:`gridflow.study.dispatch.dispatch`
does for a falling demand). With the DC model (branch susceptance
``1 / (x tap)``, angles from ``B theta = P``), the flow on branch l changes by::

    H[l, i] = PTDF[l, i] - sum_g w_g PTDF[l, bus(g)]

``PTDF`` rows are found only for the monitored branches, by one sparse LU of
the reduced B and one multi-right-hand-side solve.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.case import Case
from gridflow.network import make_network


def ptdf_rows(case: Case, branches, net=None) -> np.ndarray:
    """PTDF (m, nb): MW of from-end flow on each given branch per MW injected at each bus
    (withdrawn at the first slack bus), DC model of the in-service energized network."""
    net = net or make_network(case)
    br = case.branch
    on = net.branch_on
    nb, nl = case.nb, case.nl
    b = np.where(on, 1.0 / (np.where(br.x != 0, br.x, 1e-6) * br.tap), 0.0)
    rows = np.r_[np.arange(nl), np.arange(nl)]
    Cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (rows, np.r_[br.f, br.t])), shape=(nl, nb))
    Bf = (sp.diags(b) @ Cft).tocsr()
    Bbus = (Cft.T @ Bf).tocsc()
    ref = int(net.ref[0])
    keep = np.flatnonzero(net.energized & (np.arange(nb) != ref))
    lu = spla.splu(Bbus[keep][:, keep].tocsc())
    branches = np.asarray(branches, dtype=np.int64)
    rhs = Bf[branches][:, keep].toarray().T  # (nkeep, m): PTDF_l = Bf_l B^-1, so solve B^T y = Bf_l^T
    y = lu.solve(rhs, trans="T")
    out = np.zeros((len(branches), nb))
    out[:, keep] = y.T
    return out


def shed_sensitivity(case: Case, branches, *, gen_weights=None) -> np.ndarray:
    """H (m, nb): MW change of from-end flow on each branch per MW of load shed at each bus."""
    net = make_network(case)
    P = ptdf_rows(case, branches, net)
    g = case.gen
    on = net.gen_on
    if gen_weights is None:
        w = np.where(on, np.maximum(g.pg - g.pmin, 0.0), 0.0)
        if w.sum() <= 0:
            w = on.astype(float)
    else:
        w = np.where(on, np.asarray(gen_weights, float), 0.0)
    w = w / w.sum()
    bus_w = np.zeros(case.nb)
    np.add.at(bus_w, g.bus, w)
    return P - (P @ bus_w)[:, None]
