"""The rolling-blackout study: scenario files, placement, dispatch, screening, end to end, and an
independent check of an allocation in PYPOWER."""

import contextlib
import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gridflow
from gridflow.cli import main
from gridflow.errors import ScenarioError
from gridflow.study.datacenters import MIN_BUSES, place
from gridflow.study.dispatch import dispatch, online_capacity_mw
from gridflow.study.run import run_study
from gridflow.study.scenario import Datacenter, default_scenario, load_scenario, scenario_from_dict
from gridflow.study.screening import baseline, screen
from gridflow.study.zones import load_zone_map

SMALL = {"case": {"source": "case_ACTIVSg2000", "zones": "activsg2000"},
         "datacenter": [{"name": "DFW", "zone": "North Central", "mw": 6000, "flexible_share": 0.3}],
         "study": {"policy": "pro-rata", "reserve_mw": 1000, "interval_minutes": 60, "hours": 4, "max_hours_dark": 2}}


# a capacity shortfall the network can deliver: 4 x 250 MW of datacenters and a 15 GW reserve (3.6 GW short)
CAPACITY = {"case": {"source": "case_ACTIVSg2000", "zones": "activsg2000"},
            "datacenter": [{"name": z, "zone": z, "mw": 250, "flexible_share": 0.1}
                           for z in ("North Central", "Coast", "South Central", "South")],
            "study": {"policy": "pro-rata", "reserve_mw": 15000, "interval_minutes": 60, "hours": 4,
                      "max_hours_dark": 2}}


@pytest.fixture(scope="module")
def case2000():
    return gridflow.load_case("case_ACTIVSg2000")


# ------------------------------------------------------------------ scenario files

def test_default_scenario_is_the_shipped_toml():
    sc = default_scenario()
    assert sc.source == "case_ACTIVSg25k" and sc.zones == "activsg25k"
    assert sc.study.steps_mw == (10000.0, 20000.0, 30000.0, 40000.0)
    assert sc.datacenters[0].zone == "Northern Virginia"


@pytest.mark.parametrize("patch, msg", [
    ({"datacenter": [{"name": "x", "zone": "Z", "mw": -5}]}, "mw must be >= 0"),
    ({"study": {"policy": "lottery"}}, "unknown policy 'lottery'"),
    ({"study": {"interval_minutes": 5}}, "interval_minutes must be >= 15"),
    ({"study": {"max_hours_dark": 0.1}}, "shorter than one interval"),
    ({"study": {"hours": 1.5, "interval_minutes": 60}}, "whole number of intervals"),
    ({"study": {"rating": "D"}}, "rating must be A, B or C"),
    ({"study": {"reserve": 10}}, "unknown key 'reserve'"),
    ({"datacenter": [{"name": "x", "zone": "Z", "state": "VA", "mw": 5}]}, "exactly one of zone"),
    ({"datacenter": [{"name": "x", "zone": "Z", "mw": 5, "power_factor": 1.5}]}, "power_factor must be <= 1"),
    ({"case": {"zones": "activsg2000"}}, "needs source"),
])
def test_scenario_errors(patch, msg):
    doc = {**SMALL, **patch}
    with pytest.raises(ScenarioError, match=msg):
        scenario_from_dict(doc, "s.toml")


