"""Scenario Jacobians as low-rank changes of the chord Jacobian (the compensation method, Woodbury's identity).

A batch factorizes one Jacobian ``J0`` (at the shared start, base topology,
nothing pinned). A scenario's own Jacobian at that start differs from ``J0``
only in a few rows R:

* taking branches out of service changes four Ybus entries per branch, so the
  P and Q rows of the branches' end buses change;
* a pinned row (a de-energized bus, an island's own slack, a PV bus's Q row in
  a formulation that also carries PQ buses) becomes the identity row.

Writing ``J_t = J0 - E_R Δ`` with ``Δ = J0[R, :] - J_t[R, :]`` (nonzero only in
the columns C those rows touch, ``Δ = D E_C^T``), Woodbury's identity gives the
scenario's own start Jacobian without factorizing it::

    J_t^-1 b = x0 + X y,   x0 = J0^-1 b,   X = J0^-1 E_R,   y = K^-1 D x0[C],   K = I - D X[C, :]

(one shared triangular solve per step when X is kept, two when memory says
not to keep it, plus a |R| x |R| dense product). Chord steps with ``J_t``
converge like Newton's method from a warm start, so most contingencies (NERC
TPL-001 P1) are solved with no factorization of their own. ``K`` singular
(numerically) means the scenario's start Jacobian is; such scenarios, and those
changing more than ``MAX_ROWS`` rows (large de-energized islands), take the
plain chord (``J0``) and, if it does not contract, Newton steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.jacobian import SLACK, _inv_abs, entry_values

#: scenarios changing more rows than this take the plain chord
MAX_ROWS = 12
#: K with a condition number above this is taken as singular
_COND_MAX = 1e10
#: unit right-hand sides solved at once when preparing, and the largest X kept: numbers (n x columns)
_SETUP_CELLS = 20_000_000
_KEEP_CELLS = 8_000_000


@dataclass(frozen=True)
class LowRank:
    """Per-scenario Woodbury data (q scenarios with a correction; padded widths WR rows, WC columns).

    loc : int64 (T,) — position among the q, or -1; R : int64 (q, WR), Rm : bool (q, WR) — changed rows;
    C : int64 (q, WC), Cm : bool (q, WC) — the columns they touch; D : float64 (q, WR, WC);
    Kinv : float64 (q, WR, WR); X : float64 (q, n, WR) or None (J0^-1 E_R, when kept).
    """

    loc: np.ndarray
    R: np.ndarray
    Rm: np.ndarray
    C: np.ndarray
    Cm: np.ndarray
    D: np.ndarray
    Kinv: np.ndarray
    X: np.ndarray | None


def _row_view(pattern):
    """(row_ptr, storage positions in row order, their columns), cached on the pattern."""
    rv = getattr(pattern, "_rowview", None)
    if rv is None:
        order = np.argsort(pattern.row, kind="stable")
        ptr = np.zeros(pattern.n + 1, np.int64)
        np.cumsum(np.bincount(pattern.row, minlength=pattern.n), out=ptr[1:])
        rv = (ptr, order, pattern.col[order].astype(np.int64))
        object.__setattr__(pattern, "_rowview", rv)
    return rv


def _bus_rows(pattern, nb):
    """P row and Q row of every bus, -1 where it has none."""
    n_p = len(pattern.prow)
    rowP = np.full(nb, -1, np.int64)
    rowP[pattern.prow] = np.arange(n_p)
    rowQ = np.full(nb, -1, np.int64)
    rowQ[pattern.mag] = n_p + np.arange(len(pattern.mag))
    return rowP, rowQ


def prepare(pattern, spec, terms, V0, Ibus0, Ydata, Yrow, Ycol, J0data, solve, w0=None, free0=None):
    """The :class:`LowRank` data of a batch's scenarios that differ from J0, or None.

    ``V0``, ``Ibus0`` (nb,): the chord point (base topology: ``Ibus0 = Ybus V0``); ``J0data``: J0's values;
    ``solve(B)``: ``J0^-1 B`` for B (n, k); ``w0`` (nb,): the participation factors J0 was built with
    (distributed slack); ``free0`` bool (n,): J0's free rows (None: none pinned). A scenario differs from J0 in
    its outages' rows and in every row pinned in one and free in the other.
    """
    T = spec.T
    nb = len(V0)
    n = pattern.n
    order = np.argsort(spec.out_t, kind="stable")
    out_t, out_k = np.asarray(spec.out_t)[order], np.asarray(spec.out_k)[order]
    ptr = np.zeros(T + 1, np.int64)
    np.cumsum(np.bincount(out_t, minlength=T), out=ptr[1:])
    free0 = np.ones(n, bool) if free0 is None else np.asarray(free0, bool)
    free = np.ones((T, n), bool) if spec.free is None else np.asarray(spec.free, bool)
    repinned = (free != free0[None, :]).any(axis=1)
    cand = np.flatnonzero((np.diff(ptr) > 0) | repinned)
    if not len(cand):
        return None
    rowP, rowQ = _bus_rows(pattern, nb)
    rptr, rpos, rcol = _row_view(pattern)
    scen, R_l = [], []
    for t in cand:
        ks = out_k[ptr[t]:ptr[t + 1]]
        buses = np.unique(np.r_[terms.f[ks], terms.t[ks]]) if len(ks) else np.zeros(0, np.int64)
        rows = np.r_[rowP[buses], rowQ[buses]]
        rows = np.union1d(rows[rows >= 0], np.flatnonzero(free[t] != free0))
        if len(rows) > MAX_ROWS:
            continue
        scen.append(t)
        R_l.append(rows)
    if not scen:
        return None
    scen = np.asarray(scen)
    q = len(scen)
    WR = max(len(r) for r in R_l)
    # the columns each scenario's rows touch, and those entries' storage positions
    C_l, E_l = [], []
    for rows in R_l:
        e = np.concatenate([rpos[rptr[r]:rptr[r + 1]] for r in rows])
        C_l.append(np.unique(pattern.col[e].astype(np.int64)))
        E_l.append(e)
    WC = max(len(c) for c in C_l)
    R = np.zeros((q, WR), np.int64)
    Rm = np.zeros((q, WR), bool)
    C = np.zeros((q, WC), np.int64)
    Cm = np.zeros((q, WC), bool)
    D = np.zeros((q, WR, WC))
    # the scenario's J at V0 in its changed rows, entry by entry (all scenarios at once)
    jj, ee = [], []
    for j, e in enumerate(E_l):
        jj.append(np.full(len(e), j))
        ee.append(e)
    jj, ee = np.concatenate(jj), np.concatenate(ee)
    kind, src = pattern.kind[ee], pattern.src[ee]
    p = np.where(kind == SLACK, 0, src)
    i, k = Yrow[p], Ycol[p]
    Ysel = Ydata[p].copy()
    Ibus_i = Ibus0[i].copy()
    for j, t in enumerate(scen):
        m = jj == j
        for kb in out_k[ptr[t]:ptr[t + 1]]:
            pj = p[m]
            ij = i[m]
            y = Ysel[m]
            for pp, dy in ((terms.pff[kb], terms.Yff[kb]), (terms.pft[kb], terms.Yft[kb]),
                           (terms.ptf[kb], terms.Ytf[kb]), (terms.ptt[kb], terms.Ytt[kb])):
                y = np.where(pj == pp, y - dy, y)
            Ysel[m] = y
            Vf, Vt = V0[terms.f[kb]], V0[terms.t[kb]]
            ib = Ibus_i[m]
            ib = np.where(ij == terms.f[kb], ib - (terms.Yff[kb] * Vf + terms.Yft[kb] * Vt), ib)
            ib = np.where(ij == terms.t[kb], ib - (terms.Ytf[kb] * Vf + terms.Ytt[kb] * Vt), ib)
            Ibus_i[m] = ib
    Vi, Vk = V0[i], V0[k]
    Jt = entry_values(kind, Vi * np.conj(Ysel * Vk), Vi * np.conj(Ibus_i), _inv_abs(Vk), _inv_abs(Vi), i == k)
    if pattern.slack:
        Jt = np.where(kind == SLACK, 0.0 if w0 is None else -w0[np.where(kind == SLACK, src, 0)], Jt)
    row_e, col_e = pattern.row[ee].astype(np.int64), pattern.col[ee].astype(np.int64)
    for j in range(q):
        rows, cols, ft = R_l[j], C_l[j], free[scen[j]]
        R[j, :len(rows)], Rm[j, :len(rows)] = rows, True
        C[j, :len(cols)], Cm[j, :len(cols)] = cols, True
        m = jj == j
        jt = np.where(ft[row_e[m]], Jt[m], np.where(row_e[m] == col_e[m], 1.0, 0.0))  # a pinned row: identity
        ri = np.searchsorted(rows, row_e[m])
        ci = np.searchsorted(cols, col_e[m])
        D[j, ri, ci] = J0data[ee[m]] - jt
    # X = J0^-1 E_R, in chunks of unit right-hand sides; kept when small enough
    keep = q * n * WR <= _KEEP_CELLS
    X_all = np.zeros((q, n, WR)) if keep else None
    XC = np.zeros((q, WC, WR))
    step = max(1, int(_SETUP_CELLS // max(n * WR, 1)))
    for a in range(0, q, step):
        b = min(q, a + step)
        mm = b - a
        E = np.zeros((n, mm * WR))
        cols = np.arange(mm * WR)
        rr = R[a:b].reshape(-1)
        ok = Rm[a:b].reshape(-1)
        E[rr[ok], cols[ok]] = 1.0
        X = solve(E).reshape(n, mm, WR).transpose(1, 0, 2)  # (mm, n, WR)
        X = X * Rm[a:b][:, None, :]
        if keep:
            X_all[a:b] = X
        XC[a:b] = np.take_along_axis(X, C[a:b][:, :, None], axis=1) * Cm[a:b][:, :, None]
    K = np.eye(WR)[None] - D @ XC
    pad = ~Rm
    K[pad[:, :, None] & np.eye(WR, dtype=bool)[None]] = 1.0  # identity on padded rows
    cond = np.linalg.cond(K)
    good = np.isfinite(cond) & (cond < _COND_MAX)
    if not good.any():
        return None
    sel = np.flatnonzero(good)
    Kinv = np.linalg.inv(K[sel])
    loc = np.full(T, -1, np.int64)
    loc[scen[sel]] = np.arange(len(sel))
    return LowRank(loc=loc, R=R[sel], Rm=Rm[sel], C=C[sel], Cm=Cm[sel], D=D[sel], Kinv=Kinv,
                   X=None if X_all is None else X_all[sel])


def apply(lr: LowRank, idx, F, x0, solve):
    """Steps ``J_t^-1 F`` for the scenarios ``idx`` given ``x0 = J0^-1 F`` (k, n); rows without a
    correction keep ``x0``."""
    j_loc = lr.loc[idx]
    rows = np.flatnonzero(j_loc >= 0)
    if not len(rows):
        return x0
    L = j_loc[rows]
    xc = np.take_along_axis(x0[rows], lr.C[L], axis=1) * lr.Cm[L]
    y = np.einsum("qij,qj->qi", lr.Kinv[L], np.einsum("qij,qj->qi", lr.D[L], xc))
    out = x0.copy()
    if lr.X is not None:
        out[rows] += np.einsum("qnr,qr->qn", lr.X[L], y)
    else:
        rhs = np.zeros((len(rows), x0.shape[1]))
        np.add.at(rhs, (np.repeat(np.arange(len(rows)), lr.R.shape[1]), lr.R[L].reshape(-1)),
                  (y * lr.Rm[L]).reshape(-1))
        out[rows] += solve(rhs.T).T
    return out
