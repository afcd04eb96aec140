"""Exposure (issue 13, attack 5): a server beyond loopback without authentication is refused,
and with MLflow's basic-auth composed into the guard's app, strangers get 401 while the guard's
own refusals still hold for users who logged in.

Every server here listens on 127.0.0.1 only: the refused daemons never bind anything.
"""

from __future__ import annotations

import subprocess

import psutil
import pytest

from guard.service import exposure
from tests.helpers.daemons import auth_guard as start_auth_guard

pytestmark = pytest.mark.integration  # real daemons and MLflow servers


def listening_on(port: int) -> list[str]:
    """The local addresses something listens on at `port`."""
    return [f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]


# 0.0.0.0 is the attack as found; 192.0.2.1 (TEST-NET-1, on no machine) is a non-loopback
# address that cannot be bound, so even a guard without this check listens nowhere with it.
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_a_daemon_bound_beyond_loopback_without_auth_refuses_to_start(host, new_store,
                                                                      make_guard, tmp_path):
    config = tmp_path / "guard.yaml"
    config.write_text(f"server:\n  host: {host}\n")
    guard = make_guard(new_store, config=config).start()
    assert guard.proc is not None
    try:
        code = guard.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    out = guard.output()
    assert code is not None and code != 0, f"the daemon kept running: {out}"
    assert f"'server.host' is '{host}'" in out
    assert "server.auth: basic" in out and "server.expose: true" in out  # what to do
    assert "127.0.0.1" in out  # or stay local
    assert listening_on(guard.port) == []
    assert not guard.status().get("server")


@pytest.fixture
def auth_guard(new_store, make_guard, tmp_path):
    """A daemon with server.auth: basic on 127.0.0.1, its admin password from the env."""
    return start_auth_guard(new_store, make_guard, tmp_path)


def test_basic_auth_lets_in_only_users_and_the_guard_still_refuses_for_them(auth_guard):
    import requests

    guard, login = auth_guard
    search = f"{guard.url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert requests.get(search, timeout=30).status_code == 401
    assert requests.get(search, auth=("admin", "wrong-password"), timeout=30).status_code == 401
    assert requests.get(search, auth=login, timeout=30).status_code == 200
    assert requests.get(f"{guard.url}/health", timeout=30).text == "OK"  # open, for probes

    api = f"{guard.url}/api/2.0/mlflow"
    exp = requests.post(f"{api}/experiments/create", json={"name": "exposed"}, auth=login,
                        timeout=30).json()["experiment_id"]
    run = requests.post(f"{api}/runs/create", json={"experiment_id": exp}, auth=login,
                        timeout=30).json()["run"]["info"]["run_id"]
    url = f"{guard.url}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/a.txt"
    assert requests.put(url, data=b"stranger", timeout=30).status_code == 401  # ASGI route too
    assert requests.put(url, data=b"kept", auth=login, timeout=30).status_code == 200
    artifact = guard.store / exp / run / "artifacts" / "a.txt"
    assert artifact.read_bytes() == b"kept"

    assert requests.delete(url, timeout=30).status_code == 401
    res = requests.delete(url, auth=login, timeout=30)
    assert res.status_code == 403 and "mlflow-sync-guard" in res.json()["message"]
    assert artifact.read_bytes() == b"kept"
    assert requests.get(url, auth=login, timeout=30).content == b"kept"
    assert listening_on(guard.port) == [f"127.0.0.1:{guard.port}"]
    binds = exposure.gather_binds(guard.server_pids())  # what `guardctl doctor` sees
    assert binds and {(b.address, b.auth) for b in binds} == {("127.0.0.1", True)}


def test_the_publicly_known_admin_password_is_refused_before_anything_listens(
        new_store, make_guard, tmp_path):
    config = tmp_path / "guard.yaml"
    config.write_text("server:\n  auth: basic\n")
    guard = make_guard(new_store, config=config,
                       env={"MLFLOW_AUTH_ADMIN_PASSWORD": "password1234"}).start()
    assert guard.proc is not None
    code = guard.proc.wait(timeout=60)
    out = guard.output()
    assert code != 0 and "password1234" in out and "public" in out
    assert listening_on(guard.port) == []
    assert not (guard.state_dir / "basic_auth.db").exists()  # MLflow's auth never started
