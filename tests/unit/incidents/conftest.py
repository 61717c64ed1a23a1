"""Shared fixtures of the incident-model tests."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """BLAS/OpenMP on one thread: the runner's two cores are shared by two test workers."""
    with threadpool_limits(1):
        yield
