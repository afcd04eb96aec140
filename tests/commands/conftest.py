"""Fixtures of the commands' in-process tests."""

from __future__ import annotations

import pytest

from guard.core import config


@pytest.fixture
def no_config_file(tmp_path, monkeypatch):
    """No config file anywhere (what the quickstart leaves): no $MLFLOW_GUARD_CONFIG, the user
    config folder and the machine-wide file under tmp_path (absent), the default state folder
    under tmp_path."""
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xstate"))
    monkeypatch.setattr(config, "system_config_path",
                        lambda: tmp_path / "etc" / "mlflow-guard" / "config.yaml")
    return tmp_path
