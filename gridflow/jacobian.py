"""The power-flow Jacobian: sparsity pattern once per topology, values every iteration.

Derivation (polar form). With ``I = Ybus V`` and ``S = V conj(I)``, the
derivatives of the complex injections are (MATPOWER's ``dSbus_dV``)::

    dS/dVm = diag(V) conj(Ybus diag(V/|V|)) + conj(diag(I)) diag(V/|V|)
    dS/dVa = j diag(V) conj(diag(I) - Ybus diag(V))

Entry by entry, for a stored Ybus element ``p`` at row ``i``, column ``k``, let
``a_p = V_i conj(Y_p V_k)``. Then::

    dS/dVa[i, k] = -j a_p          (+ j S_i        when i == k)
    dS/dVm[i, k] = a_p / |V_k|     (+ S_i / |V_i|  when i == k)

so every Jacobian value is one of four real numbers computed from one Ybus
entry. The Newton system uses::

    J = [ dP/dVa[pvpq, pvpq]   dP/dVm[pvpq, pq] ]
        [ dQ/dVa[pq,   pvpq]   dQ/dVm[pq,   pq] ]

:func:`jacobian_pattern` maps every J nonzero to its source ``(kind, p)`` once;
:func:`jacobian_values` then fills J's data array with one gather, for one
case or a batch (leading axes of ``V``). The GPU kernel
``kernels/power_flow.cu`` (``gridflow_jacobian``) computes the same numbers, fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: source kinds of a J value: real/imag part of dS/dVa or dS/dVm
RE_DVA, RE_DVM, IM_DVA, IM_DVM = 0, 1, 2, 3


@dataclass(frozen=True)
class JacobianPattern:
    """Fixed sparsity of J (n x n, n = npv + 2 npq) and where each value comes from.

    Attributes
    ----------
    n : int
        Order of J.
    indptr, indices : int32 arrays
        Compressed pattern, sorted, no duplicates; CSC when ``fmt == "csc"``
        (column pointers, row indices), CSR when ``fmt == "csr"``.
    src : int64 (nnz,)
        Ybus stored-entry index each J value derives from.
    kind : int8 (nnz,)
        One of RE_DVA, RE_DVM, IM_DVA, IM_DVM.
    fmt : str
        "csc" or "csr".
    gather : int64 (nnz,)
        ``kind * nnzY + src``: index into the stacked (4 * nnzY) value kinds, for one gather.
    """

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    src: np.ndarray
    kind: np.ndarray
    fmt: str
    gather: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.src)


def jacobian_pattern(Ybus, pv, pq, fmt: str = "csc") -> JacobianPattern:
    """Build J's pattern from Ybus's (CSR, every diagonal stored) and the bus types."""
    nb = Ybus.shape[0]
    pvpq = np.r_[pv, pq]
    npvpq, npq = len(pvpq), len(pq)
    rowP = np.full(nb, -1, np.int64)
    rowP[pvpq] = np.arange(npvpq)
    rowQ = np.full(nb, -1, np.int64)
    rowQ[pq] = npvpq + np.arange(npq)
    i = np.repeat(np.arange(nb), np.diff(Ybus.indptr))
    k = Ybus.indices.astype(np.int64)
    p = np.arange(Ybus.nnz)
    rows, cols, src, kind = [], [], [], []
    for r_of, c_of, kd in ((rowP, rowP, RE_DVA), (rowP, rowQ, RE_DVM), (rowQ, rowP, IM_DVA), (rowQ, rowQ, IM_DVM)):
        m = (r_of[i] >= 0) & (c_of[k] >= 0)
        rows.append(r_of[i[m]])
        cols.append(c_of[k[m]])
        src.append(p[m])
        kind.append(np.full(int(m.sum()), kd, np.int8))
    rows, cols, src, kind = (np.concatenate(a) for a in (rows, cols, src, kind))
    n = npvpq + npq
    major, minor = (cols, rows) if fmt == "csc" else (rows, cols)
    order = np.lexsort((minor, major))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(major, minlength=n), out=indptr[1:])
    src, kind = src[order], kind[order]
    return JacobianPattern(n=n, indptr=indptr.astype(np.int32), indices=minor[order].astype(np.int32),
                           src=src, kind=kind, fmt=fmt, gather=kind.astype(np.int64) * Ybus.nnz + src)


def jacobian_values(V, Ibus, Ydata, Yrow, Ycol, pattern: JacobianPattern, xp=np, diag=None):
    """J's data array for voltages ``V``, in ``pattern`` order.

    Parameters
    ----------
    V : complex128 (..., nb)
        Bus voltages, pu (leading axes are scenarios).
    Ibus : complex128 (..., nb)
        ``Ybus @ V``, pu.
    Ydata : complex128 (nnzY,)
        Ybus stored values; ``Yrow``, ``Ycol``: their int row and column.
    pattern : JacobianPattern
    xp : module
        numpy or cupy.
    diag : int array (nb,), optional
        Position of each diagonal entry among Ybus's stored values (found if not given).

    Returns
    -------
    float64 (..., nnzJ)
    """
    if diag is None:
        diag = ybus_diagonal(Yrow, Ycol, xp)
    a = V[..., Yrow] * xp.conj(Ydata * V[..., Ycol])  # a_p = V_i conj(Y_p V_k)
    S = V * xp.conj(Ibus)
    vm = xp.abs(V)
    inv_vm = xp.where(vm > 0, 1.0 / xp.where(vm > 0, vm, 1.0), 0.0)  # de-energized buses have V = 0
    w = inv_vm[..., Ycol]
    stack = xp.empty(V.shape[:-1] + (4, len(Ydata)))
    stack[..., RE_DVA, :] = a.imag  # Re(-j a)
    stack[..., IM_DVA, :] = -a.real  # Im(-j a)
    stack[..., RE_DVM, :] = a.real * w
    stack[..., IM_DVM, :] = a.imag * w
    # diagonal terms: dS/dVa += j S_i, dS/dVm += S_i / |V_i|
    stack[..., RE_DVA, diag] -= S.imag
    stack[..., IM_DVA, diag] += S.real
    stack[..., RE_DVM, diag] += S.real * inv_vm
    stack[..., IM_DVM, diag] += S.imag * inv_vm
    flat = stack.reshape(V.shape[:-1] + (4 * len(Ydata),))
    return xp.take(flat, pattern.gather, axis=-1)


def ybus_diagonal(Yrow, Ycol, xp=np):
    """Position of each bus's diagonal entry among Ybus's stored values (nb,), int64."""
    pos = xp.flatnonzero(Yrow == Ycol)
    return pos[xp.argsort(Yrow[pos])]
