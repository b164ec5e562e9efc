"""Full N-1 (every in-service branch) of case_ACTIVSg2000: gridflow vs lightsim2grid, 2 threads each.

* gridflow ``contingency(case, threads=2)``: DC screening, then every contingency in AC through the batched
  engine (compensated chord steps, Newton where they do not contract), result tables built; islands
  de-energized or given their own slack and solved.
* lightsim2grid ``ContingencyAnalysisCPP(LSGrid)`` with ``add_all_n1()``, ``nb_thread = 2``:
  ``compute(V_base, 20, 1e-8)`` then ``compute_power_flows()`` (its model from ``init_from_matpower``;
  branch k of the case is its line k). It does not solve contingencies that split the network.

Answers compared on the contingencies both solve: active power at every branch's from end, MW
(gridflow's from a batch of the same outages at tol 1e-8 pu, not timed).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import QUICK

import gridflow
from gridflow.contingency import contingency
from gridflow.outages import single_branch_outages
from gridflow.validate import to_ppc

CASE = "case_ACTIVSg2000"
THREADS = 2
TOL_PU = 1e-8
AGREE_MW = 1e-3

_state: dict = {}


def _case():
    if "case" not in _state:
        c = gridflow.load_case(CASE)
        _state["case"] = c
        _state["base"] = gridflow.solve(c, tol_mva=TOL_PU * c.base_mva)
    return _state["case"], _state["base"]


def _info(benchmark, tool, **kw):
    benchmark.group = f"N-1 {CASE}"
    benchmark.extra_info.update(case=CASE, tool=tool, threads=THREADS, **kw)


def test_n1_gridflow(benchmark):
    c, base = _case()
    outs = single_branch_outages(c)
    if QUICK:
        outs = outs[:200]
    contingency(c, outs[:50], threads=THREADS)  # model, bridges and patterns built
    res = benchmark.pedantic(contingency, args=(c, outs), kwargs=dict(threads=THREADS, tol_mva=TOL_PU * c.base_mva),
                             rounds=1 if QUICK else 2, iterations=1)
    t = res.table
    # flows for the comparison (not timed)
    from gridflow.solve import model_for

    model = model_for(c)
    rows = np.array([o.branches[0] for o in outs])
    pf = np.full((len(rows), c.nl), np.nan)
    conv = np.zeros(len(rows), bool)
    for a in range(0, len(rows), 256):
        r = model.solve_batch(branch_out=[[k] for k in rows[a:a + 256]], tol_mva=TOL_PU * c.base_mva,
                              branch_results=True, V0=base.V)
        pf[a:a + 256] = r.p_from_mw
        conv[a:a + 256] = r.converged
    _state["gf"] = (rows, pf, conv)
    _info(benchmark, "gridflow", variant="contingency", contingencies=len(outs),
          converged=int(t["converged"].sum()), islanding=int((t["islanded_buses"] > 0).sum()),
          new_slack=int(t["new_slack_bus"].notna().sum()))
    assert t["converged"].all()


def test_n1_lightsim2grid(benchmark):
    from lightsim2grid.lightsim2grid_cpp import ContingencyAnalysisCPP
    from lightsim2grid.network import init_from_matpower

    c, base = _case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = init_from_matpower(to_ppc(c))
    if len(grid.get_lines()) != c.nl or len(grid.get_trafos()):
        pytest.skip("lightsim2grid's model does not keep the case's branch order")
    V0 = np.asarray(base.V, complex)
    holder = {}

    def make():
        ca = ContingencyAnalysisCPP(grid)
        if QUICK:
            ca.add_multiple_n1(list(range(200)))
        else:
            ca.add_all_n1()
        ca.nb_thread = THREADS
        holder["ca"] = ca

    def run():
        holder["ca"].compute(V0, 20, TOL_PU)
        holder["ca"].compute_power_flows()

    make()
    run()  # warm
    benchmark.pedantic(run, setup=make, rounds=1 if QUICK else 2, iterations=1)
    ca = holder["ca"]
    P = np.asarray(ca.get_power_flows())
    ok = np.isfinite(P).all(axis=1) & (np.abs(P).sum(axis=1) > 0)
    solved = int(ca.nb_solved() if callable(getattr(ca, "nb_solved", None)) else ca.nb_solved)
    extra = {}
    if "gf" in _state:
        rows, pf, conv = _state["gf"]
        k = min(len(rows), len(P))
        both = ok[:k] & conv[:k]
        d = np.nan_to_num(np.abs(P[:k][both] - pf[:k][both]), nan=0.0).max(axis=1) if both.any() else np.zeros(0)
        extra = dict(compared=int(both.sum()), max_dp_mw=float(d.max(initial=0.0)),
                     over_tol=int((d > AGREE_MW).sum()), gridflow_only=int((conv[:k] & ~ok[:k]).sum()),
                     lightsim2grid_only=int((ok[:k] & ~conv[:k]).sum()))
    _info(benchmark, "lightsim2grid", variant="ContingencyAnalysisCPP", contingencies=len(P), solved=solved,
          converged=int(ok.sum()), **extra)
    if extra:
        assert extra["over_tol"] == 0, extra
