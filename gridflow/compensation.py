"""Outages as low-rank changes of the chord Jacobian (the compensation method, Woodbury's identity).

Taking branches out of service changes four Ybus entries per branch, so at the
shared start ``V0`` the Jacobian of an outage scenario differs from the base
one ``J0`` only in the rows of the P and Q equations of the branches' end
buses (R) and the columns of their Va and Vm unknowns (C)::

    J_t = J0 - E_R D E_C^T,     D = J0[R, C] - J_t[R, C]     (|R| x |C|, at most 4m x 4m)

With ``J0`` factorized once for the whole batch, Woodbury's identity gives the
scenario's own start Jacobian without factorizing it::

    J_t^-1 b = J0^-1 (b + E_R D y),   y = K^-1 (J0^-1 b)[C],   K = I - (J0^-1 E_R)[C, :] D

(two shared triangular solves per step and a small dense solve). Chord steps
with ``J_t`` converge like Newton's method from a warm start, so most
contingencies (NERC TPL-001 P1) are solved with no factorization of their own.
``K`` singular means the outage splits an island; such scenarios, and
scenarios with pinned rows, take the plain chord (``J0``) and, if it does not
contract, Newton steps.

Written over ``xp`` (NumPy here; the GPU backend can use it with CuPy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridflow.jacobian import _inv_abs, entry_values

#: K with a condition number above this is taken as singular (the outage splits an island)
_COND_MAX = 1e10
#: unit right-hand sides solved at once when preparing (bounds memory: n x this many doubles)
_SETUP_CELLS = 20_000_000


@dataclass(frozen=True)
class LowRank:
    """Per-scenario Woodbury data (q scenarios with a correction; W = padded block size).

    loc : int64 (T,) — position among the q, or -1 (no correction);
    R, C : int64 (q, W) — rows / columns of J (padding: 0 with ``Rm``/``Cm`` False);
    Rm, Cm : bool (q, W); D : float64 (q, W, W); Kinv : float64 (q, W, W).
    """

    loc: np.ndarray
    R: np.ndarray
    C: np.ndarray
    Rm: np.ndarray
    Cm: np.ndarray
    D: np.ndarray
    Kinv: np.ndarray


def _position_matrix(pattern):
    """CSR (n, n) holding storage position + 1 of every J entry (cached on the pattern)."""
    pm = getattr(pattern, "_posmat", None)
    if pm is None:
        n = pattern.n
        pm = sp.csr_matrix((np.arange(pattern.nnz, dtype=np.int64) + 1, (pattern.row, pattern.col)), shape=(n, n))
        object.__setattr__(pattern, "_posmat", pm)
    return pm


def _bus_rows(pattern, nb):
    """(P row, Q row, Va column, Vm column) of every bus, -1 where it has none."""
    s0 = 1 if pattern.slack else 0
    n_p = len(pattern.prow)
    rowP = np.full(nb, -1, np.int64)
    rowP[pattern.prow] = np.arange(n_p)
    rowQ = np.full(nb, -1, np.int64)
    rowQ[pattern.mag] = n_p + np.arange(len(pattern.mag))
    colA = np.full(nb, -1, np.int64)
    colA[pattern.ang] = s0 + np.arange(len(pattern.ang))
    return rowP, rowQ, colA, rowQ


def prepare(pattern, spec, terms, V0, Ibus0, Ydata, Yrow, Ycol, J0data, solve):
    """The :class:`LowRank` data of a batch's outage scenarios, or None.

    ``V0``, ``Ibus0`` (nb,): the chord point; ``J0data``: J0's values; ``solve(B)``: ``J0^-1 B`` for B (n, k).
    Only scenarios whose rows are all free take part.
    """
    T = spec.T
    if not spec.has_outages:
        return None
    nb = len(V0)
    free_all = np.ones(T, bool) if spec.free is None else spec.free.all(axis=1)
    order = np.argsort(spec.out_t, kind="stable")
    out_t, out_k = np.asarray(spec.out_t)[order], np.asarray(spec.out_k)[order]
    ptr = np.zeros(T + 1, np.int64)
    np.cumsum(np.bincount(out_t, minlength=T), out=ptr[1:])
    scen = np.flatnonzero(free_all & (np.diff(ptr) > 0))
    if not len(scen):
        return None
    rowP, rowQ, colA, colM = _bus_rows(pattern, nb)
    R_l, C_l = [], []
    for t in scen:
        ks = out_k[ptr[t]:ptr[t + 1]]
        buses = np.unique(np.r_[terms.f[ks], terms.t[ks]])
        R = np.r_[rowP[buses], rowQ[buses]]
        C = np.r_[colA[buses], colM[buses]]
        R_l.append(R[R >= 0])
        C_l.append(C[C >= 0])
    W = max(max(len(r) for r in R_l), max(len(c) for c in C_l), 1)
    q = len(scen)
    R = np.zeros((q, W), np.int64)
    C = np.zeros((q, W), np.int64)
    Rm = np.zeros((q, W), bool)
    Cm = np.zeros((q, W), bool)
    for j, (r, c) in enumerate(zip(R_l, C_l, strict=True)):
        R[j, :len(r)], Rm[j, :len(r)] = r, True
        C[j, :len(c)], Cm[j, :len(c)] = c, True
    # J entries at R x C: storage positions (0: no entry)
    pm = _position_matrix(pattern)
    rr = np.repeat(R[:, :, None], W, axis=2)
    cc = np.repeat(C[:, None, :], W, axis=1)
    pos1 = np.asarray(pm[rr.reshape(-1), cc.reshape(-1)]).reshape(q, W, W)
    pos1 = np.where(Rm[:, :, None] & Cm[:, None, :], pos1, 0)
    has = pos1 > 0
    pos = np.where(has, pos1 - 1, 0)
    kind = pattern.kind[pos]
    src = pattern.src[pos]
    from gridflow.jacobian import SLACK

    p = np.where(kind == SLACK, 0, src)
    i, k = Yrow[p], Ycol[p]
    # the scenario's Ybus values at those entries and its Ibus at the rows' buses (at V0)
    Ysel = Ydata[p].copy()
    Ibus_i = Ibus0[i].copy()
    for j, t in enumerate(scen):
        for kb in out_k[ptr[t]:ptr[t + 1]]:
            for pp, dy in ((terms.pff[kb], terms.Yff[kb]), (terms.pft[kb], terms.Yft[kb]),
                           (terms.ptf[kb], terms.Ytf[kb]), (terms.ptt[kb], terms.Ytt[kb])):
                Ysel[j][p[j] == pp] -= dy
            Vf, Vt = V0[terms.f[kb]], V0[terms.t[kb]]
            Ibus_i[j][i[j] == terms.f[kb]] -= terms.Yff[kb] * Vf + terms.Yft[kb] * Vt
            Ibus_i[j][i[j] == terms.t[kb]] -= terms.Ytf[kb] * Vf + terms.Ytt[kb] * Vt
    Vi, Vk = V0[i], V0[k]
    Jt = entry_values(kind, Vi * np.conj(Ysel * Vk), Vi * np.conj(Ibus_i), _inv_abs(Vk), _inv_abs(Vi), i == k)
    J0v = J0data[pos]
    D = np.where(has & (kind != SLACK), J0v - Jt, 0.0)  # the slack column does not change
    # (J0^-1 E_R)[C, :] in chunks of unit right-hand sides
    n = pattern.n
    XC = np.zeros((q, W, W))
    step = max(1, int(_SETUP_CELLS // max(n * W, 1)))
    for a in range(0, q, step):
        b = min(q, a + step)
        m = b - a
        E = np.zeros((n, m * W))
        cols = np.arange(m * W)
        rows = R[a:b].reshape(-1)
        ok = Rm[a:b].reshape(-1)
        E[rows[ok], cols[ok]] = 1.0
        X = solve(E)  # (n, m W)
        X = X.reshape(n, m, W).transpose(1, 0, 2)  # (m, n, W)
        XC[a:b] = np.take_along_axis(X, C[a:b][:, :, None], axis=1)
    XC = np.where(Cm[:, :, None] & Rm[:, None, :], XC, 0.0)
    K = np.eye(W)[None] - XC @ D
    cond = np.linalg.cond(K)
    good = np.isfinite(cond) & (cond < _COND_MAX)
    Kinv = np.zeros_like(K)
    if good.any():
        Kinv[good] = np.linalg.inv(K[good])
    loc = np.full(T, -1, np.int64)
    sel = np.flatnonzero(good)
    loc[scen[sel]] = np.arange(len(sel))
    if not len(sel):
        return None
    return LowRank(loc=loc, R=R[sel], C=C[sel], Rm=Rm[sel], Cm=Cm[sel], D=D[sel], Kinv=Kinv[sel])


def apply(lr: LowRank, idx, F, x0, solve):
    """Steps ``J_t^-1 F`` for the scenarios ``idx`` given ``x0 = J0^-1 F`` (k, n); rows without a
    correction keep ``x0``."""
    j_loc = lr.loc[idx]
    rows = np.flatnonzero(j_loc >= 0)
    if not len(rows):
        return x0
    L = j_loc[rows]
    xc = np.take_along_axis(x0[rows], lr.C[L], axis=1) * lr.Cm[L]
    y = np.einsum("qij,qj->qi", lr.Kinv[L], xc)
    z = np.einsum("qij,qj->qi", lr.D[L], y) * lr.Rm[L]
    rhs = F[rows].copy()
    np.add.at(rhs, (np.repeat(np.arange(len(rows)), lr.R.shape[1]), lr.R[L].reshape(-1)), z.reshape(-1))
    out = x0.copy()
    out[rows] = solve(rhs.T).T
    return out
