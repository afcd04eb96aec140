"""The heartbeats part (guard.sync.heartbeats) over a store folder: no processes."""

from __future__ import annotations

import errno
import json
import os
import time

from guard.core.layout import TEMP_PREFIX
from guard.core.store import init_store
from guard.sync import peers
from guard.sync.heartbeats import Heartbeats, clash_warning, series_start


def beat(host: str, last_seen: float = 0.0, pid: int = 10, store: str = "/s") -> peers.Heartbeat:
    return peers.Heartbeat(host_id=host, pid=pid, guard_version="0.1.0",
                           mlflow_version="3.17.2", platform="linux", store=store,
                           started_at=1.0, last_seen=last_seen, interval=5.0)


def test_clash_warning_names_another_writer_or_the_sync_clients_copies():
    mine = beat("hostA", 10.0)
    assert clash_warning(mine, mine, [], "hostA") is None
    assert clash_warning(None, None, [], "hostA") is None
    other = beat("hostA", 11.0, pid=99, store="/elsewhere")
    assert "another guard also uses host_id 'hostA' (pid 99" in clash_warning(other, mine, [],
                                                                               "hostA")
    copy = "hostA (conflicted copy).json"
    warning = clash_warning(mine, mine, [copy], "hostA")
    assert warning is not None and copy in warning and "host_id 'hostA'" in warning


def test_heartbeats_publish_read_peers_and_say_stopped_at_the_end(tmp_path):
    store = tmp_path / "mlruns"
    init_store(store)
    peers.publish(store, beat("hostB", last_seen=100.0))
    part = Heartbeats(store, beat("hostA"), stale_after=60.0)
    part.stop()  # never ran: no "stopped" heartbeat
    assert not (peers.peers_dir(store) / "hostA.json").exists()

    part.tick(101.0)
    mine = json.loads((peers.peers_dir(store) / "hostA.json").read_text())
    assert (mine["last_seen"], mine["state"]) == (101.0, "running")
    assert [p.host_id for p in part.snapshot().hosts] == ["hostB"]
    assert part.snapshot().clash is None and part.error is None
    assert part.hosts() == ["hostA", "hostB"]

    part.tick(102.0)  # before the interval: nothing written
    assert json.loads((peers.peers_dir(store) / "hostA.json").read_text())["last_seen"] == 101.0
    part.stop()
    assert json.loads((peers.peers_dir(store) / "hostA.json").read_text())["state"] == "stopped"


def test_a_heartbeat_series_runs_from_the_first_beat_until_a_gap_or_a_stop(tmp_path):
    """beating_since: when the others can first have known of us (the lease settle needs it)."""
    running = peers.Heartbeat(**{**beat("hostA", 100.0).to_json(), "beating_since": 50.0})
    assert series_start(None, 100.0, 10.0) == 100.0
    assert series_start(running, 110.0, 10.0) == 50.0
    assert series_start(running, 110.5, 10.0) == 110.5   # a gap: the others may forget us
    stopped = peers.Heartbeat(**{**running.to_json(), "state": "stopped"})
    assert series_start(stopped, 101.0, 10.0) == 101.0
    store = tmp_path / "mlruns"
    init_store(store)
    part = Heartbeats(store, beat("hostA"), stale_after=60.0, max_gap=20.0)
    for now in (100.0, 105.0, 125.0, 146.0):
        part.tick(now)
    mine = [b for b in peers.read_all(store) if b.host_id == "hostA"][0]
    assert (mine.last_seen, mine.beating_since) == (146.0, 146.0)  # 21 s after 125
    part.tick(150.0)
    assert [b.beating_since for b in peers.read_all(store)] == [146.0]
    # an older guard's heartbeat has none
    assert peers.Heartbeat.from_json(beat("hostB").to_json() | {"beating_since": None}) \
        == beat("hostB")


def test_heartbeats_notice_another_machine_with_the_same_host_id(tmp_path, caplog):
    store = tmp_path / "mlruns"
    init_store(store)
    part = Heartbeats(store, beat("hostA"), stale_after=60.0)
    part.tick(100.0)
    peers.publish(store, beat("hostA", last_seen=103.0, pid=4242, store="/other"))
    part.tick(105.0)
    assert "pid 4242" in (part.snapshot().clash or "")
    assert caplog.text.count("another guard also uses host_id") == 1
    part.tick(110.0)  # said once in the log, kept in the status
    assert caplog.text.count("another guard also uses host_id") == 1


def test_a_refused_heartbeat_holds_the_part_retries_later_and_resumes(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    init_store(store)
    part = Heartbeats(store, beat("hostA"), stale_after=60.0)
    tries: list[float] = []
    real = peers.publish

    def full(store_, hb):
        tries.append(hb.last_seen)
        raise OSError(errno.ENOSPC, "No space left on device", str(store_ / "x"))

    monkeypatch.setattr(peers, "publish", full)
    part.tick(100.0)
    assert part.held is not None and part.held.startswith("store full")
    assert "free space on its disk" in part.held and part.error is None
    part.tick(105.0)  # the next round reads the peers, but does not write before the retry
    assert tries == [100.0]
    part.tick(110.0)
    assert tries == [100.0, 110.0] and part.refused == 2
    monkeypatch.setattr(peers, "publish", real)
    part.tick(140.0)
    assert part.held is None and part.refused == 0
    assert json.loads((peers.peers_dir(store) / "hostA.json").read_text())["last_seen"] == 140.0


def test_the_first_round_sweeps_stale_temp_files_of_the_coordination_folder(tmp_path):
    store = tmp_path / "mlruns"
    init_store(store)
    folder = peers.peers_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f"{TEMP_PREFIX}0123"
    stale.write_bytes(b"")
    os.utime(stale, (1.0, 1.0))
    Heartbeats(store, beat("hostA"), stale_after=60.0).tick(time.time())
    assert not stale.exists()
