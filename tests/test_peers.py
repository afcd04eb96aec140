"""Peers over a synced store, with real daemons: they see each other; a killed host goes stale."""

from __future__ import annotations

import json
import os
import signal

import pytest

from conftest import guardctl, wait_for
from guard.core.layout import COORDINATION

pytestmark = pytest.mark.integration  # real daemons over a simulated sync


def peer_list(guard) -> list[dict]:
    return ((guard.status().get("peers") or {}).get("list")) or []


def test_peers_see_each_other_and_a_killed_host_goes_stale(synced, make_guard, tmp_path):
    (store_a, store_b), syncer = synced(2, delay=0.3, volatile=(f"{COORDINATION}/peers/",))
    assert guardctl("init", "--store", str(store_a)).returncode == 0
    syncer.settle(30)
    guards = {}
    for host, store in (("hostA", store_a), ("hostB", store_b)):
        config = tmp_path / f"{host}.yaml"
        config.write_text(f"host_id: {host}\nserver:\n  health_interval: 1\n"
                          "peers:\n  heartbeat_interval: 0.5\n  stale_after: 4\n"
                          "locks:\n  settle: 1\n")
        guards[host] = make_guard(store, state_dir=tmp_path / f"state-{host}",
                                  config=config).start()
    for guard in guards.values():
        guard.wait_healthy()
    a, b = guards["hostA"], guards["hostB"]

    view = wait_for(lambda: [p for p in peer_list(a) if p["host_id"] == "hostB"
                             and not p["stale"]], 30, what="A to see B")[0]
    assert view["store"] == str(store_b) and view["mlflow_version"].startswith("3.")
    assert view["age_s"] < 4
    assert [p["host_id"] for p in peer_list(b)] == ["hostA"]
    text = a.ctl("status").stdout
    assert "peers" in text and "hostB" in text and " ok" in text

    # Only each host's own file, no conflict copies; MLflow does not see the folder.
    syncer.settle(30)
    assert sorted(os.listdir(store_a / COORDINATION / "peers")) == ["hostA.json", "hostB.json"]
    from mlflow import MlflowClient
    names = [e.name for e in MlflowClient(a.url).search_experiments()]
    assert names == ["Default"]
    assert "Malformed experiment" not in (a.state_dir / "logs" / "mlflow-server.log").read_text()

    os.kill(b.proc.pid, signal.SIGKILL)  # no goodbye heartbeat
    b.proc.wait(10)
    view = wait_for(lambda: [p for p in peer_list(a) if p["host_id"] == "hostB" and p["stale"]],
                    30, what="B to go stale on A")[0]
    assert view["state"] == "running" and view["age_s"] >= 4
    assert "STALE" in a.ctl("status").stdout
    assert json.loads(a.ctl("status", "--json").stdout)["exit_code"] == 0  # A itself is fine

    # A machine configured with a host_id that is already taken is called out on both sides.
    clone = tmp_path / "clone.yaml"
    clone.write_text("host_id: hostA\npeers:\n  heartbeat_interval: 0.5\n")
    c = make_guard(store_b, state_dir=tmp_path / "state-clone", config=clone).start()
    c.wait_healthy()
    wait_for(lambda: (a.status().get("peers") or {}).get("clash"), 30, what="clash on A")
    assert "host_id 'hostA'" in a.ctl("status").stdout
