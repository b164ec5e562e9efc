"""The CuPy stand-in enforces what CuPy 14 enforces, and the GPU path asks for nothing CuPy lacks.

* CuPy's signatures: a NumPy-only keyword raises TypeError (``amax(..., initial=)``, the bug that
  made ``solve_batch(backend="gpu")`` crash at its first residual; ``ufunc(where=)``,
  ``take(mode=)``, ``argsort(stable=)``, ``isin(kind=)``, ``zeros(device=)``, ``gmres(tol=)``);
* no implicit host/device transfers; 0-d results; no ``__index__``;
* kernel launches checked against the C parameter list; ``spsolve_triangular``'s SpSM rules;
  ``csr_matrix`` holding its arrays by reference;
* statically: every CuPy call and array-method call in the GPU path (``gridflow/newton.py``,
  ``gridflow/backends/gpu.py``) uses only keywords CuPy 14 has;
* the recorded signatures are the installed CuPy's (where a real CuPy imports: on a GPU machine);
* the ``.cu`` sources run as host C++ give the kernels' NumPy twins' numbers.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cupy_standin
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIGS = json.loads((Path(cupy_standin.__file__).parent / "cupy_signatures.json").read_text())["signatures"]
GPU_PATH = (ROOT / "gridflow" / "newton.py", ROOT / "gridflow" / "backends" / "gpu.py")


@pytest.fixture
def cp():
    with cupy_standin.active() as cupy:
        yield cupy


# ---------------------------------------------------------------------------------------------- signatures


@pytest.mark.gpu
def test_the_initial_bug_is_refused(cp):
    """``xp.abs(F).max(axis=1, initial=0.0)``: fine on NumPy, a TypeError on CuPy 14 and on the stand-in."""
    F = np.array([[1.0, -3.0], [0.5, 0.25]])
    np.testing.assert_array_equal(np.abs(F).max(axis=1, initial=0.0), [3.0, 0.5])
    Fd = cp.asarray(F)
    with pytest.raises(TypeError, match="initial"):
        cp.abs(Fd).max(axis=1, initial=0.0)
    with pytest.raises(TypeError, match="initial"):
        cp.amax(Fd, axis=1, initial=0.0)
    assert cp.asnumpy(cp.abs(Fd).max(axis=1)).tolist() == [3.0, 0.5]


@pytest.mark.gpu
@pytest.mark.parametrize("call", [
    lambda cp, a: cp.abs(a, where=a > 0),
    lambda cp, a: cp.add(a, a, where=a > 0),
    lambda cp, a: a.sum(axis=0, where=a > 0),
    lambda cp, a: cp.sum(a, initial=1.0),
    lambda cp, a: a.min(initial=0.0),
    lambda cp, a: a.all(where=a > 0),
    lambda cp, a: cp.take(a, cp.asarray([0]), mode="clip"),
    lambda cp, a: a.take(cp.asarray([0]), mode="clip"),
    lambda cp, a: cp.argsort(a, stable=True),
    lambda cp, a: cp.isin(a, a, kind="table"),
    lambda cp, a: cp.zeros(3, device="cpu"),
    lambda cp, a: cp.count_nonzero(a, keepdims=True),
    lambda cp, a: cp.RawModule("extern \"C\" __global__ void k() {}"),  # code is keyword-only
    lambda cp, a: cp.RawModule(code="", options=["-O3"]),  # options must be a tuple
], ids=["abs-where", "add-where", "sum-where", "sum-initial", "min-initial", "all-where", "take-mode",
        "method-take-mode", "argsort-stable", "isin-kind", "zeros-device", "count_nonzero-keepdims",
        "RawModule-positional", "RawModule-options-list"])
def test_numpy_only_arguments_are_refused(cp, call):
    with pytest.raises(TypeError):
        call(cp, cp.asarray(np.arange(6.0).reshape(2, 3)))


@pytest.mark.gpu
def test_gmres_has_no_tol(cp):
    from cupy._standin import bind

    bind("cupyx.scipy.sparse.linalg.gmres", (None, None), {"rtol": 1e-8})
    with pytest.raises(TypeError, match="tol"):
        bind("cupyx.scipy.sparse.linalg.gmres", (None, None), {"tol": 1e-8})


def _violations(source: str, filename: str = "<src>") -> list[str]:
    """Calls in ``source`` whose keywords CuPy 14 lacks: ``xp.``/``cp.``/``cupy.`` functions, ``cspla.``/``csp.``
    functions, ``cp.cuda[.runtime]`` functions, and calls of methods that ``cupy.ndarray`` has."""
    methods = {k.split(".")[2] for k in SIGS if k.startswith("cupy.ndarray.")}
    prefixes = {"xp": "cupy", "cp": "cupy", "cupy": "cupy", "cspla": "cupyx.scipy.sparse.linalg",
                "csp": "cupyx.scipy.sparse"}
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        f = node.func
        chain = []
        v = f.value
        while isinstance(v, ast.Attribute):
            chain.insert(0, v.attr)
            v = v.value
        name = None
        if isinstance(v, ast.Name) and v.id in prefixes:
            name = ".".join([prefixes[v.id], *chain, f.attr])
            if not chain and isinstance(getattr(np, f.attr, None), type):
                continue  # dtypes (xp.int8(...))
            if name not in SIGS:
                out.append(f"{filename}:{node.lineno}: {name} is not a recorded CuPy 14 function")
                continue
        elif isinstance(v, ast.Name) and v.id in ("np", "sp", "spla", "os", "re", "log", "ctypes", "json"):
            continue
        elif f.attr in methods:
            name = f"cupy.ndarray.{f.attr}"
        if name is None:
            continue
        params = {p[0] for p in SIGS[name]["params"]}
        varkw = any(p[1] == "VAR_KEYWORD" for p in SIGS[name]["params"])
        for kw in node.keywords:
            if kw.arg is not None and kw.arg not in params and not varkw:
                out.append(f"{filename}:{node.lineno}: {name}(..., {kw.arg}=) is not a CuPy 14 argument")
    return out


def test_the_scan_finds_the_kind():
    assert _violations("xp.abs(F).max(axis=1, initial=0.0)")
    assert _violations("cp.take(a, i, mode='clip')")
    assert _violations("xp.no_such_function(a)")
    assert not _violations("xp.abs(F).max(axis=1)")


@pytest.mark.parametrize("path", GPU_PATH, ids=lambda p: p.name)
def test_gpu_path_uses_only_cupy_arguments(path):
    assert _violations(path.read_text(), path.name) == []


def test_recorded_signatures_are_the_installed_cupys():
    """Where a real CuPy imports (no GPU needed), its signatures are the recorded ones (run on the device)."""
    if "cupy" in sys.modules and getattr(sys.modules["cupy"], "STANDIN", False):
        pytest.skip("the stand-in is in place")
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed here (the device script runs this test)")
    import cupy

    rec = Path(cupy_standin.__file__).parent / "record_signatures.py"
    spec = importlib.util.spec_from_file_location("record_signatures", rec)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    live = {}
    for name in SIGS:
        obj, parts = cupy, name.split(".")[1:]
        if name.startswith("cupyx") or name in mod.MANUAL:
            continue
        try:
            for p in parts:
                obj = getattr(obj, p)
        except AttributeError:
            continue
        mod.record(name, obj, live)
    assert cupy.__version__.split(".")[0] == "14"
    diff = {k: (SIGS[k]["params"], live[k]["params"]) for k in live if live[k]["params"] != SIGS[k]["params"]}
    assert not diff, diff


# ---------------------------------------------------------------------------------------------- arrays


@pytest.mark.gpu
def test_no_implicit_transfers(cp):
    a = cp.asarray(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    for bad in (lambda: a + np.ones(4), lambda: np.ones(4) * a, lambda: cp.where(a > 1, np.ones(4), a),
                lambda: cp.concatenate([a, np.ones(2)]), lambda: cp.exp(np.ones(2))):
        with pytest.raises(TypeError, match="Unsupported type"):
            bad()
    # where CuPy converts host data: creation, indices, assigned values
    a[np.array([0, 1])] = np.array([9.0, 8.0])
    assert a[np.array([1])].get().tolist() == [8.0]
    assert isinstance(a.get(), np.ndarray) and isinstance(cp.asnumpy(a), np.ndarray)


@pytest.mark.gpu
def test_results_are_device_arrays(cp):
    a = cp.asarray(np.arange(4.0))
    s = a.sum()
    assert isinstance(s, cp.ndarray) and s.ndim == 0 and float(s) == 6.0
    assert isinstance(a[2], cp.ndarray) and a[2].ndim == 0
    with pytest.raises(TypeError):
        range(cp.asarray(3))  # CuPy arrays have no __index__
    assert int(cp.flatnonzero(a > 1).size) == 2


# ---------------------------------------------------------------------------------------------- kernels

KERNEL = r'''
typedef long long i64;
extern "C" __global__ void gridflow_axpy(const double* __restrict__ x, double* __restrict__ y, const double a,
                                         const i64 n, const int flag)
{
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < n; g += (i64)gridDim.x * blockDim.x)
        y[g] += flag ? a * x[g] : 0.0;
}
'''


@pytest.mark.gpu
def test_kernel_launches_are_checked(cp):
    k = cp.RawModule(code=KERNEL).get_function("gridflow_axpy")
    x, y = cp.asarray(np.arange(6.0)), cp.zeros(6)
    good = (x, y, 2.0, np.int64(6), np.int32(1))
    bad = [
        ((x, y, 2.0, np.int64(6)), TypeError, "takes 5 arguments"),
        ((x.astype(cp.float32), y, 2.0, np.int64(6), np.int32(1)), TypeError, "float32 array"),
        ((x[::2], y, 2.0, np.int64(3), np.int32(1)), ValueError, "not C-contiguous"),
        ((np.arange(6.0), y, 2.0, np.int64(6), np.int32(1)), TypeError, "numpy.ndarray"),
        ((x, y, 2.0, np.int32(6), np.int32(1)), TypeError, "pass numpy.int64"),
        ((x, y, 2.0, np.int64(6), 1), TypeError, "pass numpy.int32"),  # a Python int is 8 bytes to CuPy
    ]
    for args, err, msg in bad:
        with pytest.raises(err, match=msg):
            k((1,), (32,), args)
    with pytest.raises(TypeError, match="tuple"):
        k([1], (32,), good)
    with pytest.raises(RuntimeError, match="not found"):
        cp.RawModule(code=KERNEL).get_function("gridflow_nothing")
    from cupy._raw import kernel_mode

    if kernel_mode() == "host":
        k((1,), (32,), good)
        assert y.get().tolist() == (2.0 * np.arange(6.0)).tolist()
    else:
        with pytest.raises(NotImplementedError, match="twin"):
            k((1,), (32,), good)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_kernel_sources_agree_with_their_numpy_twins(cp, matpower_dir, monkeypatch):
    """kernels/*.cu run as host C++ and the NumPy twins (what runs without a compiler) give the same numbers."""
    import gridflow
    from gridflow.backends.gpu import GPUBackend
    from gridflow.model import PowerFlowModel

    m = PowerFlowModel(gridflow.load_case(str(matpower_dir / "case118.m")))
    T = 4
    roles = m.roles(T, branch_out=[[0], [], [5, 5], [7, 100]], slack_ref=int(m.net.ref[0]))
    pattern, free = m._formulation(roles, True)
    rng = np.random.default_rng(3)
    free = rng.uniform(size=(T, pattern.n)) > 0.2
    spec = m.spec(T, [0, 2, 2, 3, 3], [0, 5, 5, 7, 100], free, m.branch_terms)
    nb = m.case.nb
    V = (1 + 0.05 * rng.uniform(-1, 1, (2, nb))) * np.exp(1j * 0.3 * rng.uniform(-1, 1, (2, nb)))
    w = rng.uniform(size=(2, nb))
    got = {}
    for mode in ("host", "twin"):
        monkeypatch.setenv("GRIDFLOW_STANDIN_KERNELS", mode)
        ops = GPUBackend().batch_ops(m, pattern, spec)
        idx = cp.asarray([2, 3])
        Ib = ops.ibus(idx, cp.asarray(V))
        got[mode] = (cp.asnumpy(Ib), cp.asnumpy(ops.jacobian(idx, cp.asarray(V), Ib, cp.asarray(w))))
    for h, t in zip(got["host"], got["twin"], strict=True):
        np.testing.assert_allclose(h, t, rtol=1e-12, atol=1e-12 * np.abs(t).max())


# ---------------------------------------------------------------------------------------------- sparse


@pytest.mark.gpu
def test_spsolve_triangular_follows_spsm(cp):
    import cupyx.scipy.sparse as csp
    import cupyx.scipy.sparse.linalg as cspla
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    rng = np.random.default_rng(2)
    Lh = sp.tril(sp.random(30, 30, density=0.2, random_state=1) + 5 * sp.eye(30), format="csr")
    L = csp.csr_matrix((cp.asarray(Lh.data), cp.asarray(Lh.indices), cp.asarray(Lh.indptr)), shape=Lh.shape)
    B = rng.normal(size=(30, 4))
    X = cspla.spsolve_triangular(L, cp.asarray(B), lower=True)
    assert X.shape == (30, 4) and X.flags.f_contiguous
    np.testing.assert_allclose(X.get(), spla.spsolve_triangular(Lh, B), rtol=1e-12)
    with pytest.raises(TypeError, match="dtype mismatch"):
        cspla.spsolve_triangular(L, cp.asarray(B.astype(np.float32)))
    with pytest.raises(ValueError, match="contiguous"):
        cspla.spsolve_triangular(L, cp.asarray(np.ones((30, 8)))[:, ::2])
    with pytest.raises(TypeError):
        cspla.spsolve_triangular(Lh, cp.asarray(B))
    with pytest.raises(TypeError):
        cspla.spsolve_triangular(L, B)


@pytest.mark.gpu
def test_csr_matrix_holds_its_arrays(cp):
    import cupyx.scipy.sparse as csp

    data = cp.asarray(np.ones(3))
    A = csp.csr_matrix((data, cp.asarray(np.arange(3, dtype=np.int32)), cp.asarray(np.arange(4, dtype=np.int32))),
                       shape=(3, 3))
    assert A.data.data.ptr == data.data.ptr
    data[1] = 5.0  # written in place, seen by the matrix (as cuDSS refactorizations rely on)
    assert (A @ cp.asarray(np.ones(3))).get().tolist() == [1.0, 5.0, 1.0]
    with pytest.raises(TypeError):
        csp.csr_matrix((np.ones(3), np.arange(3), np.arange(4)), shape=(3, 3))
