"""The power-flow Jacobian: sparsity pattern once per formulation, values every iteration.

Derivation (polar form). With ``I = Ybus V`` and ``S = V conj(I)``, the
derivatives of the complex injections are (MATPOWER's ``dSbus_dV``)::

    dS/dVm = diag(V) conj(Ybus diag(V/|V|)) + conj(diag(I)) diag(V/|V|)
    dS/dVa = j diag(V) conj(diag(I) - Ybus diag(V))

Entry by entry, for a stored Ybus element ``p`` at row ``i``, column ``k``, let
``a_p = V_i conj(Y_p V_k)``. Then::

    dS/dVa[i, k] = -j a_p          (+ j S_i        when i == k)
    dS/dVm[i, k] = a_p / |V_k|     (+ S_i / |V_i|  when i == k)

so every Jacobian value is one of four real numbers computed from one Ybus
entry.

Formulation. The Newton system has P equations at the buses ``prow``, Q
equations at ``mag``; unknowns ``Va`` at ``ang`` and ``Vm`` at ``mag``::

    J = [ dP/dVa[prow, ang]   dP/dVm[prow, mag]   (-w[prow]) ]
        [ dQ/dVa[mag,  ang]   dQ/dVm[mag,  mag]              ]

MATPOWER's ``newtonpf`` is ``prow = ang = pvpq``, ``mag = pq``. With a
distributed slack (pandapower's ``runpp(distributed_slack=True)``) the
reference bus's P equation joins (``prow = [ref, pvpq]``) and one more unknown,
the slack power ``s`` shared by the participation factors ``w`` (the mismatch
is ``S(V) - Sbus - w s``), comes first among the columns, so that the
column of ``s`` sits where the row of the reference bus's P equation does.
Row ``r`` and column ``r`` always belong to the same bus (P with Va, Q with Vm;
the slack row with ``s``), and every diagonal entry is stored, so a row can be
*pinned* (replaced by the identity: its unknown is held) without changing the
pattern.

:func:`jacobian_pattern` maps every J nonzero to its source ``(kind, p)`` once;
:func:`jacobian_values` then fills J's data array with one gather, for one
case or a batch (leading axes of ``V``). The GPU kernel
``kernels/power_flow.cu`` (``gridflow_jacobian``) computes the same numbers, fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: source kinds of a J value: real/imag part of dS/dVa or dS/dVm; the slack column
RE_DVA, RE_DVM, IM_DVA, IM_DVM, SLACK = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class JacobianPattern:
    """Fixed sparsity of J (n x n) and where each value comes from.

    Attributes
    ----------
    n : int
        Order of J: ``len(prow) + len(mag)`` (= ``slack + len(ang) + len(mag)``).
    indptr, indices : int32 arrays
        Compressed pattern, sorted, no duplicates; CSC when ``fmt == "csc"``
        (column pointers, row indices), CSR when ``fmt == "csr"``.
    src : int64 (nnz,)
        Ybus stored-entry index each J value derives from (for SLACK: the bus).
    kind : int8 (nnz,)
        One of RE_DVA, RE_DVM, IM_DVA, IM_DVM, SLACK.
    fmt : str
        "csc" or "csr".
    gather : int64 (nnz,)
        ``kind * nnzY + src``: index into the stacked value kinds, for one gather.
    prow, ang, mag : int64 arrays
        Buses of the P rows, of the Va columns, of the Q rows / Vm columns, in order.
    slack : bool
        Column 0 is the distributed slack power (``prow[0]`` is the reference bus).
    row, col : int32 (nnz,)
        Row and column of every stored value (in storage order).
    diag : int64 (n,)
        Storage position of each diagonal entry (r, r).
    """

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    src: np.ndarray
    kind: np.ndarray
    fmt: str
    gather: np.ndarray
    prow: np.ndarray = None
    ang: np.ndarray = None
    mag: np.ndarray = None
    slack: bool = False
    row: np.ndarray = None
    col: np.ndarray = None
    diag: np.ndarray = None

    @property
    def nnz(self) -> int:
        return len(self.src)

    @property
    def n_p(self) -> int:
        """Number of P rows (the Q rows follow)."""
        return len(self.prow)

    @property
    def pvpq(self) -> np.ndarray:
        """Buses with a Va unknown (MATPOWER's pvpq in the classic formulation)."""
        return self.ang

    @property
    def pq(self) -> np.ndarray:
        """Buses with a Vm unknown (MATPOWER's pq in the classic formulation)."""
        return self.mag


def jacobian_pattern(Ybus, pv, pq, fmt: str = "csc", *, ang=None, mag=None, slack_ref=None,
                     slack_buses=None) -> JacobianPattern:
    """Build J's pattern from Ybus's (CSR, every diagonal stored) and the formulation.

    Parameters
    ----------
    Ybus : scipy.sparse.csr_matrix (nb, nb)
    pv, pq : int arrays
        The classic formulation: Va unknowns at ``pvpq``, Vm unknowns at ``pq``.
    fmt : {"csc", "csr"}
    ang, mag : int arrays, optional
        Instead of pv/pq: buses with a Va unknown (and a P equation) and buses with
        a Vm unknown (and a Q equation), in column order.
    slack_ref : int, optional
        A distributed slack: the reference bus whose P equation joins, and the slack
        power unknown (column 0).
    slack_buses : int array, optional
        Buses whose P equation may carry a participation factor (the slack column's
        entries; ``slack_ref`` is always one).
    """
    nb = Ybus.shape[0]
    ang = np.r_[pv, pq].astype(np.int64) if ang is None else np.asarray(ang, np.int64)
    mag = np.asarray(pq if mag is None else mag, np.int64)
    slack = slack_ref is not None
    s0 = 1 if slack else 0
    prow = np.r_[[slack_ref] if slack else [], ang].astype(np.int64)
    n_p = len(prow)
    rowP = np.full(nb, -1, np.int64)
    rowP[prow] = np.arange(n_p)
    colA = np.full(nb, -1, np.int64)
    colA[ang] = s0 + np.arange(len(ang))
    rowQ = np.full(nb, -1, np.int64)
    rowQ[mag] = n_p + np.arange(len(mag))
    i = np.repeat(np.arange(nb), np.diff(Ybus.indptr))
    k = Ybus.indices.astype(np.int64)
    p = np.arange(Ybus.nnz)
    rows, cols, src, kind = [], [], [], []
    for r_of, c_of, kd in ((rowP, colA, RE_DVA), (rowP, rowQ, RE_DVM), (rowQ, colA, IM_DVA), (rowQ, rowQ, IM_DVM)):
        m = (r_of[i] >= 0) & (c_of[k] >= 0)
        rows.append(r_of[i[m]])
        cols.append(c_of[k[m]])
        src.append(p[m])
        kind.append(np.full(int(m.sum()), kd, np.int8))
    if slack:
        sb = np.union1d([slack_ref], np.asarray([] if slack_buses is None else slack_buses, np.int64))
        sb = sb[rowP[sb] >= 0]
        rows.append(rowP[sb])
        cols.append(np.zeros(len(sb), np.int64))
        src.append(sb)
        kind.append(np.full(len(sb), SLACK, np.int8))
    rows, cols, src, kind = (np.concatenate(a) for a in (rows, cols, src, kind))
    n = n_p + len(mag)
    major, minor = (cols, rows) if fmt == "csc" else (rows, cols)
    order = np.lexsort((minor, major))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(major, minlength=n), out=indptr[1:])
    src, kind, rows, cols = src[order], kind[order], rows[order], cols[order]
    diag = np.full(n, -1, np.int64)
    on_diag = np.flatnonzero(rows == cols)
    diag[rows[on_diag]] = on_diag
    if (diag < 0).any():  # cannot happen: Ybus stores every diagonal and the slack column holds its row
        raise AssertionError("Jacobian pattern without a diagonal entry")
    gather = np.where(kind == SLACK, 4 * Ybus.nnz + src, kind.astype(np.int64) * Ybus.nnz + src)
    return JacobianPattern(n=n, indptr=indptr.astype(np.int32), indices=minor[order].astype(np.int32), src=src,
                           kind=kind, fmt=fmt, gather=gather, prow=prow, ang=ang, mag=mag, slack=slack,
                           row=rows.astype(np.int32), col=cols.astype(np.int32), diag=diag)


