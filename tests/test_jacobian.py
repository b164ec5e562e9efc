"""The Jacobian fill against the analytic oracle (MATPOWER's dSbus_dV formulas, sparse products)."""

import numpy as np
import pytest
import scipy.sparse as sp

import gridflow
from gridflow.jacobian import jacobian_pattern, jacobian_values, ybus_diagonal
from gridflow.network import make_network


def dsbus_dv(Ybus, V):
    """dS/dVm and dS/dVa by sparse products (the oracle)."""
    Ibus = Ybus @ V
    D = sp.diags
    Vn = V / np.abs(V)
    dVm = D(V) @ np.conj(Ybus @ D(Vn)) + np.conj(D(Ibus)) @ D(Vn)
    dVa = 1j * D(V) @ np.conj(D(Ibus) - Ybus @ D(V))
    return dVm.tocsr(), dVa.tocsr()


def oracle_J(Ybus, V, pv, pq):
    dVm, dVa = dsbus_dv(Ybus, V)
    pvpq = np.r_[pv, pq]
    return sp.vstack([
        sp.hstack([dVa.real[pvpq][:, pvpq], dVm.real[pvpq][:, pq]]),
        sp.hstack([dVa.imag[pq][:, pvpq], dVm.imag[pq][:, pq]]),
    ]).tocsc()


@pytest.mark.parametrize("name", ["case9.m", "case118.m", "case_ACTIVSg2000"])
@pytest.mark.parametrize("fmt", ["csc", "csr"])
def test_jacobian_matches_oracle(name, fmt):
    case = gridflow.load_case(name)
    net = make_network(case)
    rng = np.random.default_rng(1)
    V = (1 + 0.05 * rng.standard_normal(case.nb)) * np.exp(0.2j * rng.standard_normal(case.nb))
    Y = net.Ybus
    Yrow = np.repeat(np.arange(case.nb), np.diff(Y.indptr))
    pat = jacobian_pattern(Y, net.pv, net.pq, fmt=fmt)
    data = jacobian_values(V, Y @ V, Y.data, Yrow, Y.indices, pat)
    cls = sp.csc_matrix if fmt == "csc" else sp.csr_matrix
    J = cls((data, pat.indices, pat.indptr), shape=(pat.n, pat.n))
    ref = oracle_J(Y, V, net.pv, net.pq)
    scale = abs(ref).max()
    assert abs(J - ref).max() <= 1e-12 * scale
    # the pattern is exact: no stored entry outside the oracle's structure... except structural zeros
    assert J.nnz >= ref.nnz
    assert np.all(np.diff(pat.indptr) >= 0) and pat.indices.dtype == np.int32


def test_batched_values_equal_single():
    case = gridflow.load_case("case118.m")
    net = make_network(case)
    Y = net.Ybus
    Yrow = np.repeat(np.arange(case.nb), np.diff(Y.indptr))
    pat = jacobian_pattern(Y, net.pv, net.pq)
    rng = np.random.default_rng(2)
    V = np.exp(0.1j * rng.standard_normal((5, case.nb))) * (1 + 0.02 * rng.standard_normal((5, case.nb)))
    Ibus = (Y @ V.T).T
    diag = ybus_diagonal(Yrow, Y.indices)
    batch = jacobian_values(V, Ibus, Y.data, Yrow, Y.indices, pat, diag=diag)
    for t in range(5):
        np.testing.assert_array_equal(batch[t], jacobian_values(V[t], Ibus[t], Y.data, Yrow, Y.indices, pat))
