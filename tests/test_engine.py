"""The one Newton engine: thread safety, T = 1 vs batches, distributed slack vs pandapower,
outages vs PYPOWER runpf with the elements out of service, islands, generator limits.

Tolerances: voltages 1e-6 pu against a peer (both solve to 1e-10 pu or tighter), branch flows and
generator outputs 1e-3 MW; gridflow against itself 1e-9 pu.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import warnings

import numpy as np
import pytest

import gridflow
from gridflow import validate as gv
from gridflow.model import PowerFlowModel

TOL_VM = 1e-6
TOL_MW = 1e-3


@pytest.fixture(scope="module")
def case2000():
    return gridflow.load_case("case_ACTIVSg2000")


def _runpf(ppc):
    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        warnings.simplefilter("ignore")
        r, ok = runpf(ppc, ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-11, PF_MAX_IT=50))
    assert ok
    return r


def _vm_va(r, case):
    order = np.argsort(r["bus"][:, 0])
    pos = order[np.searchsorted(r["bus"][:, 0], case.bus.number, sorter=order)]
    return r["bus"][pos, 7], r["bus"][pos, 8]


# ------------------------------------------------------------------------------------------ threads


@pytest.mark.parametrize("solver, dist", [("klu", False), ("superlu", False), ("klu", True)])
def test_threads_get_the_single_threaded_answers(case2000, solver, dist):
    """Two threads solving the same network at once (x0.97 and x1.03 loads, 15 solves each).

    With one slack bus the x1.03 case has no solution (the slack generator alone cannot take
    +3 %; single-threaded gridflow and PYPOWER agree): the threads must then fail the same way.
    """
    c = case2000
    cases = [c.replace(bus={"pd": c.bus.pd * k, "qd": c.bus.qd * k}) for k in (0.97, 1.03)]
    ref = [gridflow.solve(x, solver=solver, distributed_slack=dist) for x in cases]
    assert ref[0].converged and ref[1].converged == dist
    got = {0: [], 1: []}
    errors = []

    def work(i):
        try:
            for _ in range(15):
                got[i].append(gridflow.solve(cases[i], solver=solver, distributed_slack=dist))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i in (0, 1):
        assert len(got[i]) == 15
        for r in got[i]:
            assert r.converged == ref[i].converged
            if r.converged:
                np.testing.assert_allclose(r.V, ref[i].V, atol=1e-10, rtol=0)


def test_one_model_shared_by_threads_batches_and_solves(case2000):
    model = PowerFlowModel(case2000)
    ref_single = model.solve()
    ref_batch = model.solve_batch(scale=[0.98, 1.02])
    out = []

    def work():
        out.append((model.solve(), model.solve_batch(scale=[0.98, 1.02])))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(out) == 3
    for single, batch in out:
        np.testing.assert_allclose(single.V, ref_single.V, atol=1e-10, rtol=0)
        np.testing.assert_allclose(batch.vm_pu, ref_batch.vm_pu, atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------------------ one engine


def test_batch_of_one_is_solve(case2000):
    c = case2000.replace(bus={"pd": case2000.bus.pd * 1.01})
    single = gridflow.solve(c)
    batch = gridflow.solve_batch(case2000, c.bus.pd[None] * c.base_mva, c.bus.qd[None] * c.base_mva)
    assert single.converged and batch.converged[0]
    np.testing.assert_allclose(batch.vm_pu[0], single.bus["vm_pu"].to_numpy(), atol=1e-9, rtol=0)


def test_newtonpf_matches_pypower_newtonpf():
    from pypower.ext2int import ext2int
    from pypower.makeSbus import makeSbus
    from pypower.makeYbus import makeYbus
    from pypower.newtonpf import newtonpf as pp_newtonpf
    from pypower.ppoption import ppoption

    from gridflow.newton import newtonpf

    c = gridflow.load_case("case118.m")
    ppc = ext2int(gv.to_ppc(c))
    Ybus, _, _ = makeYbus(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    Sbus = makeSbus(ppc["baseMVA"], ppc["bus"], ppc["gen"])
    bus = ppc["bus"]
    ref = np.flatnonzero(bus[:, 1] == 3)
    pv = np.flatnonzero(bus[:, 1] == 2)
    pq = np.flatnonzero(bus[:, 1] == 1)
    V0 = bus[:, 7] * np.exp(1j * np.deg2rad(bus[:, 8]))
    gbus = ppc["gen"][:, 0].astype(int)
    V0[gbus] = ppc["gen"][:, 5] / np.abs(V0[gbus]) * V0[gbus]
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        V_pp, ok, _ = pp_newtonpf(Ybus, Sbus, V0, ref, pv, pq, ppoption(PF_TOL=1e-11, VERBOSE=0))
    Y = Ybus.tocsr()
    Y.sort_indices()
    ours = newtonpf(Y, Sbus, V0, ref, pv, pq, tol=1e-11)
    assert ok and ours.converged
    np.testing.assert_allclose(ours.V, V_pp, atol=1e-9, rtol=0)


def test_max_iter_counts_every_step():
    c = gridflow.load_case("case9.m")
    r = gridflow.solve(c, init="flat", max_iter=2)
    assert not r.converged and r.iterations <= 2


# ------------------------------------------------------------------------------------------ distributed slack


def _net_with_weights(name):
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(pn, name)()
    rng = np.random.default_rng(7)
    net.gen["slack_weight"] = rng.uniform(0.5, 3.0, len(net.gen))
    net.ext_grid["slack_weight"] = 1.5
    return net


@pytest.mark.parametrize("name", ["case9", "case30", "case118", "case1354pegase"])
def test_distributed_slack_matches_pandapower(name):
    """case9's slack generator sits behind its step-up transformer (a bridge): the engine holds the angle at
    the transformer's other end (model.dist_ref) and gives the slack bus its angle back; same answers."""
    import pandapower as pp

    net = _net_with_weights(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, distributed_slack=True, lightsim2grid=False, numba=True, tolerance_mva=1e-11,
                 max_iteration=50, calculate_voltage_angles=True)
    case = gridflow.from_pandapower(net)
    res = gridflow.solve(case, distributed_slack=True, enforce_p_lims=False)  # pandapower holds no P limit
    assert res.converged
    lk = case.meta["pp_bus_lookup"][net.bus.index]
    np.testing.assert_allclose(res.bus["vm_pu"].to_numpy()[lk], net.res_bus.vm_pu.to_numpy(), atol=TOL_VM, rtol=0)
    np.testing.assert_allclose(res.bus["va_degree"].to_numpy()[lk], net.res_bus.va_degree.to_numpy(), atol=1e-4,
                               rtol=0)
    # every generator's P: the gens are the ppc's first rows after the ext_grid(s)
    gen = res.gen
    ext_p = gen["p_mw"].to_numpy()[: len(net.ext_grid)]
    np.testing.assert_allclose(ext_p, net.res_ext_grid.p_mw.to_numpy(), atol=TOL_MW, rtol=0)
    total_pp = net.res_gen.p_mw.sum() + net.res_ext_grid.p_mw.sum()  # sgens are negative loads in the ppc
    assert gen["p_mw"].sum() == pytest.approx(total_pp, abs=TOL_MW)


