"""Load-shed policies on hand-computed examples, and the DC sensitivities against finite differences."""

import numpy as np
import pytest

import gridflow
from gridflow.errors import ScenarioError
from gridflow.study.allocation import ShedProblem, allocate_large_load_first, allocate_network, allocate_pro_rata
from gridflow.study.sensitivity import ptdf_rows, shed_sensitivity


def problem(shortfall, **kw):
    """Four buses: zone A (buses 0, 1), zone B (bus 2), zone C (bus 3, a datacenter bus)."""
    base = dict(firm_p_mw=np.array([100.0, 100.0, 200.0, 0.0]), firm_q_mvar=np.array([20.0, 50.0, 40.0, 0.0]),
                flex_p_mw=np.array([0.0, 0.0, 0.0, 30.0]), dc_p_mw=np.array([0.0, 0.0, 0.0, 70.0]),
                dc_q_mvar=np.array([0.0, 0.0, 0.0, 20.0]), zone=np.array(["A", "A", "B", "C"], dtype=object),
                critical=np.zeros(4, bool), shortfall_mw=shortfall)
    base.update(kw)
    return ShedProblem(**base)


def check_invariants(a, p):
    total = a.p_flex_mw + a.p_backup_mw + a.p_firm_mw
    assert total.sum() == pytest.approx(min(p.shortfall_mw, a.total_mw + a.unmet_mw))
    assert (a.p_firm_mw <= p.firm_p_mw + 1e-9).all() and (a.p_flex_mw <= p.flex_p_mw + 1e-9).all()
    assert (a.p_backup_mw <= p.dc_p_mw + 1e-9).all()
    assert (total[p.critical] == 0).all()
    # power factor kept
    np.testing.assert_allclose(a.q_firm_mvar, a.p_firm_mw * np.divide(p.firm_q_mvar, p.firm_p_mw,
                                                                       out=np.zeros(4), where=p.firm_p_mw > 0))
    k = np.divide(p.dc_q_mvar, p.flex_p_mw + p.dc_p_mw, out=np.zeros(4), where=p.flex_p_mw + p.dc_p_mw > 0)
    np.testing.assert_allclose(a.q_flex_mvar + a.q_backup_mvar, (a.p_flex_mw + a.p_backup_mw) * k)


def test_pro_rata_by_load_share():
    p = problem(100.0)  # loads A 200, B 200, C 100 -> shares 40, 40, 20 MW
    a = allocate_pro_rata(p)
    check_invariants(a, p)
    np.testing.assert_allclose(a.p_firm_mw, [20.0, 20.0, 40.0, 0.0])
    assert a.p_flex_mw[3] == pytest.approx(20.0) and a.p_backup_mw[3] == pytest.approx(0.0)


def test_pro_rata_ratio_table_and_redistribution():
    p = problem(150.0, zone_ratio={"A": 1.0, "B": 1.0, "C": 4.0})  # C's share 100 covers all its load
    a = allocate_pro_rata(p)
    check_invariants(a, p)
    np.testing.assert_allclose(a.p_flex_mw[3] + a.p_backup_mw[3], 100.0)
    np.testing.assert_allclose(a.p_flex_mw[3], 30.0)
    np.testing.assert_allclose(a.p_firm_mw, [12.5, 12.5, 25.0, 0.0])
    # a critical bus passes its share on
    p = problem(100.0, critical=np.array([False, False, True, False]))
    a = allocate_pro_rata(p)
    check_invariants(a, p)
    assert a.p_firm_mw[2] == 0 and a.total_mw == pytest.approx(100.0)


def test_large_load_first_tiers():
    a = allocate_large_load_first(problem(20.0))
    assert a.p_flex_mw[3] == pytest.approx(20.0) and a.p_backup_mw.sum() == 0 and a.p_firm_mw.sum() == 0
    a = allocate_large_load_first(problem(60.0))
    assert a.p_flex_mw[3] == pytest.approx(30.0) and a.p_backup_mw[3] == pytest.approx(30.0)
    p = problem(180.0)
    a = allocate_large_load_first(p)
    check_invariants(a, p)
    assert a.p_flex_mw[3] == pytest.approx(30.0) and a.p_backup_mw[3] == pytest.approx(70.0)
    np.testing.assert_allclose(a.p_firm_mw, [20.0, 20.0, 40.0, 0.0])  # the last 80 MW pro-rata on firm load


def test_unmet_when_everything_is_not_enough():
    p = problem(1000.0, critical=np.array([True, False, False, False]))
    a = allocate_large_load_first(p)
    assert a.total_mw == pytest.approx(400.0) and a.unmet_mw == pytest.approx(600.0)


