"""``cupyx.scipy.sparse`` stand-in: ``csr_matrix`` over device arrays, held by reference as CuPy does.

``csr_matrix((data, indices, indptr), shape=...)`` keeps the very arrays it is given (no copy
unless ``copy=True``), so values written into ``data`` later are the matrix's values, as on a GPU.
Products with device arrays (``A @ x``, 1-D or 2-D) run through SciPy.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from cupy._standin import bind, device, ndarray, wrap


class csr_matrix:  # noqa: N801 - CuPy's name
    format = "csr"

    def __init__(self, *args, **kwargs):
        ba = bind("cupyx.scipy.sparse.csr_matrix", args, kwargs)
        arg1, shape = ba.arguments["arg1"], ba.arguments.get("shape")
        copy = ba.arguments.get("copy", False)
        if isinstance(arg1, csr_matrix):
            arg1 = (arg1.data, arg1.indices, arg1.indptr)
            shape = shape or arg1.shape
        if sp.issparse(arg1) or isinstance(arg1, np.ndarray):
            raise TypeError("CuPy stand-in: csr_matrix of host data: copy it to the device (cupy.asarray) first")
        if not (isinstance(arg1, tuple) and len(arg1) == 3):
            raise NotImplementedError("CuPy stand-in: only csr_matrix((data, indices, indptr), shape=...)")
        data, indices, indptr = arg1
        for name, a in (("data", data), ("indices", indices), ("indptr", indptr)):
            if not isinstance(a, ndarray):
                raise TypeError(f"csr_matrix: {name} must be a cupy.ndarray (got {type(a).__name__})")
            if a.ndim != 1:
                raise ValueError(f"csr_matrix: {name} must be 1-D")
        if data.dtype.char not in "?fdFD":
            raise ValueError(f"Only bool, float32, float64, complex64 and complex128 are supported (actual: "
                             f"{data.dtype})")
        dtype = ba.arguments.get("dtype")
        if dtype is not None and np.dtype(dtype) != data.dtype:
            data = data.astype(dtype)
        if copy:
            data, indices, indptr = data.copy(), indices.copy(), indptr.copy()
        if shape is None:
            raise NotImplementedError("CuPy stand-in: give shape=")
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = tuple(int(s) for s in shape)

    dtype = property(lambda self: self.data.dtype)
    nnz = property(lambda self: int(self.indptr._a[-1]))
    ndim = 2

    def _scipy(self):
        """A SciPy view of the same buffers (no copy)."""
        m = sp.csr_matrix(self.shape, dtype=self.data.dtype)
        m.data, m.indices, m.indptr = self.data._a, self.indices._a, self.indptr._a
        return m

    @property
    def has_canonical_format(self):
        m = self._scipy()
        return bool(m.has_canonical_format)

    def sum_duplicates(self, *args, **kwargs):
        bind("cupyx.scipy.sparse.csr_matrix.sum_duplicates", args, kwargs)
        if self.has_canonical_format:
            return
        m = self._scipy().copy()
        m.sum_duplicates()
        self.data, self.indices, self.indptr = (ndarray._of(m.data), ndarray._of(m.indices.astype(self.indices.dtype)),
                                                ndarray._of(m.indptr.astype(self.indptr.dtype)))

    def get(self, *args, **kwargs):
        bind("cupyx.scipy.sparse.csr_matrix.get", args, kwargs)
        return self._scipy().copy()

    def tocsr(self, *args, **kwargs):
        ba = bind("cupyx.scipy.sparse.csr_matrix.tocsr", args, kwargs)
        return csr_matrix(self, copy=ba.arguments.get("copy", False))

    def dot(self, *args, **kwargs):
        return self @ bind("cupyx.scipy.sparse.csr_matrix.dot", args, kwargs).arguments["other"]

    def __matmul__(self, other):
        if isinstance(other, csr_matrix):
            raise NotImplementedError("CuPy stand-in: sparse @ sparse")
        x = device(other, "csr_matrix @")
        if not isinstance(other, ndarray):
            raise TypeError(f"csr_matrix @ {type(other).__name__}: not supported")
        if x.ndim not in (1, 2) or x.shape[0] != self.shape[1]:
            raise ValueError(f"dimension mismatch: {self.shape} @ {x.shape}")
        return wrap(np.asarray(self._scipy() @ x))

    def __repr__(self):
        return f"<CuPy stand-in csr_matrix {self.shape}, {self.nnz} stored, {self.dtype}>"


def issparse(*args, **kwargs):
    return isinstance(bind("cupyx.scipy.sparse.issparse", args, kwargs).arguments["x"], csr_matrix)


__all__ = ["csr_matrix", "issparse"]
