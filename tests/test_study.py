"""The study: scenario keys and bad input, the building blocks (ladder, policies, blocks, footprint, day,
shares, placement, limit search, the AC seam), a Texas winter-peak shortfall checked against hand-computed
values and re-solved independently in PYPOWER, and the default study (slow)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest
from clihelp import assert_one_line_error, cli

import gridflow
from gridflow.errors import ScenarioError
from gridflow.study import acsolve
from gridflow.study.blocks import check_blocks, feeder_blocks, rotatable_mw
from gridflow.study.datacenters import MIN_BUSES, place, place_one
from gridflow.study.footprint import derate, footprint_of
from gridflow.study.ladder import Rung, climb, shave
from gridflow.study.loadshape import builtin_shape, bus_shapes, study_day
from gridflow.study.policy import DatacenterRungs, get_policy
from gridflow.study.run import run_study
from gridflow.study.scenario import (
    DATACENTER_KEYS,
    STUDY_KEYS,
    Datacenter,
    default_scenario,
    scenario_from_dict,
    template,
)
from gridflow.study.search import Trial, bisect_limit
from gridflow.study.zones import candidate_buses, load_zone_map, zone_shares

# A winter-morning capacity shortfall in ERCOT (ACTIVSg2000): 12 GW of capacity unavailable, 1 GW of new
# datacenter load in Houston; the ladder's hour limits are a whole day, so each rung gives min(room, need left).
WINTER = {"case": {"source": "case_ACTIVSg2000", "zones": "activsg2000"},
          "datacenter": [{"name": "Houston", "zone": "Coast", "mw": 1000, "flexible_share": 0.2, "backup_share": 0.3}],
          "study": {"footprint": "ERCOT", "load_shape": "winter-peak", "hours": [5, 11], "reserve_mw": 2000,
                    "unavailable_mw": 12000, "demand_response_mw": 300, "voltage_reduction_percent": 1.0,
                    "max_curtail_hours": 24, "backup_max_hours": 24, "max_hours_dark": 1, "block_mw": 10,
                    "contingencies": "none"}}


LOSS_TOL = 50.0  # MW: the study re-estimates the overhead when the verified one is further off (LOSS_TOL_MW)


def _doc(**study):
    return {**WINTER, "study": {**WINTER["study"], **study}}


@pytest.fixture(scope="module")
def case2000():
    return gridflow.load_case("case_ACTIVSg2000")


@pytest.fixture(scope="module")
def zones2000(case2000):
    return load_zone_map("activsg2000", case2000)


# ------------------------------------------------------------------ scenario, template, bad input

def test_default_scenario_is_the_shipped_toml():
    sc = default_scenario()
    assert sc.source == "case_ACTIVSg25k" and sc.zones == "activsg25k" and sc.study.footprint == "PJM"
    assert sc.datacenters[0].name == "Northern Virginia" and sc.datacenters[0].buses  # explicit buses first
    assert sc.study.q_limits and sc.study.contingencies == "auto" and sc.study.load_shape == "summer-peak"


def test_template_has_every_key_with_its_default_and_parses():
    text = template()
    for k in STUDY_KEYS + DATACENTER_KEYS:
        assert f"{k.name} = " in text, k.name
    sc = scenario_from_dict(tomllib.loads(text), "template")
    assert sc.study.dfax_cutoff_percent == 5.0 and sc.study.monitored_kv_min == 100.0
    assert sc.study.large_load_min_mw == 75.0 and sc.study.block_mw == 15.0 and sc.study.emergency_rating == "B"
    r = cli("study", "--template")
    assert r.exit_code == 0 and r.output == text


@pytest.mark.parametrize("patch, msg", [
    ({"policy": "network"}, "the 'network' policy was removed"),
    ({"policy": "lottery"}, "unknown policy 'lottery'"),
    ({"contingencies": "auto"}, None),
    ({"contingencies": "contab.m"}, None),  # read (and checked) when the study runs
    ({"contingencies": 1}, "contingencies must be"),
    ({"hosting_map": True}, None),
    ({"hosting_buses": [1, "x"]}, "hosting_buses must be a list of bus numbers"),
    ({"interval_minutes": 7}, "interval_minutes must be a whole number of minutes from 10 to 60"),
    ({"interval_minutes": 45}, "divides"),
    ({"hours": [20, 10]}, r"hours \[20, 10\) must lie within the day"),
    ({"hours": 30}, "hours must be a whole number"),
    ({"load_shape": [1.0] * 23}, "load_shape must be 24 hourly multipliers"),
    ({"load_shape": "heatwave"}, "not a built-in shape"),
    ({"max_hours_dark": 0.1}, "shorter than one interval"),
    ({"zone_shares": {"Coast": 0.5, "East": 0.4}}, None),  # checked against the footprint at run time
    ({"critical_percent": 60, "ufls_percent": 40}, "nothing left to rotate"),
    ({"interchange": "free"}, "interchange must be \"fixed\""),
    ({"feeder_mw": 50}, "renamed 'block_mw'"),
    ({"q_limits": "yes"}, "q_limits must be true or false"),
    ({"emergency_rating": "A"}, "emergency_rating must be B or C"),
])
def test_scenario_errors(patch, msg):
    if msg is None:
        scenario_from_dict(_doc(**patch), "s.toml")
        return
    with pytest.raises(ScenarioError, match=msg):
        scenario_from_dict(_doc(**patch), "s.toml")


@pytest.mark.parametrize("dc, msg", [
    ({"name": "x", "zone": "Coast", "mw": -5}, "mw must be >= 0"),
    ({"name": "x", "zone": "Coast", "state": "TX", "mw": 5}, "exactly one of buses, zone, state, area"),
    ({"name": "x", "zone": "Coast", "mw": 5, "flexible_share": 0.6, "backup_share": 0.6}, "more than the site"),
    ({"name": "x", "buses": [1001, 1001], "mw": 5}, "twice"),
    ({"name": "x", "zone": "Coast", "mw": 5, "load_shape": [1.0] * 12}, "24 hourly multipliers"),
])
def test_datacenter_errors(dc, msg):
    with pytest.raises(ScenarioError, match=msg):
        scenario_from_dict({**WINTER, "datacenter": [dc]}, "s.toml")


@pytest.mark.parametrize("study, dc, msg", [
    ({"footprint": "MISO"}, None, "unknown footprint 'MISO'"),
    ({"zone_shares": {"Coast": 0.5, "East": 0.4, "Far West": 0.0, "North": 0.0, "North Central": 0.0, "South": 0.0,
                      "South Central": 0.0, "West": 0.0}}, None, "the shares add up to 0.9000, not 1"),
    ({"zone_shares": {"Coast": 1.0}}, None, "no share for footprint zone 'East'"),
    ({"load_shape": {"Coast": [1.0] * 24}}, None, "no shape for footprint zone"),
    ({"block_mw": 5000}, None, "block_mw = 5000 MW is larger than the rotatable load of zone 'Far West'"),
    ({"emergency_rating": "B"}, None, "has no rate B on any branch"),
    ({"unavailable_mw": 1e6}, None, "more than the headroom"),
    ({}, {"name": "x", "buses": [99999999], "mw": 5}, "unknown bus 99999999"),
    ({}, {"name": "x", "zone": "Atlantis", "mw": 5}, "unknown zone 'Atlantis'"),
])
def test_bad_input_needing_the_case_is_one_line_exit_2(tmp_path, study, dc, msg):
    doc = _doc(**study)
    if dc is not None:
        doc["datacenter"] = [dc]
    p = tmp_path / "s.toml"
    p.write_text(_toml(doc))
    line = assert_one_line_error(cli("study", str(p), "-q", "--out", str(tmp_path / "o")))
    assert msg in line, line


def test_user_share_csv_and_its_errors(tmp_path, case2000, zones2000):
    fz = sorted(set(zones2000.zone))
    good = tmp_path / "shares.csv"
    good.write_text("zone,share\n" + "".join(f"{z},{1 / 8}\n" for z in fz))
    s = zone_shares(str(good), "activsg2000", fz)
    np.testing.assert_allclose(s.to_numpy(), 1 / 8)
    bad = tmp_path / "bad.csv"
    bad.write_text("zone,share\n" + "".join(f"{z},0.1\n" for z in fz))
    with pytest.raises(ScenarioError, match="add up to 0.8000, not 1"):
        zone_shares(str(bad), "activsg2000", fz)
    bad.write_text("zone,fraction\nCoast,1\n")
    with pytest.raises(ScenarioError, match="needs columns zone, share"):
        zone_shares(str(bad), "activsg2000", fz)
    with pytest.raises(ScenarioError, match="no such file"):
        zone_shares(str(tmp_path / "none.csv"), "activsg2000", fz)
    # the shipped prior-peak table: base-case load by zone over the footprint's (hand: activsg2000.csv)
    shipped = zone_shares("", "activsg2000", fz)
    table = pd.read_csv(gridflow.data.data_path("cases", "zones", "activsg2000.csv")).set_index("zone")["load_mw"]
    np.testing.assert_allclose(shipped.to_numpy(), (table / table.sum()).reindex(fz).to_numpy(), rtol=1e-6)


def test_toml_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[case\n")
    assert "not valid TOML" in assert_one_line_error(cli("study", str(bad)))
    bad.write_text('[case]\nsource = "case9"\n[study]\npolicy = "network"\n')
    assert "was removed" in assert_one_line_error(cli("study", str(bad), "--out", str(tmp_path / "o")))


def _toml(doc) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    out = ["[case]"] + [f"{k} = {val(v)}" for k, v in doc["case"].items()]
    for dc in doc["datacenter"]:
        out += ["[[datacenter]]"] + [f"{k} = {val(v)}" for k, v in dc.items()]
    out += ["[study]"] + [f"{k} = {val(v)}" for k, v in doc["study"].items()]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ building blocks

def test_shave_hand_computed():
    need = np.array([100.0, 300.0, 500.0, 200.0])
    np.testing.assert_allclose(shave(need, np.full(4, 250.0), None, 1.0), [100, 250, 250, 200])
    # 300 MWh with a 250 MW cap: the peaks are shaved to one level L: min(250, max(need - L, 0)) sums to 300
    # L = 200: 0 + 100 + 250 (cap; 500 - 200 = 300) + 0 = 350 > 300; L = 225: 0 + 75 + 250 + 0 = 325;
    # L = 250: 0 + 50 + 250 + 0 = 300 -> exactly
    np.testing.assert_allclose(shave(need, np.full(4, 250.0), 300.0, 1.0), [0, 50, 250, 0], atol=1e-6)
    # half-hour intervals: the same MWh buys twice the MW-intervals
    np.testing.assert_allclose(shave(need, np.full(4, 250.0), 150.0, 0.5), [0, 50, 250, 0], atol=1e-6)
    np.testing.assert_allclose(shave(need, np.full(4, 250.0), 0.0, 1.0), 0.0)


def test_climb_takes_rungs_in_order_and_leaves_firm_load_last():
    need = np.array([-50.0, 400.0, 900.0])
    rungs = [Rung("demand_response", np.full(3, 300.0)), Rung("voltage_reduction", np.full(3, 100.0)),
             Rung("dc_flexible", np.full(3, 200.0), 200.0, 0)]
    c = climb(need, rungs, 1.0)
    np.testing.assert_allclose(c.used_mw[0], [0, 300, 300])
    np.testing.assert_allclose(c.used_mw[1], [0, 100, 100])
    np.testing.assert_allclose(c.used_mw[2], [0, 0, 200])  # 200 MWh go to the worst hour
    np.testing.assert_allclose(c.firm_mw, [0, 0, 300])
    t = c.table(["a", "b", "c"])
    assert list(t["level"].unique()) == ["demand response", "voltage reduction", "datacenter flexible", "firm load"]


def test_policies_order_the_ladder():
    common = [Rung("demand_response", np.ones(1)), Rung("voltage_reduction", np.ones(1)),
              Rung("emergency_import", np.ones(1))]
    big = DatacenterRungs(True, Rung("dc_flexible", np.ones(1), group=0), Rung("dc_backup", np.ones(1), group=0),
                          Rung("dc_curtailed", np.ones(1), group=0))
    small = DatacenterRungs(False, Rung("dc_flexible", np.ones(1), group=1), Rung("dc_backup", np.ones(1), group=1),
                            Rung("dc_curtailed", np.ones(1), group=1))
    pr = [(r.kind, r.group) for r in get_policy("pro-rata").ladder(common, [big, small])]
    assert pr == [("demand_response", None), ("voltage_reduction", None), ("emergency_import", None),
                  ("dc_flexible", 0), ("dc_flexible", 1), ("dc_backup", 0), ("dc_backup", 1)]
    llf = [(r.kind, r.group) for r in get_policy("large-load-first").ladder(common, [big, small])]
    assert llf == [("dc_flexible", 0), ("dc_backup", 0), ("dc_curtailed", 0), ("demand_response", None),
                   ("voltage_reduction", None), ("emergency_import", None), ("dc_flexible", 1), ("dc_backup", 1)]
    with pytest.raises(ScenarioError, match="was removed"):
        get_policy("network")


def test_blocks_keep_critical_and_ufls_load_out(case2000, zones2000):
    fp = footprint_of("ERCOT", case2000, zones2000)
    crit = np.zeros(case2000.nb, bool)
    crit[np.flatnonzero(case2000.bus.pd > 0)[0]] = True
    rot = rotatable_mw(case2000, zones2000, fp.bus, fp.zones, critical_percent=10, ufls_percent={"*": 25, "Coast": 30},
                       critical_buses=crit)
    p = np.maximum(case2000.bus.pd * 100, 0)
    coast = zones2000.zone == "Coast"
    np.testing.assert_allclose(rot[coast & ~crit], p[coast & ~crit] * 0.60)
    np.testing.assert_allclose(rot[~coast & ~crit], p[~coast & ~crit] * 0.65)
    assert rot[crit].sum() == 0
    b = feeder_blocks(case2000, zones2000, rot, 15.0)
    assert (b["mw"] <= 15.0 + 1e-9).all() and (b["mw"] > 0).all()
    np.testing.assert_allclose(b.groupby("bus_index")["mw"].sum().to_numpy(), rot[rot > 1e-9])
    # round robin within a zone: the first block of every bus comes before any second block
    first = b[b["zone"] == "Coast"]["block"].str.endswith("-1").to_numpy()
    assert first[: first.sum()].all()
    with pytest.raises(ScenarioError, match="larger than the rotatable load of zone 'Far West'"):
        check_blocks(rot, zones2000.zone, fp.zones, 2000.0)


def test_footprint_and_derate(case2000, zones2000):
    fp = footprint_of("", case2000, zones2000, np.array([0]))
    assert fp.name == "ERCOT" and fp.bus.all()
    g = case2000.gen
    head = np.where(fp.gen, g.pmax - g.pg, 0).sum() * 100
    c2, fp2 = derate(case2000, fp, 1000.0)
    assert fp2.capacity_mw == pytest.approx(fp.capacity_mw - 1000.0)
    assert (c2.gen.pmax >= c2.gen.pg - 1e-12).all()  # the base dispatch stands
    with pytest.raises(ScenarioError, match="more than the headroom"):
        derate(case2000, fp, head + 1.0)
    with pytest.raises(ScenarioError, match="unknown footprint 'PJM'"):
        footprint_of("PJM", case2000, zones2000)


def test_day_windows_and_shapes(zones2000):
    s = builtin_shape("summer-peak")
    assert s.shape == (24,) and s.max() == 1.0 and np.argmax(s) == 15
    d = study_day(4, 30, s * 1000)
    assert d.labels[0] == "13:00" and d.T == 8  # the 4 hours with the most load: 13:00-17:00
    d = study_day((5, 7), 20, s)
    assert d.labels == ["05:00", "05:20", "05:40", "06:00", "06:20", "06:40"]
    fp_bus = np.ones(len(zones2000.zone), bool)
    m = bus_shapes({"Coast": [2.0] * 24, "*": [0.5] * 24}, zones2000.zone, fp_bus, sorted(set(zones2000.zone)))
    assert (m[:, zones2000.zone == "Coast"] == 2.0).all() and (m[:, zones2000.zone == "East"] == 0.5).all()


def test_placement_said_aloud_and_candidate_buses(case2000, zones2000):
    pl = place_one(Datacenter(name="a", zone="Coast", mw=1000.0), case2000, zones2000)
    assert pl.rule == "highest-kv" and len(pl.bus) >= MIN_BUSES
    line = pl.describe(case2000, 1000.0)
    assert line.startswith(f"a: 1,000 MW on {len(pl.bus)} buses at 115 kV") and "in proportion to their load" in line
    dc = place([Datacenter(name="a", zone="Coast", mw=1000.0, power_factor=0.95, flexible_share=0.2)], case2000,
               zones2000)
    np.testing.assert_allclose(dc.q_mvar[pl.bus], dc.p_mw[pl.bus] * np.tan(np.arccos(0.95)))
    df = candidate_buses(case2000, zones2000, zone="Coast", kv_min=230, name="houston")
    assert len(df) and (df["kv"] >= 230).all() and df["name"].str.contains("HOUSTON").all()
    assert (df["kv"].diff().fillna(0) <= 0).all()
    r = cli("buses", "case_ACTIVSg2000", "--zone", "Coast", "--kv-min", "230", "--top", "3")
    assert r.exit_code == 0 and "buses match" in r.output and len(r.output.splitlines()) >= 5
    assert "unknown zone 'Mars'" in assert_one_line_error(cli("buses", "case_ACTIVSg2000", "--zone", "Mars"))


def test_bisect_limit_on_a_known_threshold():
    """Clean up to 3,210 MW; no solution above 5,000 MW: the limit is found to the tolerance, the trial above it
    binds, hints and known trials are reused."""
    calls = []

    def evaluate(x):
        calls.append(x)
        from gridflow.study.screening import VIOLATION_COLUMNS, Screen

        v = pd.DataFrame([["thermal", "branch 1", 1, 2, "a - b", 230.0, "Z", 100.0, 50.0, 101.0, np.nan, 9.0,
                           True, "new overload", True]], columns=VIOLATION_COLUMNS) if x > 3210 else \
            pd.DataFrame(columns=VIOLATION_COLUMNS).astype({"attributed": bool})
        return Trial(mw=x, screen=Screen(x <= 5000, v, 0.0, 1.0), vm_min_site_pu=1.0)

    r = bisect_limit(evaluate, 10_000.0, tol_mw=50.0)
    assert 3210 - 50 <= r.limit_mw <= 3210 and 3210 < r.above.mw <= r.limit_mw + 50
    assert "branch 1 a - b (230 kV, Z): 101.0 %" in r.binding()
    n = len(calls)
    r2 = bisect_limit(evaluate, 10_000.0, tol_mw=50.0, hints=[3200.0])
    assert r2.limit_mw >= 3200 and len(calls) - n <= 3  # the hint settles it in a few solves
    r3 = bisect_limit(evaluate, 3000.0, tol_mw=50.0)
    assert r3.limit_mw == 3000.0 and r3.above is None and r3.binding() == ""


def test_seam_holds_interchange_and_keeps_every_generator_within_limits(case2000, zones2000):
    """Only the responders move; the slack carries at most tol_mw beyond its dispatch; every online generator is
    within [Pmin, Pmax] and [Qmin, Qmax]; the ones held at a Q limit sit at it with their voltage on the
    consistent side (at Qmax below the setpoint, at Qmin above it, within RELEASE_PU)."""
    c = case2000
    resp = c.gen.status & (zones2000.zone[c.gen.bus] != "Coast")
    pd = c.bus.pd * 1.03
    pt = acsolve.solve_point(c.replace(bus={"pd": pd, "qd": c.bus.qd * 1.03}), responders=resp)
    assert pt.converged and pt.unmet_mw == 0
    g, base = c.gen, c.base_mva
    p = pt.result.gen["p_mw"].to_numpy()
    q = pt.result.gen["q_mvar"].to_numpy()
    on = g.status
    held = ~resp & on & (c.bus.type[g.bus] != 3)
    np.testing.assert_allclose(p[held], g.pg[held] * base, atol=1e-9)  # the others hold their dispatch
    assert (p[on] <= g.pmax[on] * base + 1e-6).all() and (p[on] >= g.pmin[on] * base - 1e-6).all()
    assert (q[on] <= g.qmax[on] * base + 1e-4).all() and (q[on] >= g.qmin[on] * base - 1e-4).all()
    assert abs(p.sum() - pt.pg_mw[on].sum()) <= acsolve.TOL_MW
    vm = np.abs(pt.V)
    h = pt.q_held.held
    assert h.any()
    free = g.qmax - g.qmin > 1e-9  # a generator with Qmin = Qmax never regulates: no side to check
    at_max = h & free & (np.abs(pt.q_held.q_pu - g.qmax) < 1e-9)
    at_min = h & free & (np.abs(pt.q_held.q_pu - g.qmin) < 1e-9)
    assert (vm[g.bus[at_max]] <= g.vg[at_max] + acsolve.RELEASE_PU + 1e-9).all()
    assert (vm[g.bus[at_min]] >= g.vg[at_min] - acsolve.RELEASE_PU - 1e-9).all()
    # the warm start from this point gives the same solution (to 1e-4 pu: the responders' dispatch is re-found
    # from a new loss estimate and may differ by up to tol_mw)
    pt2 = acsolve.solve_point(pt.case, responders=resp, warm=pt)
    np.testing.assert_allclose(np.abs(pt2.V), vm, atol=1e-4)


def test_solve_points_is_solve_point_in_a_warm_chain(case2000):
    c = case2000
    k = np.array([0.97, 1.0, 1.02])
    pts = acsolve.solve_points(c, np.outer(k, c.bus.pd * 100), np.outer(k, c.bus.qd * 100))
    assert [p.converged for p in pts] == [True] * 3
    one = acsolve.solve_point(c.replace(bus={"pd": c.bus.pd * 1.02, "qd": c.bus.qd * 1.02}))
    # the same operating point, but the Q-limit switching may settle on another set of held generators along
    # another path (both consistent): measured up to 0.003 pu apart on ACTIVSg2000
    np.testing.assert_allclose(np.abs(pts[2].V), np.abs(one.V), atol=5e-3)
    assert pts[2].losses_mw > pts[0].losses_mw
    with pytest.raises(gridflow.GridflowError, match="must both be"):
        acsolve.solve_points(c, np.ones((2, c.nb)), np.ones((3, c.nb)))


# ------------------------------------------------------------------ Texas winter peak: hand-computed checks

@pytest.fixture(scope="module")
def winter(tmp_path_factory):
    res = run_study(scenario_from_dict(WINTER))
    out = tmp_path_factory.mktemp("winter")
    from gridflow.study.report import write_study

    files = write_study(res, out)
    return res, out, files


def test_winter_ladder_order_hand_computed(winter):
    """Every interval: demand response, voltage reduction, emergency import, the datacenter's flexible share,
    its backup, then firm load, each min(its room, the need left) (hour limits are a whole day here)."""
    res, out, _ = winter
    st = res.steps[0]
    su = res.setup
    lad = pd.read_csv(out / "ladder.csv")
    need = st.climb.need_mw
    assert need.max() > 1000  # a real shortfall
    fp_firm = su.footprint_firm_mw()
    served = st.plan.dc_served_mw.sum(axis=0)
    rooms = [("demand response", np.full(su.day.T, 300.0)), ("voltage reduction", 0.01 * fp_firm),
             ("emergency import", np.zeros(su.day.T)), ("datacenter flexible", 0.2 * served),
             ("datacenter backup", 0.3 * served)]
    for t, lab in enumerate(su.day.labels):
        left = max(need[t], 0.0)
        got = lad[lad["interval"] == lab].set_index("level")["mw"]
        for level, room in rooms:
            want = min(room[t], left)
            assert got.get(level, 0.0) == pytest.approx(want, abs=1e-6), (lab, level)
            left -= want
        assert got.get("firm load", 0.0) == pytest.approx(left, abs=1e-6), lab
    assert lad["level"].iloc[0] == "demand response"
    # the need: footprint firm load + datacenters + overhead + reserve - capacity (capacity by hand); ERCOT is
    # the whole case, so the overhead is the losses: generation - demand in the verified solutions
    np.testing.assert_allclose(st.overhead_mw, [c.losses_mw for c in st.verification.checks], atol=LOSS_TOL)
    g, base = su.case.gen, su.case.base_mva
    cap = float(np.sum(gridflow.load_case("case_ACTIVSg2000").gen.pmax[g.status]) * base) - 12000.0
    assert su.footprint.capacity_mw == pytest.approx(cap)
    np.testing.assert_allclose(need, fp_firm + served + st.overhead_mw + 2000.0 - cap, atol=1e-6)


def test_winter_obligations_follow_the_prior_peak_shares(winter):
    res, out, _ = winter
    st = res.steps[0]
    table = pd.read_csv(gridflow.data.data_path("cases", "zones", "activsg2000.csv")).set_index("zone")["load_mw"]
    share = table / table.sum()  # hand: each zone's base-case load over ERCOT's
    ob = st.rotation.obligations_mw
    firm = st.climb.firm_mw
    assert firm.max() > 100
    for z in ob.columns:
        np.testing.assert_allclose(ob[z].to_numpy(), firm * share[z], rtol=1e-5)
    z = pd.read_csv(out / "zones.csv")
    np.testing.assert_allclose(z.set_index("zone")["share"].reindex(share.index), share, rtol=1e-5)
    # each zone sheds at least its obligation (blocks of 10 MW overshoot by less than a block), never unserved
    rel = st.rotation.relief_mw
    assert ((rel - ob) >= -1e-6).all().all() and ((rel - ob) < 10.0 + 1e-6).all().all()
    assert st.unserved_mw.max() == 0


def test_winter_cap_and_schedule(winter):
    res, out, _ = winter
    sched = pd.read_csv(out / "schedule.csv")
    assert len(sched) and sched["dark"].any()
    for (_, _), g in sched.groupby(["zone", "block"]):
        d = g.sort_values("interval")["dark"].to_numpy()
        run = best = 0
        for x in d:
            run = run + 1 if x else 0
            best = max(best, run)
        assert best <= 1  # max_hours_dark = 1 h with 1-h intervals: never two in a row
    bs = res.steps[0].rotation.block_stats
    assert bs["longest_outage_hours"].max() <= 1.0 + 1e-9
    per_zone = bs.groupby("zone")["intervals_dark"]
    assert ((per_zone.max() - per_zone.min()) <= 1).all()  # dark time spread within one interval


def test_winter_oe417_one_definition(winter):
    res, out, _ = winter
    st = res.steps[0]
    firm_max = st.firm_shed_mw.max()
    assert (firm_max >= 100.0) == st.oe417 is True
    s = json.loads((out / "summary.json").read_text())["steps"][0]
    assert s["oe417"] is True and s["firm_shed_mw_max"] == pytest.approx(firm_max)
    z = pd.read_csv(out / "zones.csv")
    ob = st.rotation.relief_mw.max()
    assert set(z.loc[z["oe417"], "zone"]) == set(ob[ob >= 100.0].index) == set(s["zones_oe417"])
    # datacenter curtailment and backup never count: a step with no firm shed is not reportable
    res2 = run_study(scenario_from_dict(_doc(unavailable_mw=0.0)), sensitivity=False)
    assert res2.steps[0].firm_shed_mw.max(initial=0) == 0 and not res2.steps[0].oe417


def test_winter_every_interval_verified_and_files(winter):
    res, out, files = winter
    st = res.steps[0]
    assert st.verified and st.verification.n_ok == res.setup.day.T
    names = {p.name for p in files}
    for n in ("summary.json", "zones.csv", "ladder.csv", "schedule.csv", "shed_by_bus.csv", "bus_demand.csv",
              "gen_dispatch.csv", "violations.csv", "limits.csv", "pv_curve.csv", "firm_shed_heatmap.png",
              "ladder.png", "shed_by_zone.png", "pv_curve.png"):
        assert n in names and (out / n).stat().st_size > 0, n
    assert list(pd.read_csv(out / "gen_dispatch.csv").columns) == ["step", "interval", "gen", "p_mw", "q_mvar"]
    assert list(pd.read_csv(out / "ladder.csv").columns) == ["step", "interval", "level", "mw"]
    v = pd.read_csv(out / "violations.csv")
    for col in ("step_mw", "interval", "contingency", "kind", "element", "from_bus", "to_bus", "kv", "rating_mva",
                "loading_base_percent", "loading_percent", "vm_pu", "dfax_percent", "attributed"):
        assert col in v.columns
    assert (v["contingency"] == "base").all()
    s = json.loads((out / "summary.json").read_text())
    assert s["q_limits"] is True and s["steps"][0]["deliverable_mw_n1"] is None
    for k in ("served_datacenter_mw", "deliverable_mw_n0", "binding", "curtailed_datacenter_mw", "backup_mw"):
        assert k in s["steps"][0]


def _pypower_resolve(case, pg_mw, qg_mvar, held, branch_out=(), V0=None):
    """``case`` (its loads) re-solved by PYPOWER's own Newton (makeYbus, makeSbus, newtonpf) from a flat start
    (or from the voltages ``V0`` (nb,), with the generator setpoints),
    generators at ``pg_mw``, those gridflow held at a Q limit (``held``, bool (ng,)) as PQ buses at ``qg_mvar``,
    the others at their setpoints; ``branch_out``: branch rows out of service. Returns (converged, V (nb,),
    Ybus, internal ppc)."""
    import contextlib
    import io
    import warnings

    from pypower.bustypes import bustypes
    from pypower.ext2int import ext2int
    from pypower.idx_brch import BR_STATUS
    from pypower.idx_bus import BUS_TYPE, PQ, VA, VM
    from pypower.idx_gen import GEN_BUS, GEN_STATUS, QG, VG
    from pypower.makeSbus import makeSbus
    from pypower.makeYbus import makeYbus
    from pypower.newtonpf import newtonpf
    from pypower.ppoption import ppoption

    from gridflow.validate import to_ppc

    g, base = case.gen, case.base_mva
    ppc = to_ppc(case.replace(gen={"pg": np.asarray(pg_mw) / base}))
    ppc["branch"][list(branch_out), BR_STATUS] = 0
    held_bus = np.unique(g.bus[held])
    ppc["bus"][held_bus, BUS_TYPE] = PQ
    ppc["bus"][:, VM], ppc["bus"][:, VA] = 1.0, 0.0
    if V0 is not None:
        ppc["bus"][:, VM], ppc["bus"][:, VA] = np.abs(V0), np.rad2deg(np.angle(V0))
    at = np.isin(g.bus, held_bus) & g.status
    ppc["gen"][at, QG] = np.asarray(qg_mvar)[at]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ppi = ext2int(ppc)
        Ybus, _, _ = makeYbus(ppi["baseMVA"], ppi["bus"], ppi["branch"])
        ref, pv, pq = bustypes(ppi["bus"], ppi["gen"])
        on = ppi["gen"][:, GEN_STATUS] > 0
        V0 = ppi["bus"][:, VM] * np.exp(1j * np.deg2rad(ppi["bus"][:, VA]))
        gb = ppi["gen"][on, GEN_BUS].astype(int)
        V0[gb] = ppi["gen"][on, VG] * V0[gb] / np.abs(V0[gb])
        Sbus = makeSbus(ppi["baseMVA"], ppi["bus"], ppi["gen"])
        V, ok, _ = newtonpf(Ybus, Sbus, V0, ref, pv, pq, ppoption(VERBOSE=0, PF_TOL=1e-10, PF_MAX_IT=30))
    # the rows of ext2int follow the case's bus order here (consecutive numbering is kept in the same order)
    return bool(ok), V, Ybus, ppi


def _check_intervals_in_pypower(su, st, out):
    """Every verified interval of step ``st`` re-solved by PYPOWER (:func:`_pypower_resolve`, started from the
    hour's reference without datacenters) from the files in ``out``: the same voltages to 1e-4 pu, and every
    generator within its P and Q limits (the held ones at a limit) in PYPOWER's solution."""
    from pypower.idx_bus import PD, QD

    demand = pd.read_csv(out / "bus_demand.csv")
    disp = pd.read_csv(out / "gen_dispatch.csv")
    if "step" in demand.columns:
        demand = demand[demand["step"] == st.datacenter_mw]
        disp = disp[disp["step"] == st.datacenter_mw]
    case = su.case
    g, base = case.gen, case.base_mva
    for t, lab in enumerate(su.day.labels):
        pt = st.verification.points[t]
        d = demand[demand["interval"] == lab].set_index("bus")
        pg = disp[disp["interval"] == lab]["p_mw"].to_numpy()
        qg = disp[disp["interval"] == lab]["q_mvar"].to_numpy()
        served = case.replace(bus={"pd": d["p_mw"].reindex(case.bus.number).fillna(0).to_numpy() / base,
                                   "qd": d["q_mvar"].reindex(case.bus.number).fillna(0).to_numpy() / base})
        # from the hour's reference voltages (no datacenters): PYPOWER does not converge from a flat start on 25k
        ok, V, Ybus, ppi = _pypower_resolve(served, pg, qg, pt.q_held.held, V0=su.references[t].V)
        assert ok, lab
        rows = case.bus_index(ppi["order"]["bus"]["i2e"].astype(int))  # PYPOWER's internal rows -> gridflow's
        np.testing.assert_allclose(np.abs(V), np.abs(pt.V)[rows], atol=1e-4, err_msg=lab)
        # generator outputs in PYPOWER's solution: Q from the bus injection, shared as gridflow (and MATPOWER) do
        Sinj = V * np.conj(Ybus @ V)
        Qbus = np.zeros(case.nb)
        Pbus = np.zeros(case.nb)
        Qbus[rows] = Sinj.imag * base + ppi["bus"][:, QD]
        Pbus[rows] = Sinj.real * base + ppi["bus"][:, PD]
        for b in np.unique(g.bus[g.status]):
            at = np.flatnonzero(g.status & (g.bus == b))
            qmin, qmax = g.qmin[at].sum() * base, g.qmax[at].sum() * base
            assert qmin - 1e-3 <= Qbus[b] <= qmax + 1e-3, (lab, b)
        for b in np.flatnonzero(case.bus.type == 3):
            at = np.flatnonzero(g.status & (g.bus == b))
            assert g.pmin[at].sum() * base - 1e-3 <= Pbus[b] <= g.pmax[at].sum() * base + 1e-3
        assert (pg[g.status] <= g.pmax[g.status] * base + 1e-6).all()
        assert (pg[g.status] >= g.pmin[g.status] * base - 1e-6).all()


def test_winter_solutions_resolved_independently_in_pypower(winter):
    res, out, _ = winter
    _check_intervals_in_pypower(res.setup, res.steps[0], out)


# ------------------------------------------------------------------ N-1 (TPL-001 P1) on ACTIVSg2000

N1 = {"case": {"source": "case_ACTIVSg2000", "zones": "activsg2000"},
      "datacenter": [{"name": "Houston", "zone": "Coast", "mw": 3000}],
      "study": {"footprint": "ERCOT", "load_shape": "summer-peak", "hours": [16, 18], "contingencies": "auto"}}


@pytest.fixture(scope="module")
def houston_n1():
    from gridflow.study.run import find_limits, prepare

    sc = scenario_from_dict(N1, "n1.toml")
    setup = prepare(sc)
    (lim,) = find_limits(setup, [3000.0])
    return setup, lim


def test_n1_limit_is_below_n0_and_names_its_contingency(houston_n1):
    setup, lim = houston_n1
    assert "auto" not in setup.contingencies.source and len(setup.contingencies) > 1000
    assert lim.deliverable_mw_n1 is not None and 0 < lim.deliverable_mw_n1 < lim.deliverable_mw_n0
    assert lim.deliverable_mw == lim.deliverable_mw_n1
    assert "after the outage of" in lim.binding


def test_n1_limit_is_clean_on_every_contingency_not_only_the_screened(houston_n1):
    """Screening completeness: at the reported N-1 limit, every one of the study's contingencies solved in AC
    (not only those the DC screen picked) shows no attributed violation; the trial above it does."""
    setup, lim = houston_n1
    judge = setup.n1
    ref = setup.references[setup.peak]
    at = lim.n1.at_limit
    every = np.arange(len(setup.contingencies))
    sc = judge.judge(at.point, ref, at.mw, ks=every)
    assert sc.converged and not sc.violations["attributed"].any(), sc.attributed.head()
    above = judge.judge(lim.n1.above.point, ref, lim.n1.above.mw, ks=every)
    assert above.violations["attributed"].any()


def test_n1_binding_contingency_resolved_independently_in_pypower(houston_n1):
    """The binding contingency at the failing trial re-solved by PYPOWER with gridflow's post-contingency
    dispatch and held set: the same voltages to 1e-4 pu and the same violation."""
    setup, lim = houston_n1
    judge = setup.n1
    trial = lim.n1.above
    row = trial.screen.attributed.iloc[0]
    k = next(i for i, o in enumerate(setup.contingencies.outages) if o.label == row["contingency"])
    o = setup.contingencies.outages[k]
    assert not o.gens
    judge._last.pop(k, None)
    res = judge._solve(trial.point, [k])
    assert res.converged[0]
    case = trial.point.case
    ok, V, _, _ = _pypower_resolve(case, res.gen_p_mw[0], res.gen_q_mvar[0], res.q_limited[0], branch_out=o.branches)
    assert ok
    np.testing.assert_allclose(np.abs(V), res.vm_pu[0], atol=1e-4)
    if row["kind"] == "voltage":
        b = int(np.flatnonzero(case.bus.number == row["from_bus"])[0])
        assert abs(V[b]) < case.bus.vmin[b] or abs(V[b]) > case.bus.vmax[b]
        np.testing.assert_allclose(abs(V[b]), row["vm_pu"], atol=1e-4)


def test_winter_large_load_first_curtails_the_datacenter_before_demand_response():
    """Large-load-first with the 1 GW spread over 217 buses of at most 16 MW: no site reaches 75 MW, so the
    ladder is pro-rata's; with large_load_min_mw = 10 the big sites go first (before demand response)."""
    a = run_study(scenario_from_dict(_doc(policy="large-load-first")), sensitivity=False).steps[0]
    b = run_study(scenario_from_dict(_doc(policy="large-load-first", large_load_min_mw=10)), sensitivity=False).steps[0]
    t = int(np.argmax(a.climb.need_mw))
    assert a.climb.by_kind("dc_curtailed")[t] == 0
    assert b.climb.by_kind("dc_curtailed")[t] > 0
    order = [r.kind for r in b.climb.rungs]
    assert order.index("dc_curtailed") < order.index("demand_response")
    # the curtailment comes before demand response: less demand response is needed
    assert b.climb.by_kind("demand_response")[t] <= a.climb.by_kind("demand_response")[t]


# ------------------------------------------------------------------ the default study

@pytest.mark.slow
def test_default_study_tells_the_whole_story(tmp_path):
    """The README's main job: rolling blackouts whose zone obligations follow the prior-peak shares (1 % per
    zone), no block dark past the cap, every interval AC-verified, a binding constraint named. N-0 only here
    (CI time: the N-1 path is tested on ACTIVSg2000; the README's main job runs the default with N-1)."""
    from gridflow.study.report import write_study

    res = run_study(default_scenario().with_options(contingencies="none"), sensitivity=False)
    write_study(res, tmp_path, plots=False)
    shares = pd.read_csv(gridflow.data.data_path("cases", "zones", "activsg25k_shares.csv"), comment="#")
    pjm = shares[shares["rto"] == "PJM"].set_index("zone")["share"]
    assert any(st.firm_shed_mw.max() > 100 for st in res.steps)
    for st in res.steps:
        assert st.verified, st.verification.failures()
        ob = st.rotation.obligations_mw
        firm = st.climb.firm_mw
        for z in pjm.index:
            got = np.divide(ob[z].to_numpy(), firm, out=np.full(len(firm), pjm[z]), where=firm > 1e-6)
            np.testing.assert_allclose(got, pjm[z], rtol=0.01)
        bs = st.rotation.block_stats
        if len(bs):
            assert bs["longest_outage_hours"].max() <= res.scenario.study.max_hours_dark + 1e-9
    sched = pd.read_csv(tmp_path / "schedule.csv")
    assert len(sched) and sched["dark"].any()
    for st in res.steps:  # every reported solution, re-solved by PYPOWER
        _check_intervals_in_pypower(res.setup, st, tmp_path)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert any(x["binding"] and not x["binding"].startswith("none") for x in s["steps"])


def test_hosting_map_limits_hold_on_every_contingency(houston_n1):
    """Per-bus hosting (hosting_map): N-1 <= N-0, the binding contingency named; at the N-1 limit every
    contingency of the study (not only the screened ones) is clean at that bus, and just above it the binding
    contingency is not."""
    from gridflow.study.hosting import HOSTING_COLUMNS, evaluate_points, hosting_map

    setup, _ = houston_n1
    h = hosting_map(setup, [7003], max_mw=1500.0)
    assert list(h.columns) == HOSTING_COLUMNS and len(h) == 1
    r = h.iloc[0]
    assert r["kv"] == 230.0 and r["zone"] == "Coast"
    assert 0 < r["limit_mw_n1"] < r["limit_mw_n0"] <= 1500.0
    assert r["binding_contingency"].startswith("branch ") and "after the outage of" in r["binding"]
    b = int(setup.case.bus_index([7003])[0])
    tol = setup.opts.limit_tolerance_mw
    pts = evaluate_points(setup, b, [r["limit_mw_n1"], r["limit_mw_n1"] + tol], setup.peak)
    assert len(pts) == 2 * (len(setup.contingencies) + 1)
    at = pts[pts["mw"] == r["limit_mw_n1"]]
    assert at["converged"].all() and at["deliverable"].all(), at[~at["deliverable"]].head()
    above = pts[pts["mw"] > r["limit_mw_n1"]].set_index("contingency")
    assert not above.loc[r["binding_contingency"], "deliverable"]


def test_hosting_buses_unknown_is_one_line(houston_n1):
    from gridflow.study.hosting import hosting_map

    setup, _ = houston_n1
    with pytest.raises(ScenarioError, match="hosting buses: .*999999"):
        hosting_map(setup, [999999])


@pytest.mark.slow
def test_default_nova_n1_limit_holds_and_its_binding_contingency_resolves_in_pypower():
    """The default study's N-1 headline on ACTIVSg25k (Northern Virginia, 8 GW requested): N-1 below N-0; at
    the limit, every contingency screened at the failing trial above it is clean; the binding contingency at
    the failing trial re-solved by PYPOWER with gridflow's post-contingency dispatch and held set gives the same
    voltages (1e-4 pu) and the same overload. The hint only orders the bisection's trials."""
    import dataclasses

    from gridflow.study.run import find_limits, prepare

    sc = default_scenario()
    sc = dataclasses.replace(sc, datacenters=sc.datacenters[:1])
    setup = prepare(sc)
    (lim,) = find_limits(setup, [8000.0], hints={"Northern Virginia N-1": (4831.25,)})
    assert lim.deliverable_mw_n1 < lim.deliverable_mw_n0
    judge, ref = setup.n1, setup.references[setup.peak]
    at, above = lim.n1.at_limit, lim.n1.above
    ks = judge.screened(above.point, ref, above.mw)
    assert judge.judge(at.point, ref, at.mw, ks=ks).clean
    row = above.screen.attributed.iloc[0]
    k = next(i for i, o in enumerate(setup.contingencies.outages) if o.label == row["contingency"])
    o = setup.contingencies.outages[k]
    judge._last.pop(k, None)
    res = judge._solve(above.point, [k])
    assert res.converged[0]
    case = above.point.case
    # from the reference's voltages (no datacenter, no outage): PYPOWER does not converge from a flat start here
    ok, V, _, ppi = _pypower_resolve(case, res.gen_p_mw[0], res.gen_q_mvar[0], res.q_limited[0],
                                     branch_out=o.branches, V0=ref.V)
    assert ok
    rows = case.bus_index(ppi["order"]["bus"]["i2e"].astype(int))
    np.testing.assert_allclose(np.abs(V), res.vm_pu[0][rows], atol=1e-4)
    assert row["kind"] == "thermal"
    from pypower.makeYbus import makeYbus

    _, Yf, Yt = makeYbus(ppi["baseMVA"], ppi["bus"], ppi["branch"])
    j = int(row["element"].split()[1])
    (ji,) = np.flatnonzero(ppi["order"]["branch"]["status"]["on"] == j)  # its row among PYPOWER's branches
    ib = ppi["branch"]
    f, t = int(ib[ji, 0]), int(ib[ji, 1])
    mva = max(abs(V[f] * np.conj(Yf[ji] @ V)).item(), abs(V[t] * np.conj(Yt[ji] @ V)).item()) * ppi["baseMVA"]
    assert mva / row["rating_mva"] * 100.0 > 100.0
    np.testing.assert_allclose(mva / row["rating_mva"] * 100.0, row["loading_percent"], rtol=0.02)


def test_unknown_hosting_bus_is_refused_before_the_study_runs(tmp_path):
    doc = {**N1, "study": {**N1["study"], "hosting_map": True, "hosting_buses": [7018, 99999]}}
    with pytest.raises(ScenarioError, match="hosting_buses: .*99999"):
        from gridflow.study.run import prepare

        prepare(scenario_from_dict(doc, "h.toml"))
