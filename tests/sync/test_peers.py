"""Heartbeats and the view of peers: pure, then real daemons over a synced store that see each
other, and a killed host that goes stale."""

from __future__ import annotations

import json
import os
import signal

import pytest

from guard.core.layout import COORDINATION
from guard.sync.peers import Heartbeat, assess, clash, minor, version_warning
from tests.helpers.daemons import guardctl, wait_for


def beat(host: str, last_seen: float, mlflow: str = "3.17.2", state: str = "running"):
    return Heartbeat(host_id=host, pid=10, guard_version="0.1.0", mlflow_version=mlflow,
                     platform="linux", store=f"/home/{host}/mlruns", started_at=0.0,
                     last_seen=last_seen, interval=5.0, state=state)


def test_heartbeat_round_trips_and_rejects_junk():
    b = beat("hostA", 12.5)
    assert Heartbeat.from_json(b.to_json()) == b
    assert Heartbeat.from_json({**b.to_json(), "pid": "10"}) is None
    assert Heartbeat.from_json({**b.to_json(), "pid": True}) is None
    assert Heartbeat.from_json({k: v for k, v in b.to_json().items() if k != "store"}) is None
    assert Heartbeat.from_json([1, 2]) is None
    old = {k: v for k, v in b.to_json().items() if k != "state"}
    assert Heartbeat.from_json(old).state == "running"


def test_assess_excludes_self_orders_by_age_and_marks_stale():
    views = assess([beat("me", 100), beat("b", 99), beat("c", 10), beat("d", 98, state="stopped")],
                   "me", now=100.0, stale_after=60)
    assert [(v.host_id, v.age_s, v.stale) for v in views] == \
        [("b", 1.0, False), ("d", 2.0, True), ("c", 90.0, True)]
    assert views[1].state == "stopped"


def test_future_heartbeat_from_a_skewed_clock_has_age_zero():
    (view,) = assess([beat("b", 130)], "me", now=100.0, stale_after=60)
    assert view.age_s == 0.0 and not view.stale


@pytest.mark.parametrize("version,expected", [("3.17.2", "3.17"), ("3.17", "3.17"), ("3", "3")])
def test_minor(version, expected):
    assert minor(version) == expected


def test_version_warning_only_for_live_peers_on_another_minor():
    views = assess([beat("b", 99, "3.17.0"), beat("c", 99, "3.16.1"), beat("d", 1, "2.22.0")],
                   "me", now=100.0, stale_after=60)
    warning = version_warning("3.17.2", views)
    assert "c (3.16.1)" in warning and "b (" not in warning and "d (" not in warning
    assert version_warning("3.17.2", views[:1]) is None


def test_clash_when_another_guard_wrote_our_heartbeat_file():
    mine = beat("vm", 50.0)
    assert clash(None, mine) is None and clash(mine, None) is None
    assert clash(mine, mine) is None
    later_self = Heartbeat(**{**mine.to_json(), "last_seen": 55.0})  # our own, newer write
    assert clash(later_self, mine) is None
    other = Heartbeat(**{**mine.to_json(), "store": "/mnt/other/mlruns", "pid": 77})
    warning = clash(other, mine)
    assert "host_id 'vm'" in warning and "/mnt/other/mlruns" in warning


# --- with real daemons over a simulated sync ----------------------------------------------

def peer_list(guard) -> list[dict]:
    return ((guard.status().get("peers") or {}).get("list")) or []


@pytest.mark.integration
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


def test_read_all_skips_fifo_symlink_and_oversized_heartbeats(tmp_path):
    import threading

    from guard.core import safeio
    from guard.sync.peers import peers_dir, publish, read_all

    publish(tmp_path, beat("hostA", 1.0))
    folder = peers_dir(tmp_path)
    os.mkfifo(folder / "hostB.json")
    outside = tmp_path / "hostC.json"
    outside.write_text(json.dumps(beat("hostC", 1.0).to_json()), encoding="utf-8")
    os.symlink(outside, folder / "hostC.json")
    big = beat("hostD", 1.0).to_json()
    big["platform"] = "x" * safeio.RECORD_MAX_BYTES
    (folder / "hostD.json").write_text(json.dumps(big), encoding="utf-8")
    found = []
    thread = threading.Thread(target=lambda: found.extend(read_all(tmp_path)), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "read_all blocked on the FIFO"
    assert [b.host_id for b in found] == ["hostA"]


def test_heartbeats_held_back_by_the_sync_warn_that_locks_cannot_be_trusted():
    """Syncthing's default watcher delay: a heartbeat written every 5 s arrives every ~70 s."""
    from guard.sync.peers import slow_sync_warning

    held_back = [(t, "hostB", 70.0, 5.0) for t in (900.0, 970.0)]
    warning = slow_sync_warning(held_back, 1000.0, 15.0)
    assert warning is not None and "hostB (up to 65 s)" in warning
    assert "fsWatcherDelayS" in warning and "locks.settle (15 s)" in warning
    # one long jump is a host back from being offline; jumps within settle are a healthy sync
    assert slow_sync_warning(held_back[:1], 1000.0, 15.0) is None
    assert slow_sync_warning([(t, "hostB", 6.0, 5.0) for t in range(900, 1000, 5)],
                             1000.0, 15.0) is None
    assert slow_sync_warning(held_back, 1000.0 + 700, 15.0) is None  # old news
