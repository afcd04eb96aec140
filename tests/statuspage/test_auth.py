"""With `server.auth: basic` the status page sits behind MLflow's basic auth like the rest of
the server: MLflow's auth app knows no exception for /guard/ (only /static, /health and
/favicon.ico are open), so a stranger gets 401 and the admin the page."""

from __future__ import annotations

import pytest
import requests

from tests.helpers.daemons import auth_guard as start_auth_guard

pytestmark = pytest.mark.integration


def test_the_status_page_needs_a_login_under_basic_auth(new_store, make_guard, tmp_path):
    guard, login = start_auth_guard(new_store, make_guard, tmp_path)
    for path in ("/guard/", "/guard/status.json", "/guard/status.js"):
        assert requests.get(guard.url + path, timeout=30).status_code == 401, path
        assert requests.get(guard.url + path, auth=("admin", "wrong"), timeout=30) \
            .status_code == 401, path
        assert requests.get(guard.url + path, auth=login, timeout=30).status_code == 200, path
    doc = requests.get(guard.url + "/guard/status.json", auth=login, timeout=30).json()
    assert doc["state"] == "healthy" and doc["store"] == str(new_store)