def test_network_lp_hand_example():
    # one monitored line at 120 MW, limit 100 MW: 20 MW of relief needed. Shedding relieves it 1:1 at
    # bus 0, 0.25 per MW at bus 3 (the datacenter), not at all at buses 1, 2. Cost per MW of relief:
    # flexible at bus 3 1/0.25 = 4, backup at bus 3 2/0.25 = 8, firm at bus 0 10/1 = 10. So: all 30 MW
    # flexible (7.5 MW relief), then 50 MW to backup (12.5 MW relief), no firm load.
    H = np.array([[-1.0, 0.0, 0.0, -0.25]])
    p = problem(0.0)
    a = allocate_network(p, H=H, flow0_mw=np.array([120.0]), limit_mw=np.array([100.0]))
    assert a.p_flex_mw[3] == pytest.approx(30.0, abs=1e-6)
    assert a.p_backup_mw[3] == pytest.approx(50.0, abs=1e-6)
    assert a.p_firm_mw.sum() == pytest.approx(0.0, abs=1e-6)
    assert a.max_violation_mw == pytest.approx(0.0, abs=1e-6)
    # a tighter limit needs firm load at bus 0 after the whole datacenter: 30 MW of relief
    a = allocate_network(p, H=H, flow0_mw=np.array([130.0]), limit_mw=np.array([100.0]))
    assert a.p_backup_mw[3] == pytest.approx(70.0, abs=1e-6) and a.p_firm_mw[0] == pytest.approx(5.0, abs=1e-6)
    # with a shortfall too, the capacity constraint adds the cheapest MW anywhere
    a = allocate_network(problem(100.0), H=H, flow0_mw=np.array([120.0]), limit_mw=np.array([100.0]))
    assert a.total_mw == pytest.approx(100.0) and a.p_flex_mw[3] == pytest.approx(30.0)
    # infeasible (bus 0 critical, the datacenter relieves at most 25 MW of the 30 needed): the 5 MW
    # violation left is reported, not hidden
    a = allocate_network(problem(0.0, critical=np.array([True, False, False, False])), H=H,
                         flow0_mw=np.array([130.0]), limit_mw=np.array([100.0]))
    assert a.max_violation_mw == pytest.approx(5.0, abs=1e-6)
    assert a.p_firm_mw[0] == 0.0


@pytest.mark.parametrize("bad, msg", [
    (dict(firm_p_mw=np.array([np.nan, 1, 1, 0.0])), "NaN"),
    (dict(firm_p_mw=np.array([-1.0, 1, 1, 0])), "negative"),
    (dict(zone_ratio={"Z": 1.0}), "unknown zone 'Z'"),
])
def test_problem_errors(bad, msg):
    with pytest.raises(ScenarioError, match=msg):
        problem(10.0, **bad)
    with pytest.raises(ScenarioError, match="shortfall"):
        problem(-1.0)


def _dc_flows(case, P_inj):
    """Plain DC power flow (reference: first slack bus angle 0), from-end MW flows."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    br = case.branch
    b = np.where(br.status, 1.0 / (br.x * br.tap), 0.0)
    nb, nl = case.nb, case.nl
    A = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (np.r_[np.arange(nl), np.arange(nl)], np.r_[br.f, br.t])),
                      shape=(nl, nb))
    B = (A.T @ sp.diags(b) @ A).tocsc()
    ref = int(np.flatnonzero(case.bus.type == 3)[0])
    keep = np.setdiff1d(np.arange(nb), [ref])
    th = np.zeros(nb)
    th[keep] = spla.spsolve(B[keep][:, keep], P_inj[keep])
    return b * (A @ th)


def test_ptdf_and_shed_sensitivity_against_finite_differences():
    case = gridflow.load_case("case118.m")
    branches = np.array([0, 7, 50, 120])
    P = ptdf_rows(case, branches)
    rng = np.random.default_rng(3)
    inj = rng.standard_normal(case.nb)
    inj -= inj.mean()
    np.testing.assert_allclose(P @ inj, _dc_flows(case, inj)[branches], atol=1e-9)
    H = shed_sensitivity(case, branches)
    # shed 1 MW at bus 20: +1 there, generators -1 in proportion to Pg - Pmin
    g = case.gen
    w = np.maximum(g.pg - g.pmin, 0) * g.status
    w = w / w.sum()
    d = np.zeros(case.nb)
    d[20] = 1.0
    np.add.at(d, g.bus, -w)
    np.testing.assert_allclose(H[:, 20], _dc_flows(case, d)[branches], atol=1e-9)


def test_shed_sensitivity_predicts_the_ac_change():
    """Shed 10 MW at a load bus of case30 with the generators rescaled: the AC flow change agrees with
    H * 10 MW within 10 % of the largest change (the DC model ignores losses and reactive flows)."""
    from gridflow.study.dispatch import dispatch

    case = gridflow.load_case("case30.m")
    base = gridflow.solve(case)
    branches = np.arange(case.nl)
    H = shed_sensitivity(case, branches)
    bus = int(np.argmax(case.bus.pd))
    pd = case.bus.pd.copy()
    pd[bus] -= 0.1
    shed = case.replace(bus={"pd": pd})
    d = dispatch(shed, base.gen["p_mw"].sum() - 10.0, base.gen["p_mw"].to_numpy())
    res = gridflow.solve(shed.replace(gen={"pg": d.pg_mw / 100}))
    ac = res.branch["p_from_mw"].to_numpy() - base.branch["p_from_mw"].to_numpy()
    assert np.abs(ac - H[:, bus] * 10.0).max() <= 0.1 * np.abs(ac).max() + 0.2
