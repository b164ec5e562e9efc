"""DC sensitivities of branch flows to load shed, with the generators' response.

Shedding 1 MW of load at bus i raises the net injection there by 1 MW; the
generators give up the same 1 MW between them, generator g the share ``w_g``
(sum 1). With the DC model of the network the MW flow on branch l (from end)
changes by::

    H[l, i] = PTDF[l, i] - sum_g w_g PTDF[l, bus(g)]

DC model: in-service branches between energized buses (:func:`gridflow.network.make_network`)
with susceptance ``b = 1 / (x tap)`` (resistance, charging and shunts ignored; phase
shifts only add a constant to the flows, so they drop out of sensitivities), bus
angles from ``B theta = P`` with one angle reference per island (its first slack
bus). ``PTDF`` rows are found only for the given branches: one sparse LU of the
reduced B and one multi-right-hand-side solve, so tens of thousands of buses with a
few monitored branches take well under a second.

Generation response (``response``):

* ``"headroom"`` (default): the online generators follow
  :func:`gridflow.study.dispatch.dispatch`, the study's distributed slack. Load shed
  *lowers* demand, so they move by their room downwards, ``w_g ~ Pg - Pmin`` (the
  present output above Pmin; the name is the dispatch rule's). If no generator is
  above its Pmin, it falls back to ``"slack"``.
* ``"slack"``: the island's reference (slack) bus takes it all: ``H = PTDF``.
* ``gen_weights`` (ng,): explicit weights, >= 0, normalised over the online
  generators; they override ``response``.

Validated in ``tests/test_sensitivity.py`` against finite differences of an
independent DC power flow (to 1e-9) and against AC power flows with 10 MW of load
shed and the generators rescaled by the same weights.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from gridflow.case import Case
from gridflow.errors import CaseError, ScenarioError
from gridflow.network import Network, make_network

RESPONSES = ("headroom", "slack")


def _branch_index(case: Case, branches) -> np.ndarray:
    a = np.atleast_1d(np.asarray(branches))
    if a.dtype == bool:
        if a.shape != (case.nl,):
            raise ScenarioError(f"branch mask has shape {a.shape}, expected ({case.nl},)")
        return np.flatnonzero(a)
    if a.size and a.dtype.kind not in "iu":
        raise ScenarioError(f"branches must be branch indices (integers), got {a.dtype}")
    a = a.astype(np.int64).ravel()
    bad = (a < 0) | (a >= case.nl)
    if bad.any():
        raise ScenarioError(f"branch index {int(a[bad][0])} is out of range (0..{case.nl - 1})")
    return a


def dc_model(case: Case, net: Network | None = None):
    """DC network of ``case``: (b (nl,) pu susceptances, 0 for branches out; Bbus (nb, nb) CSC;
    angle reference mask (nb,); energized mask (nb,)).

    Raises :class:`CaseError` for an in-service branch with x = 0 (no DC susceptance).
    """
    net = net or make_network(case)
    br = case.branch
    on = net.branch_on
    zero = on & (br.x == 0)
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise CaseError(f"branch {i} has x = 0: no DC sensitivity (give it a reactance)", source=case.name)
    with np.errstate(divide="ignore"):
        b = np.where(on, 1.0 / (br.x * br.tap), 0.0)
    nb = case.nb
    f, t, bo = br.f[on], br.t[on], b[on]
    B = sp.csc_matrix((np.r_[bo, bo, -bo, -bo], (np.r_[f, t, f, t], np.r_[f, t, t, f])), shape=(nb, nb))
    # one angle reference per island: its first slack bus
    adj = sp.coo_matrix((np.ones(len(f)), (f, t)), shape=(nb, nb))
    _, label = connected_components(adj, directed=False)
    ref = np.zeros(nb, bool)
    seen = set()
    for r in np.sort(net.ref):
        if label[r] not in seen:
            seen.add(label[r])
            ref[r] = True
    return b, B, ref, net.energized.copy()


def ptdf_rows(case: Case, branches, net: Network | None = None) -> np.ndarray:
    """PTDF (m, nb): MW change of the from-end flow on each given branch per MW injected at each
    bus and taken out at its island's angle reference (slack) bus; DC model (:func:`dc_model`).

    Branches out of service or de-energized get rows of zeros; so do de-energized buses' columns.
    """
    idx = _branch_index(case, branches)
    b, B, ref, energized = dc_model(case, net)
    nb = case.nb
    keep = np.flatnonzero(energized & ~ref)
    out = np.zeros((len(idx), nb))
    if len(idx) == 0 or len(keep) == 0:
        return out
    pos = np.full(nb, -1)
    pos[keep] = np.arange(len(keep))
    # flow_l = b_l (theta_f - theta_t) = r_l . theta, r_l = b_l (e_f - e_t); theta = B^-1 P, so PTDF_l = B^-T r_l
    br = case.branch
    rhs = np.zeros((len(keep), len(idx)))
    for j, (f, t, bl) in enumerate(zip(br.f[idx], br.t[idx], b[idx], strict=True)):
        if bl == 0:
            continue
        if pos[f] >= 0:
            rhs[pos[f], j] += bl
        if pos[t] >= 0:
            rhs[pos[t], j] -= bl
    lu = spla.splu(B[keep][:, keep].tocsc(), permc_spec="MMD_AT_PLUS_A")
    out[:, keep] = lu.solve(rhs, trans="T").T
    return out


def generator_weights(case: Case, *, response: str = "headroom", gen_weights=None,
                      net: Network | None = None) -> np.ndarray:
    """Share (ng,) of a load shed that each generator gives up: sums to 1, or all 0 for the slack
    response (the angle reference bus takes it). See the module docstring."""
    net = net or make_network(case)
    g = case.gen
    on = net.gen_on
    if gen_weights is not None:
        w = np.asarray(gen_weights, dtype=np.float64).ravel()
        if w.shape != (case.ng,):
            raise ScenarioError(f"gen_weights has {w.size} entries, the case has {case.ng} generators")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ScenarioError("gen_weights must be finite numbers >= 0")
        w = np.where(on, w, 0.0)
        if w.sum() <= 0:
            raise ScenarioError("gen_weights give no online generator a positive weight")
        return w / w.sum()
    if response not in RESPONSES:
        raise ScenarioError(f"unknown generation response {response!r}; choose from {', '.join(RESPONSES)}")
    if response == "headroom":
        w = np.where(on, g.pg - np.minimum(g.pmin, g.pg), 0.0)
        if w.sum() > 0:
            return w / w.sum()
    return np.zeros(case.ng)


def shed_sensitivity(case: Case, branches, *, response: str = "headroom", gen_weights=None) -> np.ndarray:
    """H (m, nb): MW change of the from-end flow (``p_from_mw``) of each given branch per MW of
    load shed at each bus, the generators giving up that MW by ``response`` / ``gen_weights``.

    Parameters
    ----------
    case : Case
        The operating point (its generator outputs set the default weights).
    branches : int array (m,) or bool mask (nl,)
        Monitored branches.
    response : {"headroom", "slack"}
        Generation response, see the module docstring.
    gen_weights : array (ng,), optional
        Explicit generator weights (>= 0; normalised over online generators).

    Columns of de-energized buses are zero (their load is not served).
    """
    net = make_network(case)
    idx = _branch_index(case, branches)
    w = generator_weights(case, response=response, gen_weights=gen_weights, net=net)
    P = ptdf_rows(case, idx, net)
    bus_w = np.zeros(case.nb)
    np.add.at(bus_w, case.gen.bus, w)
    H = P - (P @ bus_w)[:, None]
    H[:, ~net.energized] = 0.0
    return H
