"""NumPy twins of the CUDA kernels (``kernels/*.cu``): the same arguments, the same results.

The stand-in runs a kernel through its twin where no C++ compiler is found (``_raw.py``). Each
twin computes what the CPU backend computes (``gridflow.backends.cpu``, ``gridflow.jacobian``),
so the GPU path's answers under the stand-in are the CPU's by construction; with a compiler the
``.cu`` sources themselves run, and ``tests/test_kernels.py`` holds them to these twins.
Arrays arrive flat (C order) as the kernel sees them; outputs are written in place.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gridflow.jacobian import SLACK, JacobianPattern, jacobian_values


def _rows(sc, out_ptr, out_br):
    """Pairs (row j, branch b) of every outage of every row's scenario."""
    counts = out_ptr[sc + 1] - out_ptr[sc]
    j = np.repeat(np.arange(len(sc)), counts)
    starts = np.repeat(out_ptr[sc], counts)
    offset = np.arange(len(j)) - np.repeat(np.cumsum(counts) - counts, counts)
    return j, out_br[starts + offset] if len(j) else np.zeros(0, np.int64)


def gridflow_ibus(indptr, indices, ydata, V, sc, out_ptr, out_br, bf, bt, yff, yft, ytf, ytt, Ibus, k, nb):
    k, nb = int(k), int(nb)
    V = V.reshape(k, nb)
    Y = sp.csr_matrix((ydata, indices, indptr), shape=(nb, nb))
    I = (Y @ V.T).T
    j, b = _rows(sc, out_ptr, out_br)
    if len(j):
        Vf, Vt = V[j, bf[b]], V[j, bt[b]]
        np.subtract.at(I, (j, bf[b]), yff[b] * Vf + yft[b] * Vt)
        np.subtract.at(I, (j, bt[b]), ytf[b] * Vf + ytt[b] * Vt)
    Ibus.reshape(k, nb)[...] = I


def gridflow_jacobian(V, Ibus, ydata, yrow, ycol, src, kind, jrow, jcol, sc, out_ptr, out_br, pff, pft, ptf, ptt,
                      yff, yft, ytf, ytt, w, has_w, free_rows, has_free, J, k, nb, n, nnzJ):
    k, nb, n, nnzJ = int(k), int(nb), int(n), int(nnzJ)
    V, Ibus, J = V.reshape(k, nb), Ibus.reshape(k, nb), J.reshape(k, nnzJ)
    nnzY = len(ydata)
    gather = np.where(kind == SLACK, 4 * nnzY + src, kind.astype(np.int64) * nnzY + src)
    pattern = JacobianPattern(n=n, indptr=None, indices=None, src=src, kind=kind, fmt="twin", gather=gather,
                              slack=bool((kind == SLACK).any()))
    diag = np.flatnonzero(yrow == ycol)
    diag = diag[np.argsort(yrow[diag])]
    ydata_rows = np.broadcast_to(ydata, (k, nnzY)).copy()
    j, b = _rows(sc, out_ptr, out_br)
    for pos, y in ((pff, yff), (pft, yft), (ptf, ytf), (ptt, ytt)):
        np.subtract.at(ydata_rows, (j, pos[b]), y[b])
    wk = w.reshape(k, nb) if int(has_w) else None
    J[...] = jacobian_values(V, Ibus, ydata_rows, yrow, ycol, pattern, diag=diag, w=wk)
    if int(has_free):
        free = free_rows.reshape(-1, n)[sc]
        pinned = ~free[:, jrow]
        J[pinned] = 0.0
        J[pinned & (jrow == jcol)[None, :]] = 1.0


TWINS = {"gridflow_ibus": gridflow_ibus, "gridflow_jacobian": gridflow_jacobian}
