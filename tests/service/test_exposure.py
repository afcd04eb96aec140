"""The doctor's exposure check, over plain facts: who listens where, with or without auth."""

from __future__ import annotations

from guard.core.config import SERVER_AUTH_ENV, ServerAuth
from guard.service.exposure import FAIL, OK, WARN, Bind, ExposureFacts, server_auth, verdict

NONE, BASIC = ServerAuth.NONE, ServerAuth.BASIC


def test_server_auth_from_command_line_or_environment():
    assert server_auth(("mlflow", "server", "--app-name", "basic-auth"), None) is True
    assert server_auth(("python", "-m", "uvicorn", "--factory", "mlflow.server.auth:create_app"),
                       {}) is True
    guard = ("python", "-m", "uvicorn", "--factory", "guard.app:create_app")
    assert server_auth(guard, {SERVER_AUTH_ENV: "basic"}) is True
    assert server_auth(guard, {SERVER_AUTH_ENV: "none"}) is False
    assert server_auth(("mlflow", "server"), {}) is False
    assert server_auth(guard, None) is None  # environment unreadable: cannot tell


def test_a_running_server_on_every_interface_without_auth_fails():
    bind = Bind(4242, "0.0.0.0", 5000, False, "mlflow server --host 0.0.0.0")
    level, detail, fix = verdict(ExposureFacts("127.0.0.1", False, NONE, (bind,)))
    assert level == FAIL
    assert "pid 4242" in detail and "0.0.0.0:5000" in detail and "without authentication" in detail
    assert "server.host: 127.0.0.1" in fix and "server.auth: basic" in fix


def test_loopback_binds_and_authenticated_exposure_are_ok():
    local = Bind(1, "127.0.0.1", 5050, False)
    assert verdict(ExposureFacts("127.0.0.1", False, NONE, (local,)))[0] == OK
    wide = Bind(2, "::", 5050, True)
    level, detail, _ = verdict(ExposureFacts("::", True, BASIC, (wide,)))
    assert level == OK and "basic auth" in detail and "other machines" in detail


def test_an_exposed_server_whose_auth_cannot_be_seen_warns():
    bind = Bind(3, "0.0.0.0", 5050, None)
    assert verdict(ExposureFacts("127.0.0.1", False, NONE, (bind,)))[0] == WARN


def test_a_config_that_exposes_without_auth_fails_even_if_made_by_hand():
    level, detail, _ = verdict(ExposureFacts("0.0.0.0", True, NONE))
    assert level == FAIL and "server.auth: basic" in detail
