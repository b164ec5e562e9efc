"""One AC power flow on one case: gridflow vs pandapower runpp vs lightsim2grid (CPU).

Every solver starts from gridflow's first start (the case's stored voltages, generator setpoints
at PV buses; for the pandapower net these are pandapower's own flat start) and solves the same
equations (see conftest.py). Peers run at 1e-8 on the per-unit mismatch; gridflow at the same
accuracy (tol_mva = 1e-8 * baseMVA, label "peer") and at its default 1e-8 MVA ("default").

What is timed (``benchmark.extra_info["timed"]`` says it per row):

* gridflow ``solve``: repeat calls (the topology's PowerFlowModel cached: Ybus, Jacobian pattern, KLU
  symbolic analysis, this thread's numeric factorization); ``solve_first``: the model cache emptied
  before every call; ``engine``: ``PowerFlowModel.run`` alone (the Newton engine from the start, T = 1),
  everything cached; ``load_case``: reading the case.
* pandapower ``runpp``: every call (pandapower rebuilds its internal case each time).
* lightsim2grid ``NRSing_KLU.solve``: repeat calls on one solver object (symbolic analysis
  kept) and first calls (a new solver each time); ``LSGrid.ac_pf``: repeat calls.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from conftest import (
    MAX_ITER,
    PEER_TOL_PU,
    SINGLE_CASES,
    get_bundle,
    gf_tol_mva,
    gsolve,
    median_ms,
    rounds,
)

import gridflow
from gridflow.jacobian import jacobian_pattern, jacobian_values
from gridflow.linalg import make_solver
from gridflow.network import make_network, make_sbus
from gridflow.newton import mismatch
from gridflow.results import make_result

#: max |dVm| (pu) allowed between a peer's answer and gridflow's when both solve the same model
AGREE_PU = 1e-6


def _info(benchmark, bundle, tool, variant, timed, **kw):
    benchmark.group = bundle.name
    benchmark.extra_info.update(case=bundle.name, nb=int(bundle.case.nb), tool=tool, variant=variant, timed=timed,
                                **kw)


# ---------------------------------------------------------------- gridflow

@pytest.mark.parametrize("name", SINGLE_CASES)
def test_gridflow_load_case(benchmark, name):
    bundle = get_bundle(name)
    case = benchmark.pedantic(gridflow.load_case, args=(name,), rounds=1 if name == "case9241pegase" else 2,
                              iterations=1)
    _info(benchmark, bundle, "gridflow", "load_case", "gridflow.load_case(name): read and convert the case")
    assert case.nb == bundle.case.nb


@pytest.mark.parametrize("tol", ["peer", "default"])
@pytest.mark.parametrize("name", SINGLE_CASES)
def test_gridflow_solve(benchmark, name, tol):
    bundle = get_bundle(name)
    case = bundle.case
    tol_mva = gf_tol_mva(case, tol)
    gridflow.solve(case, tol_mva=tol_mva)  # topology cache filled
    res = benchmark.pedantic(gridflow.solve, args=(case,), kwargs={"tol_mva": tol_mva}, rounds=rounds(name),
                             iterations=1, warmup_rounds=1)
    _info(benchmark, bundle, "gridflow", "solve", "repeat calls (topology cache warm)", tol_mva=tol_mva,
          tol_label=tol, converged=bool(res.converged), iterations=int(res.iterations), start=res.init,
          dvm_pu=float(np.max(np.abs(np.abs(res.V) - np.abs(bundle.ref_V)))))
    assert res.converged


@pytest.mark.parametrize("name", SINGLE_CASES)
def test_gridflow_solve_first(benchmark, name):
    bundle = get_bundle(name)
    case = bundle.case
    tol_mva = gf_tol_mva(case, "peer")
    res = benchmark.pedantic(gridflow.solve, args=(case,), kwargs={"tol_mva": tol_mva},
                             setup=gsolve._models.clear, rounds=min(3, rounds(name, "slow")), iterations=1)
    _info(benchmark, bundle, "gridflow", "solve_first", "first call (topology cache emptied before each call)",
          tol_mva=tol_mva, tol_label="peer", converged=bool(res.converged), iterations=int(res.iterations),
          start=res.init)
    assert res.converged


@pytest.mark.parametrize("name", SINGLE_CASES)
def test_gridflow_newton_and_stages(benchmark, name):
    """The Newton engine alone (benchmarked), and every stage of ``solve`` timed on its own (extra_info)."""
    from gridflow.linalg import analyze
    from gridflow.model import PowerFlowModel, topology_key
    from gridflow.start import initial_voltage

    bundle = get_bundle(name)
    case = bundle.case
    tol = PEER_TOL_PU
    model = gsolve.model_for(case)
    net = model.net
    roles = model.roles(1)
    pattern = model.pattern(np.r_[net.pv, net.pq], net.pq)
    loads = dict(pd=case.bus.pd[None], qd=case.bus.qd[None], pg=case.gen.pg[None], qg=case.gen.qg[None])
    V0 = bundle.V0
    n = 3 if case.nb > 30000 else 5

    def run():
        return model.run(V0[None], **loads, roles=roles, tol=tol, max_iter=MAX_ITER)

    r = benchmark.pedantic(run, rounds=rounds(name), iterations=1, warmup_rounds=1)
    V = r.V[0]
    # stages, ms (medians of n calls)
    st = {}
    st["first: make_network (Ybus, bus types, islands)"] = median_ms(lambda: make_network(case), n)
    st["first: jacobian_pattern"] = median_ms(lambda: jacobian_pattern(net.Ybus, net.pv, net.pq), n)
    st["first: KLU analyze"] = median_ms(lambda: analyze("auto", pattern), n)
    st["first: PowerFlowModel (all of the above that a model builds at once)"] = median_ms(
        lambda: PowerFlowModel(case), n)
    Sbus = make_sbus(case, net)
    mis, Ibus = mismatch(net.Ybus, V, Sbus)
    data = jacobian_values(V, Ibus, net.Ybus.data, model.Yrow, net.Ybus.indices, pattern, diag=model.Ydiag)
    solvers = [make_solver("auto", pattern) for _ in range(n)]
    it = iter(solvers)
    st["first: KLU factor (pivoting)"] = median_ms(lambda: next(it).factorize(data), n)
    st["call: check_case"] = median_ms(lambda: gsolve.check_case(case), n)
    st["call: topology_key (model cache lookup)"] = median_ms(lambda: topology_key(case), n)
    st["call: model.roles"] = median_ms(lambda: model.roles(1), n)
    st["call: initial_voltage"] = median_ms(lambda: initial_voltage(case, net, "case", Sbus), n)
    st["call: engine (model.run)"] = median_ms(run, n)
    st["call: make_result (tables, branch flows)"] = median_ms(
        lambda: make_result(case, net, V, converged=True, iterations=1, max_mismatch_pu=0.0,
                            worst_bus=0, init="case", backend="cpu", gen_p=r.pg[0], gen_q=r.qg[0]), n)
    lin = model.local_solver(pattern)
    pvpq = np.r_[net.pv, net.pq]
    F = np.r_[mis[pvpq].real, mis[net.pq].imag]
    lin.factorize(data)
    st["iter: jacobian_values"] = median_ms(
        lambda: jacobian_values(V, Ibus, net.Ybus.data, model.Yrow, net.Ybus.indices, pattern, diag=model.Ydiag), n)
    st["iter: KLU refactor (+rcond)"] = median_ms(lambda: lin.factorize(data), n)
    st["iter: KLU solve"] = median_ms(lambda: lin.solve(F), n)
    st["iter: mismatch (Ybus @ V)"] = median_ms(lambda: mismatch(net.Ybus, V, Sbus), n)
    _info(benchmark, bundle, "gridflow", "engine", "PowerFlowModel.run only (pattern, KLU analysis cached)",
          tol_mva=tol * case.base_mva, tol_label="peer", converged=bool(r.converged[0]),
          iterations=int(r.iterations[0] + r.chord_steps[0]), newton_steps=int(r.iterations[0]),
          chord_steps=int(r.chord_steps[0]), start="case", stages_ms={k: round(v, 3) for k, v in st.items()},
          jacobian_n=int(pattern.n), jacobian_nnz=int(pattern.nnz),
          dvm_pu=float(np.max(np.abs(np.abs(V) - np.abs(bundle.ref_V)))))
    assert r.converged[0]


# ---------------------------------------------------------------- pandapower

def _runpp(net, **kw):
    import pandapower as pp

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, **kw)
        return True
    except pp.LoadflowNotConverged:
        return False


PP_VARIANTS = {
    # plain pandapower Newton (numba Jacobian), gridflow's start
    "runpp": dict(lightsim2grid=False, start=True),
    # runpp's own default start (init="auto": DC angles here), plain Newton
    "runpp_default_init": dict(lightsim2grid=False, start=False),
    # runpp as installed: lightsim2grid="auto" routes the Newton loop to lightsim2grid's C++ solver
    "runpp_ls2g_auto": dict(lightsim2grid="auto", start=True),
}


@pytest.mark.parametrize("variant", list(PP_VARIANTS))
@pytest.mark.parametrize("name", SINGLE_CASES)
def test_pandapower_runpp(benchmark, name, variant):
    bundle = get_bundle(name)
    net = bundle.net
    opts = PP_VARIANTS[variant]
    kw = dict(algorithm="nr", tolerance_mva=PEER_TOL_PU, numba=True, lightsim2grid=opts["lightsim2grid"])
    if opts["start"]:
        kw.update(bundle.pp_init)
    n_rounds = rounds(name, "slow")
    if variant == "runpp_default_init":
        n_rounds = 1  # informative: iterations and convergence from pandapower's own start
    ok = benchmark.pedantic(_runpp, args=(net,), kwargs=kw, rounds=n_rounds, iterations=1)
    its = net._ppc.get("iterations") if getattr(net, "_ppc", None) else None
    used_ls = bool(net._options.get("lightsim2grid")) if "_options" in net else None
    _info(benchmark, bundle, "pandapower", variant, "runpp, every call", tol_pu=PEER_TOL_PU, converged=bool(ok),
          iterations=None if its is None else int(its), start="gridflow's" if opts["start"] else "runpp default",
          lightsim2grid_used=used_ls, dvm_pu=bundle.dvm_net(net.res_bus.vm_pu.values) if ok else None)
    if opts["start"]:
        assert ok, f"pandapower did not converge on {name} from gridflow's start"
        assert bundle.dvm_net(net.res_bus.vm_pu.values) < AGREE_PU


# ---------------------------------------------------------------- lightsim2grid

@pytest.mark.parametrize("call", ["repeat", "first"])
@pytest.mark.parametrize("name", SINGLE_CASES)
def test_lightsim2grid_newton(benchmark, name, call):
    """lightsim2grid's KLU Newton (NRSing_KLU) on gridflow's Ybus, Sbus and start."""
    from lightsim2grid.algorithm import NRSing_KLU

    bundle = get_bundle(name)
    Y, Sbus, V0, ref, w, pv, pq = bundle.ls_inputs
    if len(ref) != 1:
        pytest.skip("NRSing_KLU has one slack bus; this case has several")
    holder = {"s": NRSing_KLU()}
    holder["s"].solve(Y, V0.copy(), Sbus, ref, w, pv, pq, MAX_ITER, PEER_TOL_PU)

    def fresh():
        holder["s"] = NRSing_KLU()

    def run():
        return holder["s"].solve(Y, V0.copy(), Sbus, ref, w, pv, pq, MAX_ITER, PEER_TOL_PU)

    ok = benchmark.pedantic(run, setup=fresh if call == "first" else None, rounds=rounds(name), iterations=1)
    s = holder["s"]
    stats = s.get_linear_solver_stats()
    _info(benchmark, bundle, "lightsim2grid", f"NRSing_KLU_{call}",
          "NRSing_KLU.solve on gridflow's Ybus/Sbus/V0, " + ("new solver object each call" if call == "first"
                                                              else "repeat calls on one solver object"),
          tol_pu=PEER_TOL_PU, converged=bool(ok), iterations=int(s.get_nb_iter()), start="gridflow's",
          linear_solver_stats=str(stats), dvm_pu=bundle.dvm_ls(s.get_V()))
    assert ok and bundle.dvm_ls(s.get_V()) < AGREE_PU


@pytest.mark.parametrize("name", SINGLE_CASES)
def test_lightsim2grid_lsgrid(benchmark, name):
    """lightsim2grid's own network model: LSGrid.ac_pf from gridflow's start (conversion not timed)."""
    bundle = get_bundle(name)
    t = time.perf_counter()
    grid = bundle.ls_grid_factory()
    init_s = time.perf_counter() - t
    V0 = bundle.V0[bundle.ls_pos].astype(complex)
    t = time.perf_counter()
    grid.ac_pf(V0, MAX_ITER, PEER_TOL_PU)
    first_s = time.perf_counter() - t
    V = benchmark.pedantic(grid.ac_pf, args=(V0, MAX_ITER, PEER_TOL_PU), rounds=rounds(name), iterations=1)
    solver = grid.get_solver()
    ok = bool(solver.converged()) and len(V) > 0
    _info(benchmark, bundle, "lightsim2grid", "LSGrid.ac_pf", "LSGrid.ac_pf repeat calls (model built once)",
          tol_pu=PEER_TOL_PU, converged=ok, iterations=int(solver.get_nb_iter()), start="gridflow's",
          algorithm=str(grid.get_algo_type()), lsgrid_init_s=init_s, first_ac_pf_s=first_s,
          dvm_pu=bundle.dvm_ls(V) if ok else None)
    assert ok and bundle.dvm_ls(V) < AGREE_PU


# ---------------------------------------------------------------- one core busy elsewhere

_CHILD = """
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import gridflow
case = gridflow.load_case(sys.argv[1])
tol = float(sys.argv[2])
res = gridflow.solve(case, tol_mva=tol)
ts = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    gridflow.solve(case, tol_mva=tol)
    ts.append(time.perf_counter() - t)
