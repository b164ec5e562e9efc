"""Many power flows of one network (CPU): T load scenarios, every scenario started from the base solution.

Scenarios: every load of the case times its own factor, uniform in [0.98, 1.02] (seeded; the
same numbers in every tool). gridflow gets them as per-bus MW/MVAr (``solve_batch(case, p_mw,
q_mvar)``, the case's other injections unchanged), lightsim2grid and pandapower per load
element.

* gridflow ``solve_batch(backend="cpu", threads=2)``: every call solves the base case first
  (topology cache warm), then the batch from that solution (shared chord Jacobian, then Newton).
* lightsim2grid ``InjectionSweepCPP`` (``nb_thread=2``), ``compute(V_base, max_iter, 1e-8)``:
  "repeat" = calls on one sweep object, which keeps its base case (its "n" power flow and
  analysed Jacobian) between calls; "fresh" = a new sweep object every call.
* pandapower: ``runpp(init="results")`` per scenario (plain Newton, numba), ``res_bus`` reset to
  the base solution before each one (so each starts from the base solution, as in the others).

Each tool's voltages are compared with gridflow's (max |dVm| over all scenarios and buses).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from conftest import BATCH_CASES, MAX_ITER, PEER_TOL_PU, QUICK, get_bundle, gf_tol_mva, median_ms

import gridflow
from gridflow.batch import solve_batch

TS = (10, 100)
SPREAD = 0.02
THREADS = 2
AGREE_PU = 1e-6
#: pandapower's loop is ~0.1-1 s a scenario; T=100 on cases above this many buses is left out
PP_T100_MAX_NB = 10_000

_scen: dict = {}
_gf_vm: dict = {}


class Scenarios:
    def __init__(self, bundle, T):
        net, case = bundle.net, bundle.case
        self.T = T
        rng = np.random.default_rng(1000 + T)
        load = net.load
        if not load.bus.is_unique:
            raise RuntimeError(f"{bundle.name}: several loads at one bus (the factors are per bus)")
        self.f = 1.0 + SPREAD * rng.uniform(-1.0, 1.0, size=(T, len(load)))
        self.p0, self.q0 = load.p_mw.to_numpy().copy(), load.q_mvar.to_numpy().copy()
        self.P, self.Q = self.p0 * self.f, self.q0 * self.f  # pandapower loads, MW / MVAr
        pos = bundle.net_pos[net.bus.index.get_indexer(load.bus.to_numpy())]
        base = case.base_mva
        self.p_mw = np.repeat(case.bus.pd[None, :] * base, T, axis=0)
        self.q_mvar = np.repeat(case.bus.qd[None, :] * base, T, axis=0)
        self.p_mw[:, pos] += self.P - self.p0
        self.q_mvar[:, pos] += self.Q - self.q0
        # per-bus factors (case order), for lightsim2grid's own load list
        self.fb = np.ones((T, case.nb))
        self.fb[:, pos] = self.f


def scenarios(name, T) -> Scenarios:
    if (name, T) not in _scen:
        _scen[(name, T)] = Scenarios(get_bundle(name), T)
    return _scen[(name, T)]


def _rounds(name, T, tool):
    if QUICK:
        return 1
    big = get_bundle(name).case.nb > 20000
    if tool == "pandapower":
        return 1
    return {(False, 10): 5, (False, 100): 3, (True, 10): 3, (True, 100): 2}[(big, T)]


def _info(benchmark, name, T, tool, variant, **kw):
    benchmark.group = f"batch {name} T={T}"
    benchmark.extra_info.update(case=name, nb=int(get_bundle(name).case.nb), T=T, tool=tool, variant=variant, **kw)


def _gridflow_vm(name, T):
    if (name, T) not in _gf_vm:
        sc = scenarios(name, T)
        r = solve_batch(get_bundle(name).case, sc.p_mw, sc.q_mvar, backend="cpu",
                        tol_mva=gf_tol_mva(get_bundle(name).case, "peer"), threads=THREADS)
        _gf_vm[(name, T)] = r.vm_pu
    return _gf_vm[(name, T)]


@pytest.mark.parametrize("tol", ["peer", "default"])
@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_gridflow(benchmark, name, T, tol):
    bundle = get_bundle(name)
    case = bundle.case
    sc = scenarios(name, T)
    tol_mva = gf_tol_mva(case, tol)
    gridflow.solve(case, tol_mva=tol_mva)  # topology cache warm
    base_ms = median_ms(lambda: gridflow.solve(case, tol_mva=tol_mva), 3)
    r = benchmark.pedantic(solve_batch, args=(case, sc.p_mw, sc.q_mvar),
                           kwargs=dict(backend="cpu", tol_mva=tol_mva, threads=THREADS),
                           rounds=_rounds(name, T, "gridflow"), iterations=1, warmup_rounds=0 if QUICK else 1)
    if tol == "peer":
        _gf_vm[(name, T)] = r.vm_pu
    _info(benchmark, name, T, "gridflow", "solve_batch", tol_mva=tol_mva, tol_label=tol, threads=THREADS,
          converged=int(r.converged.sum()), newton_iterations_mean=float(r.iterations.mean()),
          newton_iterations_max=int(r.iterations.max()), chord_steps_mean=float(r.chord_steps.mean()),
          chord_steps_max=int(r.chord_steps.max()), base_solve_ms=base_ms,
          timed="solve_batch call: base-case solve (cache warm) + T scenarios")
    assert r.converged.all()


@pytest.mark.parametrize("call", ["repeat", "fresh"])
@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_lightsim2grid(benchmark, name, T, call):
    from lightsim2grid.lightsim2grid_cpp import InjectionSweepCPP

    bundle = get_bundle(name)
    sc = scenarios(name, T)
    grid = bundle.ls_grid_factory()
    V0 = bundle.V0[bundle.ls_pos].astype(complex)
    Vbase = np.asarray(grid.ac_pf(V0, MAX_ITER, PEER_TOL_PU))
    if len(Vbase) == 0:
        pytest.fail("lightsim2grid's base case did not converge")
    loads = grid.get_loads()
    lpos = bundle.ls_pos[np.array([ld.bus_id for ld in loads])]
    lp = np.array([ld.target_p_mw for ld in loads])
    lq = np.array([ld.target_q_mvar for ld in loads])
    P = np.ascontiguousarray(lp * sc.fb[:, lpos])
    Q = np.ascontiguousarray(lq * sc.fb[:, lpos])
    holder = {}

    def make():
        sw = InjectionSweepCPP(grid)
        sw.nb_thread = THREADS
        holder["sw"] = sw

    def run():
        sw = holder["sw"]
        sw.modify_load_p(P)
        sw.modify_load_q(Q)
        sw.compute(Vbase, MAX_ITER, PEER_TOL_PU)
        return sw

    make()
    t = time.perf_counter()
    run()
    first_ms = 1e3 * (time.perf_counter() - t)
    sw = benchmark.pedantic(run, setup=make if call == "fresh" else None, rounds=_rounds(name, T, "lightsim2grid"),
                            iterations=1)
    its = np.asarray(sw.get_row_nb_iter()).ravel()
    V = np.asarray(sw.get_voltages())
    dvm = float(np.max(np.abs(np.abs(V) - _gridflow_vm(name, T)[:, bundle.ls_pos])))
    _info(benchmark, name, T, "lightsim2grid", f"InjectionSweepCPP_{call}", tol_pu=PEER_TOL_PU, threads=THREADS,
          converged=int(sw.nb_converged()), newton_iterations_mean=float(its.mean()),
          newton_iterations_max=int(its.max()), base_case_reused=bool(sw.base_case_was_reused()),
          first_call_ms=first_ms, dvm_vs_gridflow_pu=dvm,
          timed="modify_load_p/q + compute" + (" on a new sweep object" if call == "fresh" else ""))
    assert sw.nb_converged() == T and dvm < AGREE_PU


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_pandapower(benchmark, name, T):
    import pandapower as pp

    bundle = get_bundle(name)
    if T > 10 and bundle.case.nb > PP_T100_MAX_NB:
        pytest.skip(f"pandapower loop at T={T} on {bundle.case.nb} buses is over the time budget")
    sc = scenarios(name, T)
    net = bundle.net
    kw = dict(algorithm="nr", tolerance_mva=PEER_TOL_PU, numba=True, lightsim2grid=False)
    p_orig, q_orig = net.load.p_mw.copy(), net.load.q_mvar.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, **kw, **bundle.pp_init)
    base_vm = net.res_bus.vm_pu.to_numpy().copy()
    base_va = net.res_bus.va_degree.to_numpy().copy()
    out = {}

    def loop():
        vm = np.empty((T, len(net.bus)))
        its = np.empty(T, int)
        ok = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in range(T):
                net.load["p_mw"] = sc.P[s]
                net.load["q_mvar"] = sc.Q[s]
                net.res_bus["vm_pu"] = base_vm
                net.res_bus["va_degree"] = base_va
                try:
                    pp.runpp(net, init="results", **kw)
                    ok += 1
                except pp.LoadflowNotConverged:
                    pass
                vm[s] = net.res_bus.vm_pu.to_numpy()
                its[s] = net._ppc["iterations"]
        out.update(vm=vm, its=its, ok=ok)

    try:
        benchmark.pedantic(loop, rounds=_rounds(name, T, "pandapower"), iterations=1)
    finally:
        net.load["p_mw"], net.load["q_mvar"] = p_orig, q_orig
    dvm = float(np.nanmax(np.abs(out["vm"] - _gridflow_vm(name, T)[:, bundle.net_pos])))
    _info(benchmark, name, T, "pandapower", "runpp loop", tol_pu=PEER_TOL_PU, converged=int(out["ok"]),
          newton_iterations_mean=float(out["its"].mean()), newton_iterations_max=int(out["its"].max()),
          dvm_vs_gridflow_pu=dvm, timed="T x (set loads, reset res_bus to base, runpp(init='results'))")
    assert out["ok"] == T and dvm < AGREE_PU
