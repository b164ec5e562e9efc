"""solve_batch on the CPU: same answers as one solve per scenario; failures reported, not raised."""

import numpy as np
import pytest

import gridflow
from gridflow.batch import solve_batch
from gridflow.errors import GridflowError


@pytest.fixture(scope="module")
def case2000():
    return gridflow.load_case("case_ACTIVSg2000")


def test_batch_matches_single_solves(case2000):
    c = case2000
    rng = np.random.default_rng(0)
    T = 6
    p = c.bus.pd[None, :] * (1 + 0.05 * rng.standard_normal((T, c.nb))) * c.base_mva
    q = c.bus.qd[None, :] * (1 + 0.05 * rng.standard_normal((T, c.nb))) * c.base_mva
    res = solve_batch(c, p, q, backend="cpu", branch_results=True)
    assert res.backend == "cpu"
    assert res.converged.all()
    assert (res.max_mismatch_mva < 1e-8).all()
    for t in range(T):
        single = gridflow.solve(c.replace(bus={"pd": p[t] / c.base_mva, "qd": q[t] / c.base_mva}))
        assert single.converged
        # both converged to 1e-8 MVA: voltages agree far below 1e-8 pu
        np.testing.assert_allclose(res.vm_pu[t], single.bus["vm_pu"].to_numpy(), atol=1e-9, rtol=0)
        np.testing.assert_allclose(res.va_degree[t], single.bus["va_degree"].to_numpy(), atol=1e-7, rtol=0)
        np.testing.assert_allclose(res.p_from_mw[t], single.branch["p_from_mw"].to_numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(res.loading_percent[t], single.branch["loading_percent"].to_numpy(),
                                   atol=1e-6, rtol=0, equal_nan=True)


def test_scale_equals_explicit_loads(case2000):
    c = case2000
    s = np.array([0.98, 1.0, 1.02])  # generators keep their P: the slack takes the change
    a = solve_batch(c, scale=s, backend="cpu")
    b = solve_batch(c, c.bus.pd[None] * s[:, None] * c.base_mva, c.bus.qd[None] * s[:, None] * c.base_mva,
                    backend="cpu")
    assert a.converged.all() and b.converged.all()
    np.testing.assert_allclose(a.vm_pu, b.vm_pu, atol=1e-10)
    assert a.iterations[1] == 0 and a.chord_steps[1] == 0  # the base scenario is already solved


def test_threads_do_not_change_answers(case2000):
    s = np.linspace(0.98, 1.02, 5)
    a = solve_batch(case2000, scale=s, backend="cpu", threads=1)
    b = solve_batch(case2000, scale=s, backend="cpu", threads=2)
    assert a.converged.all() and b.converged.all()
    np.testing.assert_allclose(a.vm_pu, b.vm_pu, atol=1e-10)


def test_infeasible_scenario_is_reported_not_raised():
    c = gridflow.load_case("case9.m")
    res = solve_batch(c, scale=[1.0, 6.0, 1.02], backend="cpu", max_iter=15)
    assert list(res.converged) == [True, False, True]
    assert list(res.failed()) == [1]
    assert res.max_mismatch_mva[1] > 1e-8


@pytest.mark.parametrize("kwargs, msg", [
    (dict(p_mw=np.ones((2, 5))), "shape"),
    (dict(p_mw=np.full((1, 9), np.nan)), "not finite"),
    (dict(scale=[1.0, np.inf]), "NaN or infinite"),
    (dict(), "give p_mw"),
    (dict(scale=[1.0], p_mw=np.ones((1, 9))), "not both"),
    (dict(scale=[1.0], backend="tpu"), "unknown backend"),
])
def test_bad_batch_input(kwargs, msg):
    c = gridflow.load_case("case9.m")
    with pytest.raises(GridflowError, match=msg):
        solve_batch(c, **kwargs)


def test_single_solve_on_gpu_is_refused_clearly():
    c = gridflow.load_case("case9.m")
    with pytest.raises(GridflowError, match="solve_batch"):
        gridflow.solve(c, backend="gpu")