print(json.dumps({"median_ms": 1e3 * statistics.median(ts), "iterations": res.iterations}))
"""


@pytest.mark.parametrize("name", [c for c in SINGLE_CASES if c == "case_ACTIVSg25k"])
def test_gridflow_busy_neighbour(benchmark, name):
    """gridflow and lightsim2grid while another process keeps one core busy (a shared machine).

    Benchmarked: gridflow ``solve`` in this process (OpenBLAS with its default thread count).
    extra_info: the same solve in a child process with ``OPENBLAS_NUM_THREADS=1`` and lightsim2grid's
    ``NRSing_KLU`` in this process, both beside the same busy process.
    """
    import json
    import os
    import subprocess
    import sys

    from lightsim2grid.algorithm import NRSing_KLU

    bundle = get_bundle(name)
    case = bundle.case
    tol_mva = gf_tol_mva(case, "peer")
    n = rounds(name)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        gridflow.solve(case, tol_mva=tol_mva)
        res = benchmark.pedantic(gridflow.solve, args=(case,), kwargs={"tol_mva": tol_mva}, rounds=n, iterations=1)
        Y, Sbus, V0, ref, w, pv, pq = bundle.ls_inputs
        s = NRSing_KLU()
        ls_ms = median_ms(lambda: s.solve(Y, V0.copy(), Sbus, ref, w, pv, pq, MAX_ITER, PEER_TOL_PU), n)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        child = subprocess.run([sys.executable, "-c", _CHILD, name, repr(tol_mva), str(n)], env=env,
                               capture_output=True, text=True, timeout=300, check=True)
        one = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        burner.terminate()
        burner.wait()
    _info(benchmark, bundle, "gridflow", "solve_busy_neighbour",
          "repeat calls while another process spins on one core", tol_mva=tol_mva, tol_label="peer",
          converged=bool(res.converged), iterations=int(res.iterations), start=res.init,
          openblas1_median_ms=one["median_ms"], ls2g_nrsing_median_ms=ls_ms)
    assert res.converged
