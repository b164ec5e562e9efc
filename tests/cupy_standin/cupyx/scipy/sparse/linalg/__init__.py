"""``cupyx.scipy.sparse.linalg`` stand-in: ``spsolve_triangular`` with the checks of CuPy 14's SpSM path.

CuPy 14 (CUDA 12+) solves with ``cupyx.cusparse.spsm``, which refuses what the older csrsm2
path converted: ``b`` of another dtype than ``A`` (TypeError 'dtype mismatch'), ``b`` neither C-
nor F-contiguous (ValueError); it returns an F-ordered array shaped like ``b``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
from cupy._standin import bind, ndarray, wrap
from cupyx.scipy import sparse


def spsolve_triangular(*args, **kwargs):
    ba = bind("cupyx.scipy.sparse.linalg.spsolve_triangular", args, kwargs)
    A, b = ba.arguments["A"], ba.arguments["b"]
    lower = ba.arguments.get("lower", True)
    unit = ba.arguments.get("unit_diagonal", False)
    if not sparse.issparse(A):
        raise TypeError("A must be cupyx.scipy.sparse.spmatrix")
    if not isinstance(b, ndarray):
        raise TypeError("b must be cupy.ndarray")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix (A.shape: {A.shape})")
    if b.ndim not in (1, 2):
        raise ValueError(f"b must be 1D or 2D array (b.shape: {b.shape})")
    if A.shape[0] != b.shape[0]:
        raise ValueError("The size of dimensions of A must be equal to the size of the first dimension of b "
                         f"(A.shape: {A.shape}, b.shape: {b.shape})")
    if A.dtype.char not in "fdFD":
        raise TypeError(f"unsupported dtype (actual: {A.dtype})")
    A.sum_duplicates()
    if A.dtype != b.dtype:
        raise TypeError("dtype mismatch")
    if not (b._a.flags.c_contiguous or b._a.flags.f_contiguous):
        raise ValueError("b must be F-contiguous or C-contiguous.")
    x = spla.spsolve_triangular(A._scipy(), b._a, lower=lower, unit_diagonal=unit)
    return wrap(np.asfortranarray(x))


__all__ = ["spsolve_triangular"]
