"""The CUDA kernels (kernels/power_flow.cu) against the CPU backend's arithmetic.

``gridflow_ibus`` is held to :meth:`CPUBatchOps.ibus`, ``gridflow_jacobian`` to
:meth:`CPUBatchOps._values` (``gridflow.jacobian.jacobian_values`` with the scenario's outages
and pinned rows), on case118 and case9241pegase with random voltages, outages (a few per
scenario, repeated branches included), pinned rows and the distributed-slack column; and the
kernel Jacobian is checked against finite differences of the kernel's own mismatch. Agreement:
1e-12 relative to the largest magnitude (sums of terms of either sign lose relative accuracy
entry by entry).

``gpu``-marked: on a CUDA device, or on the CuPy stand-in, which runs the ``.cu`` source
compiled as host C++ (or the kernels' NumPy twins without a compiler;
``tests/test_cupy_standin.py`` holds the two to each other).
"""

from __future__ import annotations

import numpy as np
import pytest

import gridflow
from gridflow.backends.cpu import CPUBatchOps
from gridflow.jacobian import SLACK
from gridflow.model import PowerFlowModel

RTOL = 1e-12


def _case(name, matpower_dir):
    return gridflow.load_case(str(matpower_dir / f"{name}.m"))


def _setup(model, T, seed, *, slack=False, pins=False, outages=True):
    """A pattern of the model's case, and a spec with random outages and pins; voltages, participation."""
    rng = np.random.default_rng(seed)
    case = model.case
    roles = model.roles(T, slack_ref=int(model.net.ref[0]) if slack else None)
    pattern, _ = model._formulation(roles, slack)
    n = pattern.n
    free = rng.uniform(size=(T, n)) > 0.2 if pins else None
    if outages:
        counts = rng.integers(0, 4, T)
        out_t = np.repeat(np.arange(T), counts)
        out_k = rng.integers(0, case.nl, len(out_t))
        if len(out_k) > 1:
            out_k[1] = out_k[0]  # the same branch twice in one scenario, where the draw allows
            out_t[1] = out_t[0]
    else:
        out_t = out_k = None
    spec = model.spec(T, out_t, out_k, free, model.branch_terms if outages else None)
    nb = case.nb
    V = (1 + 0.05 * rng.uniform(-1, 1, (T, nb))) * np.exp(1j * 0.3 * rng.uniform(-1, 1, (T, nb)))
    V[:, rng.integers(0, nb, 2)] = 0.0  # de-energized buses
    w = rng.uniform(size=(T, nb)) if slack else None
    return pattern, spec, V, w


def _close(got, ref, rtol=RTOL):
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


@pytest.fixture(params=["case118", "case9241pegase"])
def model(request, matpower_dir):
    return PowerFlowModel(_case(request.param, matpower_dir))


pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("T", [1, 7])
def test_ibus_kernel(model, T):
    import cupy as cp

    from gridflow.backends.gpu import GPUBackend

    pattern, spec, V, _ = _setup(model, T, seed=T)
    cpu = CPUBatchOps(model, pattern, spec)
    gpu = GPUBackend().batch_ops(model, pattern, spec)
    idx = np.arange(T)[::-1].copy()  # rows in another order than the scenarios
    ref = cpu.ibus(idx, V[idx])
    got = cp.asnumpy(gpu.ibus(cp.asarray(idx), cp.asarray(V[idx])))
    _close(got, ref)


@pytest.mark.parametrize("slack, pins", [(False, False), (False, True), (True, True)])
def test_jacobian_kernel(model, slack, pins):
    import cupy as cp

    from gridflow.backends.gpu import GPUBackend

    T = 5
    pattern, spec, V, w = _setup(model, T, seed=11, slack=slack, pins=pins)
    assert (pattern.kind == SLACK).any() == slack
    cpu = CPUBatchOps(model, pattern, spec)
    gpu = GPUBackend().batch_ops(model, pattern, spec)
    idx = np.array([3, 0, 4])
    Ibus = cpu.ibus(idx, V[idx])
    got = cp.asnumpy(gpu.jacobian(cp.asarray(idx), cp.asarray(V[idx]), cp.asarray(Ibus),
                                  None if w is None else cp.asarray(w[idx])))
    for j, t in enumerate(idx):
        _close(got[j], cpu._values(int(t), V[t], Ibus[j], None if w is None else w[t]))
    # the base Jacobian (chord): no outages, nothing pinned
    base = cp.asnumpy(gpu.jacobian(cp.zeros(1, dtype=cp.int32), cp.asarray(V[:1]), cp.asarray(Ibus[:1]),
                                   None if w is None else cp.asarray(w[:1]), base=True))
    from gridflow.jacobian import jacobian_values

    ref = jacobian_values(V[0], Ibus[0], model.Ybus.data, model.Yrow, model.Ybus.indices, pattern, diag=model.Ydiag,
                          w=None if w is None else w[0])
    _close(base[0], ref)


def test_jacobian_kernel_is_the_derivative_of_the_mismatch(matpower_dir):
    """Finite differences of the kernels' own mismatch (an outage and the slack column included)."""
    import cupy as cp

    from gridflow.backends.gpu import GPUBackend

    m = PowerFlowModel(_case("case30", matpower_dir))
    roles = m.roles(1, slack_ref=int(m.net.ref[0]))
    pattern, _ = m._formulation(roles, True)
    spec = m.spec(1, [0], [3], None, m.branch_terms)
    ops = GPUBackend().batch_ops(m, pattern, spec)
    rng = np.random.default_rng(5)
    nb = m.case.nb
    V = (1 + 0.03 * rng.uniform(-1, 1, nb)) * np.exp(1j * 0.2 * rng.uniform(-1, 1, nb))
    w = np.zeros(nb)
    sb = pattern.src[pattern.kind == SLACK]  # buses the slack column has entries for (generator buses)
    w[sb] = rng.uniform(size=len(sb))
    s0 = 1 if pattern.slack else 0
    n_a = len(pattern.ang)

    def F(Va, Vm, s):
        v = Vm * np.exp(1j * Va)
        Ib = cp.asnumpy(ops.ibus(cp.zeros(1, dtype=cp.int64), cp.asarray(v[None])))[0]
        mis = v * np.conj(Ib) - w * s
        return np.r_[mis[pattern.prow].real, mis[pattern.mag].imag]

    Ib = ops.ibus(cp.zeros(1, dtype=cp.int64), cp.asarray(V[None]))
    vals = cp.asnumpy(ops.jacobian(cp.zeros(1, dtype=cp.int32), cp.asarray(V[None]), Ib, cp.asarray(w[None])))[0]
    import scipy.sparse as sp

    J = sp.csc_matrix((vals, pattern.indices, pattern.indptr), shape=(pattern.n, pattern.n)).toarray()
    Va, Vm = np.angle(V), np.abs(V)
    h = 1e-7
    cols = []
    for c in range(pattern.n):
        a, mg, s = Va.copy(), Vm.copy(), 0.0
        if c < s0:
            s += h
        elif c < s0 + n_a:
            a[pattern.ang[c - s0]] += h
        else:
            mg[pattern.mag[c - s0 - n_a]] += h
        cols.append((F(a, mg, s) - F(Va, Vm, 0.0)) / h)
    np.testing.assert_allclose(J, np.array(cols).T, atol=2e-5 * np.abs(J).max())