def test_toml_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[case]\nsource = "case9"\n[study]\npolicy = "lottery"\n')
    r = CliRunner().invoke(main, ["study", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "unknown policy 'lottery'" in r.output and "Traceback" not in r.output
    bad.write_text("[case\n")
    r = CliRunner().invoke(main, ["study", str(bad)])
    assert r.exit_code == 2 and "not valid TOML" in r.output


def test_unknown_zone_is_one_line_exit_2(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[case]\nsource = "case_ACTIVSg2000"\nzones = "activsg2000"\n'
                 '[[datacenter]]\nname = "x"\nzone = "Atlantis"\nmw = 100\n')
    r = CliRunner().invoke(main, ["study", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown zone 'Atlantis'" in r.output
    assert load_scenario(p).datacenters[0].zone == "Atlantis"


# ------------------------------------------------------------------ building blocks

def test_placement_highest_voltage_load_buses(case2000):
    z = load_zone_map("activsg2000", case2000)
    dc = place([Datacenter(name="a", zone="Coast", mw=1000.0, power_factor=0.95, flexible_share=0.2)], case2000, z)
    idx = np.flatnonzero(dc.p_mw)
    assert dc.total_mw == pytest.approx(1000.0)
    assert (z.zone[idx] == "Coast").all() and (case2000.bus.pd[idx] > 0).all()
    assert len(idx) >= MIN_BUSES
    # every chosen bus is at a voltage level at least as high as every load bus left out of the choice
    coast = np.flatnonzero((z.zone == "Coast") & (case2000.bus.pd > 0))
    left = np.setdiff1d(coast, idx)
    if len(left):
        assert case2000.bus.base_kv[idx].min() >= case2000.bus.base_kv[left].max()
    np.testing.assert_allclose(dc.q_mvar[idx], dc.p_mw[idx] * np.tan(np.arccos(0.95)))
    np.testing.assert_allclose(dc.flex_mw.sum(), 200.0)
    # shares follow the existing load
    w = case2000.bus.pd[idx] / case2000.bus.pd[idx].sum()
    np.testing.assert_allclose(dc.p_mw[idx], 1000.0 * w)


def test_dispatch_by_headroom_hand_example():
    case = gridflow.load_case("case9.m")  # 3 generators: Pg 72.3 (slack), 163, 85; Pmax 250, 300, 270
    pg = case.gen.pg * 100
    room = case.gen.pmax * 100 - pg
    d = dispatch(case, pg.sum() + 100.0)
    np.testing.assert_allclose(d.pg_mw, pg + 100.0 * room / room.sum())
    assert d.unmet_mw == 0
    d = dispatch(case, online_capacity_mw(case) + 50.0)
    np.testing.assert_allclose(d.pg_mw, case.gen.pmax * 100)
    assert d.unmet_mw == pytest.approx(50.0)


def test_screening_new_and_worsened(case2000):
    res = gridflow.solve(case2000)
    base = baseline(case2000, res)
    assert screen(case2000, res, base).clean
    heavy = case2000.replace(bus={"pd": case2000.bus.pd * 1.02, "qd": case2000.bus.qd * 1.6})
    hres = gridflow.solve(heavy)
    s = screen(case2000, hres, base)
    assert s.converged and len(s.new_overloads) > 0 and not s.clean
    # the same overloads judged against a base in which they already were: worsened only if they grew
    from gridflow.study.screening import Baseline, branch_loading

    now = branch_loading(case2000, hres)
    k = s.new_overloads
    pre = base.loading.copy()
    pre[k] = now[k] - 0.5  # grew by 0.5 points: within the 1-point tolerance
    s2 = screen(case2000, hres, Baseline(pre, base.v_excess, "A"))
    assert not np.isin(k, s2.new_overloads).any() and not np.isin(k, s2.worsened_overloads).any()
    big = k[now[k] > 106.0]
    assert len(big)
    pre[big] = now[big] - 5.0  # already overloaded in the base, now 5 points worse
    s3 = screen(case2000, hres, Baseline(pre, base.v_excess, "A"))
    assert np.isin(big, s3.worsened_overloads).all()
    # voltage: a bus pushed below Vmin by more than the tolerance is new
    vex = base.v_excess.copy()
    lowered = case2000.replace(bus={"vmin": np.full(case2000.nb, 0.99)})
    s4 = screen(lowered, res, Baseline(base.loading, vex, "A"))
    assert len(s4.new_voltage) == int((res.bus["vm_pu"].to_numpy() < 0.99 - 0.005).sum()) > 0


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def small_study():
    return {p: run_study(scenario_from_dict({**SMALL, "study": {**SMALL["study"], "policy": p}}))
            for p in ("pro-rata", "large-load-first", "network")}


@pytest.mark.parametrize("policy", ["pro-rata", "large-load-first", "network"])
def test_allocations_verified_and_consistent(small_study, policy):
    st = small_study[policy].steps[0]
    case = small_study[policy].case
    a = st.allocation
    assert st.pre.converged and not st.pre.clean  # 6 GW in North Central overloads the network
    assert st.verified, st.notes
    assert a.total_mw > 0
    # bounds: nothing below zero, never more than the load of its kind
    for arr in (a.p_flex_mw, a.p_backup_mw, a.p_firm_mw):
        assert (arr >= -1e-9).all()
    assert (a.p_firm_mw <= case.bus.pd * case.base_mva + 1e-6).all()
    # schedule: each interval's firm shed covers every zone's firm obligation
    shed_by_bus = st.verification.shed_by_bus
    firm = shed_by_bus[shed_by_bus["kind"] == "firm"].groupby("interval")["p_shed_mw"].sum()
    for t in range(4):
        assert firm.get(t, 0.0) >= a.p_firm_mw.sum() - 1e-6
    # served demand + shed = demand, per interval
    served = st.verification.bus_demand.groupby("interval")["p_mw"].sum()
    shed = st.verification.shed_by_bus.groupby("interval")["p_shed_mw"].sum()
    for t in range(4):
        assert served[t] + shed.get(t, 0.0) == pytest.approx(st.adequacy.load_mw, abs=1e-3)


def test_large_load_first_sheds_datacenters_before_firm_load(small_study):
    a = small_study["large-load-first"].steps[0].allocation
    dc_total = 6000.0
    if a.p_firm_mw.sum() > 0:
        assert a.p_flex_mw.sum() + a.p_backup_mw.sum() == pytest.approx(dc_total, rel=1e-6)
    if a.p_backup_mw.sum() > 0:
        assert a.p_flex_mw.sum() == pytest.approx(0.3 * dc_total, rel=1e-6)


@pytest.fixture(scope="module")
def capacity_study():
    return {p: run_study(scenario_from_dict({**CAPACITY, "study": {**CAPACITY["study"], "policy": p}}))
            for p in ("pro-rata", "large-load-first", "network")}


@pytest.mark.parametrize("policy", ["pro-rata", "large-load-first", "network"])
def test_capacity_shortfall_rotating_blackouts(capacity_study, policy):
    st = capacity_study[policy].steps[0]
    assert st.pre.clean and st.adequacy.shortfall_mw > 3000
    assert st.verified, st.notes
    a = st.allocation
    assert a.total_mw == pytest.approx(st.adequacy.shortfall_mw, rel=1e-9)
    assert a.p_firm_mw.sum() > 0
    # every zone's firm obligation is met in every interval by its dark feeders
    firm = st.verification.shed_by_bus[st.verification.shed_by_bus["kind"] == "firm"].copy()
    zone_of = pd.Series(capacity_study[policy].zone_map.zone, index=capacity_study[policy].case.bus.number)
    firm["zone"] = zone_of.reindex(firm["bus"]).to_numpy()
    got = firm.groupby(["interval", "zone"])["p_shed_mw"].sum()
    need = pd.Series(a.p_firm_mw).groupby(capacity_study[policy].zone_map.zone).sum()
    for t in range(4):
        for z, mw in need[need > 1e-6].items():
            assert got.get((t, z), 0.0) >= mw - 1e-6
    # rotation: cap of 2 hours in a row, fairness within a zone (dark intervals differ by at most one)
    assert st.rotation.block_stats["longest_outage_hours"].max() <= 2.0 + 1e-9
    per_zone = st.rotation.block_stats.groupby("zone")["intervals_dark"]
    assert ((per_zone.max() - per_zone.min()) <= 1).all()


def test_pro_rata_shares_follow_zone_load(capacity_study):
    study = capacity_study["pro-rata"]
    st = study.steps[0]
    z = st.zones.set_index("zone")
    demand = z["load_mw"] + z["datacenter_mw"]
    frac = z["shed_mw"] / demand
    np.testing.assert_allclose(frac.to_numpy(), frac.iloc[0], rtol=1e-9)
    assert frac.iloc[0] * demand.sum() == pytest.approx(st.adequacy.shortfall_mw, rel=1e-9)


def test_large_load_first_takes_datacenters_first(capacity_study):
    a = capacity_study["large-load-first"].steps[0].allocation
    assert a.p_flex_mw.sum() == pytest.approx(100.0) and a.p_backup_mw.sum() == pytest.approx(900.0)
    assert a.p_firm_mw.sum() == pytest.approx(a.total_mw - 1000.0)


def test_independent_check_in_pypower(capacity_study):
    """Apply the pro-rata allocation's served demand and dispatch of interval 0 to the case in PYPOWER:
    it converges and no branch that was within its rating in the base case exceeds it (+1 % tolerance)."""
    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    from gridflow.validate import to_ppc

    study = capacity_study["pro-rata"]  # with rolling blackouts in interval 0
    case, st = study.case, study.steps[0]
    demand = st.verification.bus_demand[st.verification.bus_demand["interval"] == 0].set_index("bus")
    pd_mw = demand["p_mw"].reindex(case.bus.number).fillna(0.0).to_numpy()
    qd = demand["q_mvar"].reindex(case.bus.number).fillna(0.0).to_numpy()
    pg = st.verification.gen_dispatch[st.verification.gen_dispatch["interval"] == 0]["p_mw"].to_numpy()
    served = case.replace(bus={"pd": pd_mw / 100.0, "qd": qd / 100.0}, gen={"pg": pg / 100.0})
    ppc = to_ppc(served)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        r, ok = runpf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert ok
    s = np.maximum(np.hypot(r["branch"][:, 13], r["branch"][:, 14]), np.hypot(r["branch"][:, 15], r["branch"][:, 16]))
    rate = case.branch.rate_a * 100
    loading = np.where(rate > 0, s / np.where(rate > 0, rate, 1) * 100, 0)
    was = np.nan_to_num(study.base.loading)
    assert (loading[was <= 100] <= 101.0).all()


def test_study_cli_writes_every_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[case]\nsource = "case_ACTIVSg2000"\nzones = "activsg2000"\n'
                 '[[datacenter]]\nname = "DFW"\nzone = "North Central"\nmw = 6000\nflexible_share = 0.3\n'
                 '[study]\npolicy = "large-load-first"\nreserve_mw = 1000\n')
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["study", str(p), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "North Central" in r.output
    for name in ("summary.json", "zones.csv", "schedule.csv", "shed_by_bus.csv", "bus_demand.csv",
                 "gen_dispatch.csv", "shed_by_zone.png", "hours_dark.png", "voltage_profile.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"][0]["verified"] in (True, False)
    shed = pd.read_csv(out / "shed_by_bus.csv")
    assert list(shed.columns) == ["step", "interval", "bus", "p_shed_mw", "q_shed_mvar", "kind"]
    assert set(shed["kind"]) <= {"flexible", "backup", "firm"}
    assert list(pd.read_csv(out / "gen_dispatch.csv").columns) == ["step", "interval", "gen", "p_mw"]
    assert list(pd.read_csv(out / "bus_demand.csv").columns) == ["step", "interval", "bus", "p_mw", "q_mvar"]
