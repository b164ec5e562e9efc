"""The small failing inputs of ``shared/cases`` (issue 7), each with its referee's answer.

The files live beside the repository (``../shared/cases``); their right answers are in its README:
PYPOWER ``runpf`` for the ``.m`` files (run on the file as MATPOWER runs it), pandapower ``runpp`` for the
JSON net. Tolerances: 1e-6 pu on |V| and the README's six decimals; 1e-4 degree on angles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridflow.errors import CaseError
from gridflow.io import read_matpower
from gridflow.solve import solve

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def _case_file(name: str) -> Path:
    p = CASES / name
    if not p.is_file():
        pytest.skip(f"{name} not found beside the repository (shared/cases)")
    return p


# ------------------------------------------------------------------ generator at a PQ bus

def test_gen_at_pq_bus_solves_as_pypower():
    res = solve(read_matpower(_case_file("gen_at_pq_bus.m")), init="case")
    assert res.converged
    np.testing.assert_allclose(res.bus["vm_pu"], [1.020000, 1.004028, 1.011526, 1.012511], atol=1e-6)
    np.testing.assert_allclose(res.bus["va_degree"], [0, -1.8305, -0.8959, -0.7802], atol=1e-4)


def test_vg_at_a_pq_bus_is_not_checked(tmp_path):
    """MATPOWER uses Vg only at PV and ref buses: a Vg of 0 (or any value) at a PQ bus is not refused."""
    text = _case_file("gen_at_pq_bus.m").read_text()
    zero = text.replace("3\t45\t12\t300\t-300\t3\t", "3\t45\t12\t300\t-300\t0\t")
    assert zero != text
    (tmp_path / "vg0.m").write_text(zero)
    case = read_matpower(tmp_path / "vg0.m")
    assert case.gen.vg[1] == 0
    res = solve(case, init="case")  # unused, so the same answer as with Vg = 3
    assert res.converged
    np.testing.assert_allclose(res.bus["vm_pu"], [1.020000, 1.004028, 1.011526, 1.012511], atol=1e-6)
    # at a PV bus the same setpoint is used, so it is refused
    (tmp_path / "vg0_pv.m").write_text(zero.replace("\t3\t1\t30\t10\t", "\t3\t2\t30\t10\t"))
    with pytest.raises(CaseError, match="voltage setpoint must be positive"):
        read_matpower(tmp_path / "vg0_pv.m")
