"""DC shed sensitivities (gridflow.study.sensitivity): against finite differences of an independent DC power
flow and against AC power flows; and the study's AC distribution factors (DFAX) against them."""

from __future__ import annotations

import numpy as np
import pytest

import gridflow
from gridflow.errors import CaseError, ScenarioError
from gridflow.study.sensitivity import generator_weights, ptdf_rows, shed_sensitivity


def _dc_flows(case, p_mw):
    """An independent DC power flow: dense B from the branch list, slack angle 0, from-end MW."""
    nb = case.nb
    br = case.branch
    B = np.zeros((nb, nb))
    b = np.zeros(case.nl)
    for k in range(case.nl):
        if not br.status[k]:
            continue
        b[k] = 1.0 / (br.x[k] * br.tap[k])
        f, t = br.f[k], br.t[k]
        B[f, f] += b[k]
        B[t, t] += b[k]
        B[f, t] -= b[k]
        B[t, f] -= b[k]
    ref = int(np.flatnonzero(case.bus.type == 3)[0])
    keep = np.arange(nb) != ref
    theta = np.zeros(nb)
    theta[keep] = np.linalg.solve(B[np.ix_(keep, keep)], p_mw[keep] / case.base_mva)
    return case.base_mva * b * (theta[br.f] - theta[br.t])


def _injections(case, pd_mw, pg_mw):
    p = -np.asarray(pd_mw, float).copy()
    np.add.at(p, case.gen.bus, np.where(case.gen.status, pg_mw, 0.0))
    return p


@pytest.mark.parametrize("response", ["headroom", "slack", "weights"])
def test_sensitivity_matches_finite_differences_of_a_dc_power_flow(response):
    case = gridflow.load_case("case118.m")  # has off-nominal taps
    assert (case.branch.tap != 1).any()
    g = case.gen
    branches = np.array([0, 7, 36, 50, 103, 120, 170])
    if response == "weights":
        weights = np.arange(case.ng, dtype=float) % 3
        H = shed_sensitivity(case, branches, gen_weights=weights)
        w = weights * g.status / (weights * g.status).sum()
    else:
        H = shed_sensitivity(case, branches, response=response)
        w = np.zeros(case.ng)
        if response == "headroom":  # generators give up the shed in proportion to their output above Pmin
            room = np.where(g.status, g.pg - np.minimum(g.pmin, g.pg), 0.0)
            w = room / room.sum()
    pd0, pg0 = case.bus.pd * 100, g.pg * 100
    f0 = _dc_flows(case, _injections(case, pd0, pg0))
    for bus in (2, 20, 58, 89, 115):
        step = 10.0
        pd = pd0.copy()
        pd[bus] -= step
        f1 = _dc_flows(case, _injections(case, pd, pg0 - step * w))
        np.testing.assert_allclose((f1 - f0)[branches] / step, H[:, bus], atol=1e-9)
    np.testing.assert_allclose(generator_weights(case, response=response if response != "weights" else "headroom",
                                                 gen_weights=weights if response == "weights" else None).sum(),
                               0.0 if response == "slack" else 1.0)


def test_ptdf_rows_and_islands():
    case = gridflow.load_case("case30.m")
    rng = np.random.default_rng(2)
    p = rng.standard_normal(case.nb)
    p[np.flatnonzero(case.bus.type == 3)[0]] -= p.sum()  # balanced: the slack takes the rest
    P = ptdf_rows(case, np.arange(case.nl))
    np.testing.assert_allclose(P @ p, _dc_flows(case, p), atol=1e-9)
    # a branch out of service has a zero row; a bus cut off (no slack in its island) a zero column
    status = case.branch.status.copy()
    radial = [k for k in range(case.nl) if np.sum((case.branch.f == case.branch.t[k]) |
                                                  (case.branch.t == case.branch.t[k])) == 1]
    k = radial[0]
    status[k] = False
    cut = case.replace(branch={"status": status})
    H = shed_sensitivity(cut, np.arange(case.nl))
    assert (H[k] == 0).all() and (H[:, case.branch.t[k]] == 0).all()
    assert np.abs(H).sum() > 0
    # a boolean mask works like indices
    np.testing.assert_allclose(shed_sensitivity(case, np.arange(case.nl) < 5), shed_sensitivity(case, range(5)))


