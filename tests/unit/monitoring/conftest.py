"""Alerts raised in these tests (the quality gate's, the monitoring job's) go to the test's own folder, never
to the project's data/monitoring, and no developer's webhook is called."""

from __future__ import annotations

import pytest

from ml.monitoring import alerts


@pytest.fixture(autouse=True)
def alert_state(tmp_path, monkeypatch):
    """The folder `AlertManager.from_env` uses in this test (env OPSLAB_ALERT_STATE)."""
    state = tmp_path / "alert-state"
    monkeypatch.setenv(alerts.ENV_STATE, str(state))
    monkeypatch.delenv(alerts.ENV_WEBHOOK, raising=False)
    return state
