"""The CPU backend: NumPy arrays, SciPy's sparse products, KLU (or SuperLU) factorizations.

Newton steps factorize one Jacobian per scenario. With T > 1 the scenarios are
split over a thread pool that belongs to the model (KLU releases the GIL); every
pool thread keeps its own numeric factorization per pattern (thread-local, on the
pattern's shared symbolic analysis), so later calls refactorize instead of
pivoting afresh, and no factorization is ever used by two threads at once.
"""

from __future__ import annotations

import numpy as np

from gridflow import compensation
from gridflow.backends.base import BatchSpec
from gridflow.jacobian import jacobian_values
from gridflow.linalg import SingularJacobian


class CPUBackend:
    """NumPy/SciPy/KLU. ``threads``: pool size for batches (default: the CPUs this process may use)."""

    name = "cpu"
    xp = np

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def batch_ops(self, model, pattern, spec: BatchSpec) -> CPUBatchOps:
        return CPUBatchOps(model, pattern, spec, threads=spec.threads or self.threads)


class CPUBatchOps:
    """:class:`gridflow.backends.base.BatchOps` on the CPU."""

    xp = np

    def __init__(self, model, pattern, spec: BatchSpec, *, threads: int | None = None):
        self.model = model
        self.pattern = pattern
        self.spec = spec
        self.Ybus = model.Ybus
        self.Ydata = model.Ybus.data
        self.Yrow = model.Yrow
        self.Ycol = model.Ybus.indices
        self.Ydiag = model.Ydiag
        self.n_threads = model.threads_for(spec.T, threads)
        # outages: scenario -> its outaged branches (CSR-like)
        T = spec.T
        order = np.argsort(spec.out_t, kind="stable")
        self._out_k = np.asarray(spec.out_k, np.int64)[order]
        self._out_ptr = np.zeros(T + 1, np.int64)
        np.cumsum(np.bincount(np.asarray(spec.out_t, np.int64), minlength=T), out=self._out_ptr[1:])
        self._pinned = None if spec.free is None else ~spec.free.all(axis=1)
        self._chord = None
        self._lowrank = None

    def to_device(self, a):
        return np.asarray(a)

    def to_host(self, a):
        return np.asarray(a)

    # ------------------------------------------------------------------ products

    def ibus(self, idx, V):
        Ibus = (self.Ybus @ V.T).T
        if self.spec.has_outages:
            spec, tm = self.spec, self.spec.terms
            loc = np.full(spec.T, -1, np.int64)
            loc[idx] = np.arange(len(idx))
            sel = loc[spec.out_t] >= 0
            if sel.any():
                j, k = loc[spec.out_t[sel]], spec.out_k[sel]
                Vf, Vt = V[j, tm.f[k]], V[j, tm.t[k]]
                np.subtract.at(Ibus, (j, tm.f[k]), tm.Yff[k] * Vf + tm.Yft[k] * Vt)
                np.subtract.at(Ibus, (j, tm.t[k]), tm.Ytf[k] * Vf + tm.Ytt[k] * Vt)
        return Ibus

    def _ydata(self, t: int):
        """Ybus values of scenario t (its outaged branches removed)."""
        a, b = self._out_ptr[t], self._out_ptr[t + 1]
        if a == b:
            return self.Ydata
        k = self._out_k[a:b]
        tm = self.spec.terms
        Y = self.Ydata.copy()
        np.subtract.at(Y, tm.pff[k], tm.Yff[k])
        np.subtract.at(Y, tm.pft[k], tm.Yft[k])
        np.subtract.at(Y, tm.ptf[k], tm.Ytf[k])
        np.subtract.at(Y, tm.ptt[k], tm.Ytt[k])
        return Y

    def _values(self, t: int, V, Ibus, w, ydata=None):
        """J's values for scenario t at V (nb,), with its pinned rows made identity rows."""
        pat = self.pattern
        data = jacobian_values(V, Ibus, self._ydata(t) if ydata is None else ydata, self.Yrow, self.Ycol, pat,
                               diag=self.Ydiag, w=w)
        if self._pinned is not None and self._pinned[t]:
            free = self.spec.free[t]
            data[~free[pat.row]] = 0.0
            data[pat.diag[~free]] = 1.0
        return data

    # ------------------------------------------------------------------ steps

    def newton_step(self, idx, V, Ibus, F, w):
        d = np.empty_like(F)
        idx = np.asarray(idx)

        def run(rows):
            lin = self.model.local_solver(self.pattern)
            for j in rows:
                t = int(idx[j])
                data = self._values(t, V[j], Ibus[j], None if w is None else w[j])
                try:
                    d[j] = lin.factorize(data).solve(F[j])
                except SingularJacobian:
                    d[j] = np.nan

        self.model.run_threaded(run, len(F), self.n_threads)
        return d

    def chord_factorize(self, V, Ibus, w):
        # J0: the base topology at V with the first scenario's rows pinned (for a single case, its own Jacobian)
        Ib = self.Ybus @ V
        pat = self.pattern
        data = jacobian_values(V, Ib, self.Ydata, self.Yrow, self.Ycol, pat, diag=self.Ydiag, w=w)
        free0 = np.ones(pat.n, bool) if self.spec.free is None else self.spec.free[0]
        data[~free0[pat.row]] = 0.0
        data[pat.diag[~free0]] = 1.0
        lin = self.model.local_solver(pat, "chord")
        lin.factorize(data)
        self._chord = lin
        # the other scenarios: their own start Jacobian as a low-rank change of J0 (gridflow.compensation)
        self._lowrank = compensation.prepare(pat, self.spec, self.spec.terms, V, Ib, self.Ydata, self.Yrow,
                                             self.Ycol, data, self._solve0, w, free0)

    def _solve0(self, B):
        """J0^-1 B for B (n, k)."""
        return self._chord.solve(np.asfortranarray(B))

    def chord_solve(self, idx, F):
        x0 = self._solve0(F.T).T
        if self._lowrank is None:
            return x0
        return compensation.apply(self._lowrank, np.asarray(idx), F, x0, self._solve0)

    def close(self):
        self._chord = None