@pytest.mark.parametrize("name", ["case30", "case118"])
def test_sensitivity_predicts_the_ac_flow_change(name):
    """10 MW shed at each load bus of at least 10 MW (Q in proportion), generators lowered by the same
    weights, solved in AC from the base solution. Tolerance (measured: case30 max 0.60 MW, relative
    error median 4 %, worst 9 %; case118 max 0.95 MW, median 6 %, worst 12 %): every branch within
    10 % of the shed MW (1 MW), the relative 2-norm error of the flow change below 15 % for every bus
    and below 8 % for the median bus. The difference is mostly the change in losses, which the AC
    slack bus picks up (the DC model is lossless), and off-nominal transformer taps."""
    case = gridflow.load_case(f"{name}.m")
    base = gridflow.solve(case)
    assert base.converged
    H = shed_sensitivity(case, np.arange(case.nl))
    w = generator_weights(case)
    step = 10.0
    rel = []
    for bus in np.flatnonzero(case.bus.pd * case.base_mva >= step):
        pd, qd = case.bus.pd.copy(), case.bus.qd.copy()
        qd[bus] *= 1.0 - step / (pd[bus] * case.base_mva)
        pd[bus] -= step / case.base_mva
        shed = case.replace(bus={"pd": pd, "qd": qd}, gen={"pg": case.gen.pg - step / case.base_mva * w})
        res = gridflow.solve(shed, V0=base.V)
        assert res.converged
        ac = res.branch["p_from_mw"].to_numpy() - base.branch["p_from_mw"].to_numpy()
        dc = H[:, bus] * step
        assert np.abs(ac - dc).max() <= 0.10 * step, bus
        rel.append(np.linalg.norm(ac - dc) / np.linalg.norm(ac))
    assert len(rel) >= 5
    assert max(rel) < 0.15 and np.median(rel) < 0.08


def test_bad_sensitivity_input():
    case = gridflow.load_case("case30.m")
    with pytest.raises(ScenarioError, match="out of range"):
        shed_sensitivity(case, [case.nl])
    with pytest.raises(ScenarioError, match="unknown generation response"):
        shed_sensitivity(case, [0], response="nearest")
    with pytest.raises(ScenarioError, match="gen_weights"):
        shed_sensitivity(case, [0], gen_weights=-np.ones(case.ng))
    x = case.branch.x.copy()
    x[3] = 0.0
    with pytest.raises(CaseError, match="x = 0"):
        shed_sensitivity(case.replace(branch={"x": x, "r": np.full(case.nl, 0.01)}), [0])


def test_study_ac_dfax_agrees_with_the_dc_sensitivities():
    """The study attributes overloads by AC distribution factors (the from-end MW change per MW of datacenter
    load served, footprint units responding by headroom). On ACTIVSg2000, 300 MW spread over the Coast zone's
    highest-kV load buses: the AC factors agree with the DC ones (PTDF with the same generator weights) to
    1.5 percentage points on every branch whose DC factor is at least 3 % (measured with the engine's
    distributed slack, which also spreads the losses' change over the responders: max 1.04, median 0.15,
    71 branches), correlation > 0.999 over all branches."""
    from gridflow.study import acsolve
    from gridflow.study.datacenters import place_one
    from gridflow.study.scenario import Datacenter
    from gridflow.study.zones import load_zone_map

    c = gridflow.load_case("case_ACTIVSg2000")
    pl = place_one(Datacenter(name="a", zone="Coast", mw=1.0), c, load_zone_map("activsg2000", c))
    resp = c.gen.status
    ref = acsolve.solve_point(c, responders=resp, q_limits=False)
    x = 300.0
    pd = c.bus.pd.copy()
    pd[pl.bus] += x * pl.weight / c.base_mva
    pt = acsolve.solve_point(c.replace(bus={"pd": pd}), responders=resp, warm=ref, q_limits=False)
    ac = (pt.result.branch["p_from_mw"].to_numpy() - ref.result.branch["p_from_mw"].to_numpy()) / x * 100
    # the same generator weights as the AC point's participation: headroom from the reference's dispatch
    H = shed_sensitivity(ref.case, np.arange(c.nl),
                         gen_weights=np.where(resp, np.maximum(c.gen.pmax - ref.case.gen.pg, 0.0), 0.0))
    w = np.zeros(c.nb)
    w[pl.bus] = pl.weight
    dc = -(H @ w) * 100  # H is per MW shed; a load added is a negative shed
    big = np.abs(dc) >= 3.0
    assert big.sum() >= 20
    assert np.abs(ac - dc)[big].max() <= 1.5
    assert np.corrcoef(ac, dc)[0, 1] > 0.999