def test_distributed_slack_holds_p_limits():
    """A unit pushed past Pmax is held there; the others share its part by their factors.

    Checked against pandapower solving the same net with that unit fixed at Pmax and weight 0.
    """
    import pandapower as pp

    net = _net_with_weights("case30")
    net.load["p_mw"] *= 1.3
    net.gen["max_p_mw"] = net.gen["p_mw"] + 5.0
    case = gridflow.from_pandapower(net)
    res = gridflow.solve(case, distributed_slack=True)
    assert res.converged
    held = res.extra["p_limited"]
    assert len(held) > 0
    p = res.gen["p_mw"].to_numpy()
    pmax = case.gen.pmax * case.base_mva
    np.testing.assert_allclose(p[held], pmax[held], atol=1e-9)
    assert (p <= pmax + 1e-6).all()
    # referee: pandapower with the held units fixed at Pmax and out of the slack
    ref = copy.deepcopy(net)
    n_ext = len(net.ext_grid)
    for g in held:
        k = g - n_ext
        ref.gen.loc[ref.gen.index[k], ["p_mw", "slack_weight"]] = [pmax[g], 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(ref, distributed_slack=True, lightsim2grid=False, numba=True, tolerance_mva=1e-11,
                 max_iteration=50, calculate_voltage_angles=True)
    lk = case.meta["pp_bus_lookup"][net.bus.index]
    np.testing.assert_allclose(res.bus["vm_pu"].to_numpy()[lk], ref.res_bus.vm_pu.to_numpy(), atol=TOL_VM, rtol=0)
    np.testing.assert_allclose(p[n_ext:], ref.res_gen.p_mw.to_numpy(), atol=TOL_MW, rtol=0)


def test_distributed_slack_batch_equals_single_solves(case2000):
    c = case2000
    s = np.array([0.97, 1.0, 1.03])
    batch = gridflow.solve_batch(c, scale=s, distributed_slack=True, participation="headroom")
    assert batch.converged.all()
    for t, k in enumerate(s):
        single = gridflow.solve(c.replace(bus={"pd": c.bus.pd * k, "qd": c.bus.qd * k}), distributed_slack=True,
                                participation="headroom")
        np.testing.assert_allclose(batch.vm_pu[t], single.bus["vm_pu"].to_numpy(), atol=1e-9, rtol=0)
        np.testing.assert_allclose(batch.gen_p_mw[t], single.gen["p_mw"].to_numpy(), atol=1e-6, rtol=0)
        assert batch.slack_mw[t] == pytest.approx(single.extra["slack_mw"], abs=1e-6)


def test_participation_input_errors(case2000):
    with pytest.raises(gridflow.GridflowError, match="participation"):
        gridflow.solve(case2000, distributed_slack=True, participation="biggest")
    with pytest.raises(gridflow.GridflowError, match="one factor per generator"):
        gridflow.solve(case2000, distributed_slack=True, participation=[1.0, 2.0])
    with pytest.raises(gridflow.GridflowError, match="finite"):
        gridflow.solve(case2000, distributed_slack=True, participation=-np.ones(case2000.ng))


# ------------------------------------------------------------------------------------------ outages


def _ppc_with(case, branch_out=(), gen_out=(), bus_type=None):
    ppc = gv.to_ppc(case)
    ppc["branch"][list(branch_out), 10] = 0
    ppc["gen"][list(gen_out), 7] = 0
    for b, t in (bus_type or {}).items():
        ppc["bus"][b, 1] = t
    return ppc


def _sample_non_bridges(model, k, seed):
    rng = np.random.default_rng(seed)
    cand = np.flatnonzero(model.net.branch_on & ~model.bridges)
    return rng.choice(cand, k, replace=False)


@pytest.mark.parametrize("name, k", [("case_ACTIVSg2000", 12), pytest.param("case9241pegase.m", 4,
                                                                              marks=pytest.mark.slow)])
def test_branch_outages_match_pypower(name, k):
    case = gridflow.load_case(name)
    model = PowerFlowModel(case)
    rows = _sample_non_bridges(model, k, seed=3)
    res = model.solve_batch(branch_out=[[b] for b in rows], branch_results=True, tol_mva=1e-9)
    assert res.converged.all() and (res.dead_buses == 0).all()
    for t, b in enumerate(rows):
        r = _runpf(_ppc_with(case, branch_out=[b]))
        vm, va = _vm_va(r, case)
        np.testing.assert_allclose(res.vm_pu[t], vm, atol=TOL_VM, rtol=0)
        np.testing.assert_allclose(res.va_degree[t], va, atol=1e-4, rtol=0)
        np.testing.assert_allclose(res.p_from_mw[t], r["branch"][:, 13], atol=TOL_MW, rtol=0)
        assert res.p_from_mw[t, b] == 0.0 and res.loading_percent[t, b] == 0.0 or np.isnan(res.loading_percent[t, b])


def test_generator_outages_match_pypower(case2000):
    """A PV bus losing its only generator becomes PQ (as PYPOWER's bustypes makes it)."""
    model = PowerFlowModel(case2000)
    g = case2000.gen
    counts = np.bincount(g.bus[g.status], minlength=case2000.nb)
    pv = set(model.net.pv.tolist())
    single = [i for i in np.flatnonzero(g.status) if counts[g.bus[i]] == 1 and g.bus[i] in pv][:4]
    multi = [i for i in np.flatnonzero(g.status) if counts[g.bus[i]] > 1][:2]
    rows = single + multi
    res = model.solve_batch(gen_out=[[i] for i in rows])
    assert res.converged.all()
    for t, i in enumerate(rows):
        r = _runpf(_ppc_with(case2000, gen_out=[i]))
        vm, _ = _vm_va(r, case2000)
        np.testing.assert_allclose(res.vm_pu[t], vm, atol=TOL_VM, rtol=0)
        assert res.gen_p_mw[t, i] == 0.0


def test_island_without_generation_is_de_energized_and_reported(case2000):
    model = PowerFlowModel(case2000)
    c = case2000
    gen_bus = np.zeros(c.nb, bool)
    gen_bus[c.gen.bus[c.gen.status]] = True
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    found = None
    for b in np.flatnonzero(model.bridges):
        on = model.net.branch_on.copy()
        on[b] = False
        adj = sp.coo_matrix((np.ones(on.sum()), (c.branch.f[on], c.branch.t[on])), shape=(c.nb, c.nb))
        _, lab = connected_components(adj, directed=False)
        side = lab == lab[c.branch.t[b]]
        if side.sum() > c.nb / 2:
            side = lab == lab[c.branch.f[b]]
        if not gen_bus[side].any():
            found = (b, np.flatnonzero(side))
            break
    assert found is not None
    b, dead = found
    res = model.solve_batch(branch_out=[[b]])
    assert res.converged[0]
    assert res.dead_buses[0] == len(dead)
    assert np.isnan(res.vm_pu[0, dead]).all()
    r = _runpf(_ppc_with(c, branch_out=[b], bus_type={int(i): 4 for i in dead}))
    vm, _ = _vm_va(r, c)
    live = np.setdiff1d(np.arange(c.nb), dead)
    np.testing.assert_allclose(res.vm_pu[0, live], vm[live], atol=TOL_VM, rtol=0)


def test_slack_generator_outage_gets_a_new_slack(case2000):
    """Single slack: the island whose slack generator is out takes the bus with the most Pmax."""
    model = PowerFlowModel(case2000)
    c = case2000
    ref = int(model.net.ref[0])
    at_ref = np.flatnonzero(c.gen.status & (c.gen.bus == ref))
    roles = model.roles(1, gen_out=[at_ref])
    new = roles.new_slack[0]
    assert len(new) == 1
    res = model.solve_batch(gen_out=[at_ref])
    assert res.converged[0]
    r = _runpf(_ppc_with(c, gen_out=at_ref, bus_type={ref: 1, new[0]: 3}))
    vm, _ = _vm_va(r, c)
    np.testing.assert_allclose(res.vm_pu[0], vm, atol=TOL_VM, rtol=0)


def test_lone_generator_outages_with_distributed_slack_and_q_limits(case2000):
    """Every outage that cuts a generator off alone (its step-up transformer, 355 in ACTIVSg2000, one of them
    the case's slack generator's) solves with a distributed slack and Q limits: the lone generator is its
    island's slack (its voltage held, never at a Q limit, nothing to serve) and the rest of the grid shares
    the lost MW. Before the fix 196 of them ended with a singular Jacobian (the lone generator held at a Q
    limit) and the slack generator's with no reference for the rest."""
    c = case2000
    model = PowerFlowModel(c)
    br = c.branch
    deg = np.bincount(np.r_[br.f[br.status], br.t[br.status]], minlength=c.nb)
    lone = {}
    for k in np.flatnonzero(model.bridges):
        for end in (br.f[k], br.t[k]):
            if deg[end] == 1 and (c.gen.bus[c.gen.status] == end).any() and c.bus.pd[end] == 0:
                lone[int(k)] = int(end)
    ref = int(model.net.ref[0])
    assert len(lone) == 355 and ref in lone.values() and model.dist_ref != ref
    ks = sorted(lone)
    res = model.solve_batch(branch_out=[(k,) for k in ks], distributed_slack=True, enforce_q_lims=True,
                            q_release=True, branch_results=True)
    assert res.converged.all()
    vset = np.zeros(c.nb)
    vset[c.gen.bus[c.gen.status]] = c.gen.vg[c.gen.status]
    base = c.base_mva
    for j, k in enumerate(ks):
        b = lone[k]
        assert res.vm_pu[j, b] == pytest.approx(vset[b], abs=1e-9)
        at = c.gen.status & (c.gen.bus == b)
        assert abs(res.gen_p_mw[j, at].sum()) < 1e-6  # nothing to serve alone
        # the rest of the grid makes up what it gave: generation = load + branch and shunt losses, to 1e-3 MW
        on = br.status.copy()
        on[k] = False
        losses = (res.p_from_mw[j, on] + res.p_to_mw[j, on]).sum() + (c.bus.gs * res.vm_pu[j] ** 2).sum() * base
        assert res.gen_p_mw[j].sum() == pytest.approx(c.bus.pd.sum() * base + losses, abs=1e-3)


def test_q_limits_after_outages_next_to_generators_equal_single_solves(case2000):
    """Q limits judged on each scenario's own network: an outaged branch's current no longer reaches the
    generator bus at its end (before the fix the base Ybus was used: Q off by up to 103 MVAr and |V| by 0.34 pu
    after such outages). Each outage = the case with that branch out of service, solved alone."""
    c = case2000
    model = PowerFlowModel(c)
    br = c.branch
    gb = np.zeros(c.nb, bool)
    gb[c.gen.bus[c.gen.status]] = True
    ks = np.flatnonzero(br.status & ~model.bridges & (gb[br.f] | gb[br.t]))[:25]
    res = model.solve_batch(branch_out=[(k,) for k in ks], enforce_q_lims=True)
    assert res.converged.all()
    for j, k in enumerate(ks):
        st = br.status.copy()
        st[k] = False
        one = gridflow.solve(c.replace(branch={"status": st}), enforce_q_lims=True)
        np.testing.assert_allclose(res.vm_pu[j], one.bus["vm_pu"].to_numpy(), atol=1e-8, rtol=0)
        np.testing.assert_allclose(res.gen_q_mvar[j], one.gen["q_mvar"].to_numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(res.gen_p_mw[j], one.gen["p_mw"].to_numpy(), atol=1e-5, rtol=0)


def test_q_limits_in_a_batch_equal_single_solves(case2000):
    s = np.array([1.0, 0.98])
    batch = gridflow.solve_batch(case2000, scale=s, enforce_q_lims=True)
    assert batch.converged.all()
    g = case2000.gen
    not_slack = g.status & ~np.isin(g.bus, PowerFlowModel(case2000).net.ref)  # slack buses hold their voltage
    base = case2000.base_mva
    for t, k in enumerate(s):
        single = gridflow.solve(case2000.replace(bus={"pd": case2000.bus.pd * k, "qd": case2000.bus.qd * k}),
                                enforce_q_lims=True)
        assert len(single.extra["q_limited"]) > 0
        np.testing.assert_allclose(batch.vm_pu[t], single.bus["vm_pu"].to_numpy(), atol=1e-9, rtol=0)
        np.testing.assert_allclose(batch.gen_q_mvar[t], single.gen["q_mvar"].to_numpy(), atol=1e-6, rtol=0)
        q = single.gen["q_mvar"].to_numpy()
        assert (q[not_slack] <= g.qmax[not_slack] * base + 1e-6).all()
        assert (q[not_slack] >= g.qmin[not_slack] * base - 1e-6).all()


def test_bad_outage_rows_are_refused(case2000):
    with pytest.raises(gridflow.GridflowError, match="branch_out"):
        gridflow.solve_batch(case2000, branch_out=[[case2000.nl]])
    with pytest.raises(gridflow.GridflowError, match="gen_out"):
        gridflow.solve_batch(case2000, gen_out=[[-1]])


def test_compensated_chord_is_the_outage_jacobian(case2000):
    """Woodbury on J0 gives the outage scenario's own Jacobian at the start (gridflow.compensation)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from gridflow.backends.cpu import CPUBatchOps
    from gridflow.jacobian import jacobian_values

    model = PowerFlowModel(case2000)
    net = model.net
    rows = _sample_non_bridges(model, 5, seed=11)
    pattern = model.pattern(net.pvpq, net.pq)
    spec = model.spec(len(rows), np.arange(len(rows)), rows, None, model.branch_terms)
    ops = CPUBatchOps(model, pattern, spec, threads=1)
    V0 = model.solve().V
    I0 = model.Ybus @ V0
    ops.chord_factorize(V0, I0, None)
    rng = np.random.default_rng(5)
    F = rng.standard_normal((len(rows), pattern.n))
    got = ops.chord_solve(np.arange(len(rows)), F)
    for j in range(len(rows)):
        Yd = ops._ydata(j)
        Vj = V0
        Ij = sp.csr_matrix((Yd, model.Ybus.indices, model.Ybus.indptr), shape=model.Ybus.shape) @ Vj
        data = jacobian_values(Vj, Ij, Yd, model.Yrow, model.Ybus.indices, pattern, diag=model.Ydiag)
        J = sp.csc_matrix((data, pattern.indices, pattern.indptr), shape=(pattern.n, pattern.n))
        want = spla.spsolve(J, F[j])
        np.testing.assert_allclose(got[j], want, rtol=1e-8, atol=1e-9 * np.abs(want).max())


def test_q_release_gives_voltage_control_back(case2000):
    """With q_release, held buses whose voltage ends on the wrong side of their setpoint get control back:
    fewer inconsistent held generators than PYPOWER's never-release rule, and every generator still regulating
    is within its Q limits."""
    c = case2000.replace(bus={"pd": case2000.bus.pd * 1.02, "qd": case2000.bus.qd * 1.02})
    g = c.gen
    vset = np.zeros(c.nb)
    vset[g.bus] = g.vg

    def inconsistent(r):
        held = r.extra["q_limited"]
        q = r.gen["q_mvar"].to_numpy() / c.base_mva
        vm = r.bus["vm_pu"].to_numpy()[g.bus[held]]
        at_max = np.isclose(q[held], g.qmax[held])
        return int(((at_max & (vm > vset[g.bus[held]] + 1e-3)) | (~at_max & (vm < vset[g.bus[held]] - 1e-3))).sum())

    plain = gridflow.solve(c, enforce_q_lims=True, distributed_slack=True)
    rel = gridflow.solve(c, enforce_q_lims=True, q_release=True, distributed_slack=True)
    assert plain.converged and rel.converged
    assert inconsistent(rel) < inconsistent(plain)
    q = rel.gen["q_mvar"].to_numpy() / c.base_mva
    regulating = g.status & ~np.isin(np.arange(c.ng), rel.extra["q_held"])
    assert (q[regulating] <= g.qmax[regulating] + 1e-6).all() and (q[regulating] >= g.qmin[regulating] - 1e-6).all()
    # a bus given its control back is at its setpoint again (its Vm is no unknown: the start must be reset)
    pv = np.isin(g.bus, PowerFlowModel(c).net.pv) & regulating
    vm = rel.bus["vm_pu"].to_numpy()
    np.testing.assert_allclose(vm[g.bus[pv]], vset[g.bus[pv]], atol=1e-9)
