"""Writers: MATPOWER .m round trips exactly; PSS/E RAW refusals. (No pypowsybl needed here.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gridflow.errors import CaseError
from gridflow.io import count_buses, load_case, matpower_data_dir, write_case
from gridflow.io.matpower import read_matpower
from gridflow.io.psse_write import write_psse
from tests.clihelp import assert_one_line_error, cli

BIG = 20000  # buses: cases above this round-trip under the slow mark


def _mcases():
    d = matpower_data_dir()
    if d is None:
        return []
    out = []
    for p in sorted(d.glob("case*.m")):
        nb = count_buses(p.stem, "matpower") or 0
        out.append(pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if nb > BIG else []))
    return out


def assert_same_case(a, b):
    assert a.base_mva == b.base_mva
    for group in ("bus", "gen", "branch"):
        for f in dataclasses.fields(getattr(a, group)):
            x, y = getattr(getattr(a, group), f.name), getattr(getattr(b, group), f.name)
            assert x.dtype == y.dtype, (group, f.name)
            if x.dtype == object:
                assert list(x) == list(y), (group, f.name)
            else:
                assert np.array_equal(x, y, equal_nan=True), (group, f.name)  # bit for bit, not a tolerance


@pytest.mark.parametrize("path", _mcases())
def test_matpower_round_trip_is_exact(path, tmp_path):
    """Every .m case gridflow reads, written and read back: the same arrays, names and numbers."""
    try:
        case = read_matpower(path)
    except CaseError:
        pytest.skip("the reader refuses this case")
    out = case.to_matpower(tmp_path / path.name)
    text = out.read_text()
    assert "mpc.bus = [" in text and "mpc.bus_name" in text or not any(case.bus.name)
    assert_same_case(case, read_matpower(out))


def test_matpower_writer_refuses_what_mpc_cannot_hold(tmp_path):
    case = load_case("case9.m")
    g = np.zeros(case.nl)
    g[3] = 0.01
    with pytest.raises(CaseError, match=r"branch 3 \(.*charging conductance g = 0.01"):
        case.replace(branch={"g": g}).to_matpower(tmp_path / "x.m")


def test_written_file_is_plain_numbers(tmp_path):
    """Plain numeric tables and no statements after them (MATPOWER and any reader read them as written)."""
    case = load_case("case9.m")
    text = case.to_matpower(tmp_path / "c9.m").read_text()
    body = text.split("mpc.bus = [", 1)[1]
    assert "sqrt" not in body and "*" not in body and "/" not in body.replace("%", "")
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    assert last.strip() in ("];", "};")


def test_psse_writer_refusals(tmp_path):
    case = load_case("case9.m")
    b = case.branch.b.copy()
    tap = case.branch.tap.copy()
    tap[0], b[0] = 1.05, 0.1
    with pytest.raises(CaseError, match="transformer .* with line charging"):
        write_psse(case.replace(branch={"tap": tap, "b": b}), tmp_path / "x.raw")
    with pytest.raises(CaseError, match="bus number 0 is outside PSS/E's 1..999997"):
        write_psse(case.replace(bus={"number": case.bus.number - 1}), tmp_path / "x.raw")
    with pytest.raises(CaseError, match="unknown output case type"):
        write_case(case, tmp_path / "x.xlsx")


def test_psse_writer_records(tmp_path):
    """The v33 layout: header, one load per loaded bus, transformers on 4 lines, circuit ids per bus pair."""
    case = load_case("case9.m")
    text = case.to_psse(tmp_path / "c9.raw").read_text().splitlines()
    assert text[0].startswith("0, 100, 33,")
    sections = [ln for ln in text if ln.startswith("0 / END OF")]
    assert len(sections) == 19 and text[-1] == "Q"
    loads = text[text.index("0 / END OF BUS DATA, BEGIN LOAD DATA") + 1:
                 text.index("0 / END OF LOAD DATA, BEGIN FIXED SHUNT DATA")]
    assert len(loads) == int(((case.bus.pd != 0) | (case.bus.qd != 0)).sum())
    assert loads[0].split(",")[5:7] == ["90", "30"]  # bus 5: 90 MW, 30 MVAr


def test_cli_convert_m_round_trip(tmp_path):
    out = tmp_path / "case30.m"
    r = cli("convert", "case30.m", str(out))
    assert r.exit_code == 0, r.output
    assert_same_case(load_case("case30.m"), read_matpower(out))
    assert_one_line_error(cli("convert", "case30.m", str(tmp_path / "x.doc")))
    assert_one_line_error(cli("convert", "case30.m", str(tmp_path / "nofolder" / "x.m")))
