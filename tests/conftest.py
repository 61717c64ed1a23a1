"""Shared pytest fixtures.

Real-data tests take `shared_data` and carry the `realdata` marker, e.g.::

    @pytest.mark.realdata
    def test_nab_sample_loads(shared_data):
        readings, windows = load_nab_dir(shared_data / "nab_sample")

Run only them with `pytest -m realdata`, or skip them with `-m "not realdata"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.config import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real data samples); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (CI has it; a fresh clone does not)")
    return SHARED_DATA
