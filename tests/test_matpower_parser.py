"""Our MATPOWER ``.m`` parser (gridflow.io.matpower.read_matpower) against an independent one.

The reference is ``matpowercaseframes`` (a regex-based reader pandapower's
``from_mpc`` uses). Both read the same file; after converting our Case back
to MATPOWER units (MW / MVAr / degrees, 1-based bus numbers, tap 0 = 1) the
bus, gen and branch columns of a version-2 case must be equal, and so must
the bus names.

matpowercaseframes reads one matrix row per line and cuts lines at every
``%``, so the handmade files with continuations, several rows per line and
``%`` in names are checked against the same data written plainly (read by
both parsers) and against names spelled out here.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from gridflow.errors import CaseError
from gridflow.io import matpower_data_dir
from gridflow.io.matpower import read_matpower

mcf = pytest.importorskip("matpowercaseframes")

BUS_COLS = ["BUS_I", "BUS_TYPE", "PD", "QD", "GS", "BS", "BUS_AREA", "VM", "VA", "BASE_KV", "ZONE", "VMAX", "VMIN"]
GEN_COLS = ["GEN_BUS", "PG", "QG", "QMAX", "QMIN", "VG", "MBASE", "GEN_STATUS", "PMAX", "PMIN"]
BRANCH_COLS = ["F_BUS", "T_BUS", "BR_R", "BR_X", "BR_B", "RATE_A", "RATE_B", "RATE_C", "TAP", "SHIFT", "BR_STATUS"]


def _ours(case) -> dict[str, dict[str, np.ndarray]]:
    """Our Case in MATPOWER's units, by MATPOWER column name (MBASE is not kept by gridflow)."""
    b, g, br, s = case.bus, case.gen, case.branch, case.base_mva
    bus = dict(BUS_I=b.number, BUS_TYPE=b.type, PD=b.pd * s, QD=b.qd * s, GS=b.gs * s, BS=b.bs * s,
               BUS_AREA=b.area, VM=b.vm, VA=np.rad2deg(b.va), BASE_KV=b.base_kv, ZONE=b.zone, VMAX=b.vmax,
               VMIN=b.vmin)
    gen = dict(GEN_BUS=b.number[g.bus], PG=g.pg * s, QG=g.qg * s, QMAX=g.qmax * s, QMIN=g.qmin * s, VG=g.vg,
               GEN_STATUS=g.status, PMAX=g.pmax * s, PMIN=g.pmin * s)
    branch = dict(F_BUS=b.number[br.f], T_BUS=b.number[br.t], BR_R=br.r, BR_X=br.x, BR_B=br.b,
                  RATE_A=br.rate_a * s, RATE_B=br.rate_b * s, RATE_C=br.rate_c * s, TAP=br.tap,
                  SHIFT=np.rad2deg(br.shift), BR_STATUS=br.status)
    return {"bus": bus, "gen": gen, "branch": branch}


def _theirs(path):
    cf = mcf.CaseFrames(str(path), update_index=False)
    out = {}
    for table, cols in (("bus", BUS_COLS), ("gen", GEN_COLS), ("branch", BRANCH_COLS)):
        df = getattr(cf, table)
        out[table] = {c: df[c].to_numpy(dtype=float) for c in cols}
    out["branch"]["TAP"] = np.where(out["branch"]["TAP"] == 0, 1.0, out["branch"]["TAP"])  # MATPOWER: 0 = 1
    out["gen"]["GEN_STATUS"] = out["gen"]["GEN_STATUS"] > 0
    out["branch"]["BR_STATUS"] = out["branch"]["BR_STATUS"] > 0
    names = list(cf.bus_name) if "bus_name" in cf.attributes else None
    return float(cf.baseMVA), out, names


def _assert_same(path, case=None):
    case = case if case is not None else read_matpower(path)
    base, theirs, names = _theirs(path)
    ours = _ours(case)
    assert case.base_mva == base
    for table in ("bus", "gen", "branch"):
        for col, want in theirs[table].items():
            if col == "MBASE":
                continue
            got = np.asarray(ours[table][col])
            assert got.shape == want.shape, f"{table}.{col}: {got.shape} rows, matpowercaseframes {want.shape}"
            # per-unit and radians back to MW and degrees: equal to rounding (inf limits stay inf)
            np.testing.assert_allclose(got.astype(float), want, rtol=1e-13, atol=1e-12,
                                       err_msg=f"{path}: {table}.{col}")
    if names is None:
        assert all(n == "" for n in case.bus.name)
    else:
        assert list(case.bus.name) == names
    return case