def jacobian_values(V, Ibus, Ydata, Yrow, Ycol, pattern: JacobianPattern, xp=np, diag=None, w=None):
    """J's data array for voltages ``V``, in ``pattern`` order.

    Parameters
    ----------
    V : complex128 (..., nb)
        Bus voltages, pu (leading axes are scenarios).
    Ibus : complex128 (..., nb)
        ``Ybus @ V``, pu.
    Ydata : complex128 (nnzY,) or (..., nnzY)
        Ybus stored values (per scenario where outages change them); ``Yrow``, ``Ycol``:
        their int row and column.
    pattern : JacobianPattern
    xp : module
        numpy or cupy.
    diag : int array (nb,), optional
        Position of each diagonal entry among Ybus's stored values (found if not given).
    w : float64 (..., nb), optional
        Participation factors of the distributed slack (patterns with ``slack``); zeros if not given.

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
    w_ = inv_vm[..., Ycol]
    nnzY = Ydata.shape[-1]
    nb = V.shape[-1]
    extra = nb if pattern.slack else 0
    flat = xp.empty(a.shape[:-1] + (4 * nnzY + extra,))
    stack = flat[..., :4 * nnzY].reshape(a.shape[:-1] + (4, nnzY))
    stack[..., RE_DVA, :] = a.imag  # Re(-j a)
    stack[..., IM_DVA, :] = -a.real  # Im(-j a)
    stack[..., RE_DVM, :] = a.real * w_
    stack[..., IM_DVM, :] = a.imag * w_
    # diagonal terms: dS/dVa += j S_i, dS/dVm += S_i / |V_i|
    stack[..., RE_DVA, diag] -= S.imag
    stack[..., IM_DVA, diag] += S.real
    stack[..., RE_DVM, diag] += S.real * inv_vm
    stack[..., IM_DVM, diag] += S.imag * inv_vm
    if extra:
        flat[..., 4 * nnzY:] = 0.0 if w is None else -w
    return xp.take(flat, pattern.gather, axis=-1)


def ybus_diagonal(Yrow, Ycol, xp=np):
    """Position of each bus's diagonal entry among Ybus's stored values (nb,), int64."""
    pos = xp.flatnonzero(Yrow == Ycol)
    return pos[xp.argsort(Yrow[pos])]
