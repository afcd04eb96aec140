"""With `server.auth: basic` the status page sits behind MLflow's basic auth like the rest of
the server: MLflow's auth app knows no exception for /guard/ (only /static, /health and
/favicon.ico are open), so a stranger gets 401 and the admin the page."""

from __future__ import annotations

import secrets

import pytest
import requests

pytestmark = pytest.mark.integration


def test_the_status_page_needs_a_login_under_basic_auth(new_store, make_guard, tmp_path):
    password = secrets.token_urlsafe(16)
    ini = tmp_path / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{tmp_path / 'auth.db'}\nadmin_username = admin\n")
    config = tmp_path / "guard.yaml"
    config.write_text(f"server:\n  health_interval: 1\n  auth: basic\n  auth_config: {ini}\n")
    guard = make_guard(new_store, config=config,
                       env={"MLFLOW_AUTH_ADMIN_PASSWORD": password}).start()
    guard.wait_healthy()
    login = ("admin", password)
    for path in ("/guard/", "/guard/status.json", "/guard/status.js"):
        assert requests.get(guard.url + path, timeout=30).status_code == 401, path
        assert requests.get(guard.url + path, auth=("admin", "wrong"), timeout=30) \
            .status_code == 401, path
        assert requests.get(guard.url + path, auth=login, timeout=30).status_code == 200, path
    doc = requests.get(guard.url + "/guard/status.json", auth=login, timeout=30).json()
    assert doc["state"] == "healthy" and doc["store"] == str(new_store)