# ---------------------------------------------------------------- MATPOWER's own files


@pytest.mark.parametrize("name", ["case9", "case30", "case118", "case300", "case_ACTIVSg2000", "case9241pegase",
                                  "case_ACTIVSg25k"])
def test_matches_matpowercaseframes(matpower_dir, name):
    case = _assert_same(matpower_dir / f"{name}.m")
    assert case.nb > 0 and case.ng > 0 and case.nl > 0
    if name in ("case118", "case_ACTIVSg2000", "case_ACTIVSg25k"):
        assert all(case.bus.name)  # these files name every bus


def _other_files():
    """Every other case file whose tables are the data: matpowercaseframes does not run the statements
    that convert the distribution feeders' tables (those are checked against MATPOWER itself in
    test_matpower_code.py, as are the files refused for an in-service DC line)."""
    d = matpower_data_dir()
    named = {"case9", "case30", "case118", "case300", "case_ACTIVSg2000", "case9241pegase", "case_ACTIVSg25k"}
    refused = {"case_RTS_GMLC", "case_SyntheticUSA"}
    converted = re.compile(r"^\s*mpc\.(bus|branch)\s*\(", re.M)
    return [] if d is None else [p.stem for p in sorted(d.glob("case*.m"))
                                 if p.stem not in named | refused and not converted.search(p.read_text())]


_SQRT = re.compile(r"(\d+(?:\.\d*)?)\s*/\s*sqrt\(\s*(\d+(?:\.\d*)?)\s*\)")
_RATIO = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?)/(\d+(?:\.\d*)?)")


def _numbers_only(text: str) -> str:
    """``135/sqrt(3)`` and ``50/3`` (case533mt_*) written as plain numbers, which matpowercaseframes needs."""
    text = _SQRT.sub(lambda m: repr(float(m.group(1)) / math.sqrt(float(m.group(2)))), text)
    return _RATIO.sub(lambda m: repr(float(m.group(1)) / float(m.group(2))), text)


@pytest.mark.slow
@pytest.mark.parametrize("name", _other_files())
def test_every_other_matpower_file(matpower_dir, tmp_path, name):
    path = matpower_dir / f"{name}.m"
    text = path.read_text(errors="replace")
    plain = _numbers_only(text)
    if plain == text:
        _assert_same(path)
    else:  # our reader evaluates the arithmetic; the reference reads the evaluated numbers
        (tmp_path / path.name).write_text(plain)
        _assert_same(tmp_path / path.name, case=read_matpower(path))


# ---------------------------------------------------------------- handmade files

PLAIN = """function mpc = plain
mpc.version = '2';
mpc.baseMVA = 100;
mpc.bus = [
1	3	0	0	0	0	1	1.02	0	345	1	1.1	0.9;
2	1	90	30	0	0	1	1	-2.5	345	1	1.1	0.9;
3	1	15	-0.5	0	19	2	1	-3	345	1	1.1	0.9;
4	2	0	0	1.5	0	2	1	-4	230	1	1.05	0.95;
];
mpc.gen = [
1	0	0	300	-300	1.02	100	1	250	10;
4	50	5	Inf	-Inf	1.01	100	1	100	0;
4	20	0	10	-10	1.01	100	0	40	0;
];
mpc.branch = [
1	2	0.01	0.085	0.176	250	250	250	0	0	1	-360	360;
2	3	0.017	0.092	0.158	0	0	0	0	0	1	-360	360;
3	4	0.001	0.05	0	150	150	150	0.98	-3	0	-360	360;
];
mpc.bus_name = {
'ONE';
'TWO';
'THREE';
'FOUR';
};
"""

TRICKY = """function mpc = tricky
%% header comment that mentions mpc.bus = [ 9 9 9 ]; and must be ignored
%   bus_i type Pd ...
mpc.version = '2';
mpc.baseMVA = 100.0;  % MVA base

%% generators first: field order does not matter
mpc.gen = [1, 0, 0, 300, -300, 1.02, 100, 1, 250, 10; 4 50 5 Inf -Inf 1.01 100 1 100 0
\t4\t20\t0\t10\t-10\t1.01\t100\t0\t40\t0\t% out of service
];

mpc.bus = [\t% bus data
\t1,\t3,\t0,\t0,\t0,\t0,\t1,\t1.02,\t0,\t345,\t1,\t1.1,\t0.9;   % the slack

\t2\t1\t90\t30 ...  the rest of row 2 is on the next line
\t    0\t0\t1\t1\t-2.5\t345\t1\t1.1\t0.9
%\t9\t1\t1\t1\t0\t0\t1\t1\t0\t345\t1\t1.1\t0.9;   a commented-out row
\t3 1 1.5e1 -.5 0 19 2 1 -3 345 1 1.1 0.9; 4 2 0 0 1.5 0 2 1 -4 230 1 1.05 0.95

];
mpc.branch = [
  1  2  0.01   0.085  0.176  250 250 250  0     0  1  -360  360 ;
  2  3  0.017  0.092  0.158    0   0   0  0     0  1  -360  360 ; 3  4  0.001 ...
     0.05 0 150 150 150 0.98 -3 0 -360 360 ;
];
mpc.gencost = [
\t2\t0\t0\t3\t0.11\t5\t150;
];
mpc.bus_name = { 'ONE%1';\t% a comment after a name with a per cent sign
\t'TWO ''2''';
\t'THREE'; 'FOUR % four';
};
"""

TRICKY_NAMES = ["ONE%1", "TWO '2'", "THREE", "FOUR % four"]


def test_plain_handmade_file_matches_matpowercaseframes(tmp_path):
    p = tmp_path / "plain.m"
    p.write_text(PLAIN)
    case = _assert_same(p)
    assert (case.nb, case.ng, case.nl) == (4, 3, 3)
    # spot values, in the Case's own units (pu on baseMVA, radians)
    assert case.bus.pd[1] == pytest.approx(0.9) and case.bus.bs[2] == pytest.approx(0.19)
    assert case.bus.va[3] == pytest.approx(np.deg2rad(-4.0))
    assert case.gen.qmax[1] == np.inf and case.gen.qmin[1] == -np.inf
    assert list(case.gen.status) == [True, True, False]
    assert list(case.branch.tap) == [1.0, 1.0, 0.98]
    assert list(case.branch.status) == [True, True, False]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_tricky_file_reads_like_the_plain_one(tmp_path, newline):
    plain = tmp_path / "plain.m"
    plain.write_text(PLAIN)
    tricky = tmp_path / "tricky.m"
    tricky.write_bytes(TRICKY.replace("\n", newline).encode())
    case = read_matpower(tricky)
    assert list(case.bus.name) == TRICKY_NAMES
    # every number equals what the independent parser reads from the plain spelling of the same data
    _base, theirs, _names = _theirs(plain)
    ours = _ours(case)
    for table in ("bus", "gen", "branch"):
        for col, want in theirs[table].items():
            if col != "MBASE":
                np.testing.assert_allclose(np.asarray(ours[table][col], float), want, rtol=1e-13, atol=1e-12,
                                           err_msg=f"{table}.{col}")


def test_percent_in_a_name_on_the_opening_line(tmp_path):
    p = tmp_path / "one_line.m"
    p.write_text(PLAIN.replace("mpc.bus_name = {\n'ONE';\n'TWO';\n'THREE';\n'FOUR';\n};",
                               "mpc.bus_name = { 'A%1'; 'B 100%'; '%C'; 'D' }; % trailing comment"))
    assert list(read_matpower(p).bus.name) == ["A%1", "B 100%", "%C", "D"]


def test_closing_brace_in_a_name(tmp_path):
    p = tmp_path / "brace.m"
    p.write_text(PLAIN.replace("'THREE'", "'THREE}3'"))
    assert list(read_matpower(p).bus.name) == ["ONE", "TWO", "THREE}3", "FOUR"]


def test_row_split_across_lines_without_continuation_is_an_error(tmp_path):
    # MATLAB ends a row at a newline unless it is continued with '...': the halves are rows of their own
    p = tmp_path / "split.m"
    p.write_text(PLAIN.replace("2\t1\t90\t30\t0\t0\t1\t1\t-2.5", "2\t1\t90\t30\n0\t0\t1\t1\t-2.5"))
    with pytest.raises(CaseError, match="columns"):
        read_matpower(p)
