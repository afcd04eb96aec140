"""The locks shell over real folders: lease locks between hosts kept in sync by the simulated
sync client, and OS locks held by real processes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guard.sync import leases
from guard.sync.locks import (
    HostLock,
    LeaseLock,
    Lingering,
    LockSettings,
    LockTimeout,
    OsLock,
    linger_over,
    list_locks,
    locks_dir,
    read_leases,
)
from guard.sync.peers import Heartbeat, publish

SETTLE = 1.0  # the simulated sync needs delay (0.2 s) + a scan interval (0.1 s) and some slack


def lease_lock(store: Path, host: str, resource: str = "model-m", **kw) -> LeaseLock:
    opts = dict(settle=SETTLE, ttl=10.0, renew_every=1.0)
    opts.update(kw)
    return LeaseLock(store, host, resource, **opts)


def test_two_hosts_contending_never_both_hold_once_settled(synced):
    """Each host takes, holds and releases the same lock over and over; the hold intervals
    of the two hosts never overlap, and both get the lock."""
    (store_a, store_b), syncer = synced(2, delay=0.2)
    holds: dict[str, list[tuple[float, float]]] = {"hostA": [], "hostB": []}
    errors: list[BaseException] = []

    def worker(store: Path, host: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(4):
                lock = lease_lock(store, host)
                lock.acquire(timeout=60)
                start = time.monotonic()
                assert lock.holding()
                time.sleep(rng.uniform(0.2, 0.5))
                end = time.monotonic()
                lock.release()
                holds[host].append((start, end))
                time.sleep(rng.uniform(0.0, 0.4))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(store, host, i))
               for i, (store, host) in enumerate(((store_a, "hostA"), (store_b, "hostB")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert len(holds["hostA"]) == 4 and len(holds["hostB"]) == 4
    for a_start, a_end in holds["hostA"]:
        for b_start, b_end in holds["hostB"]:
            assert a_end <= b_start or b_end <= a_start, "both hosts held the lock at once"
    syncer.settle(30)
    assert list_locks(store_a, time.time()) == list_locks(store_b, time.time()) == []


def test_a_waiting_host_times_out_naming_the_holder_then_gets_it_after_release(synced):
    (store_a, store_b), syncer = synced(2, delay=0.2)
    a = lease_lock(store_a, "hostA")
    a.acquire(timeout=30)
    syncer.settle(30)
    b = lease_lock(store_b, "hostB")
    with pytest.raises(LockTimeout, match="hostA holds model-m"):
        b.acquire(timeout=1.5)
    (held,) = [lock for lock in list_locks(store_b, time.time()) if not lock["released"]]
    assert held["holder"] == "hostA" and held["state"] == "held"
    assert "held by hostA" in held["text"]
    a.release()
    b.acquire(timeout=30)
    assert b.holding()
    b.release()


def test_held_lease_is_renewed_and_removed_on_release(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    lock = lease_lock(store, "hostA", ttl=3.0, renew_every=0.3, settle=0.1)
    lock.acquire(timeout=10)
    first = read_leases(locks_dir(store) / "model-m")[0]
    time.sleep(1.0)
    later = read_leases(locks_dir(store) / "model-m")[0]
    assert later.state == leases.HELD and later.expires_at > first.expires_at
    assert later.claimed_at == first.claimed_at
    lock.release()
    assert not (locks_dir(store) / "model-m" / "hostA.json").exists()


def test_a_crashed_holder_with_a_stale_heartbeat_does_not_block(tmp_path):
    """A host that died holding a lease (its file stays, its heartbeat goes stale) blocks the
    lock only until its heartbeat is stale_after old, not until the lease's far expiry."""
    store = tmp_path / "mlruns"
    store.mkdir()
    now = time.time()
    dead = leases.take(leases.claim("model-m", "hostA", now - 100, 3600, "t1"), now - 99, 3600)
    (locks_dir(store) / "model-m").mkdir(parents=True)
    (locks_dir(store) / "model-m" / "hostA.json").write_text(json.dumps(dead.__dict__))
    publish(store, Heartbeat("hostA", 1, "0", "3.0", "linux", "/x", now - 100, now - 90, 5))
    beats = {"hostA": now - 90}
    blocked = lease_lock(store, "hostB", settle=0.1)
    with pytest.raises(LockTimeout, match="hostA holds"):
        blocked.acquire(timeout=0.5)
    lock = lease_lock(store, "hostB", settle=0.1, stale_after=30, heartbeats=lambda: beats)
    lock.acquire(timeout=5)
    assert lock.holding()
    lock.release()


HOLDER = """
import sys, time
from pathlib import Path
from guard.sync.locks import OsLock
lock = OsLock(Path(sys.argv[1]), "nas-host", "model-m")
lock.acquire(10)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_os_backend_lock_held_by_another_process(tmp_path):
    """The OS arbitrates: while a real process holds the lock nobody else gets it (the error
    names the holder); when that process dies the OS frees it."""
    store = tmp_path / "share" / "mlruns"
    store.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        (listed,) = list_locks(store, time.time())
        assert listed["backend"] == "os" and listed["holder"] == "nas-host"
        mine = OsLock(store, "other-host", "model-m")
        with pytest.raises(LockTimeout, match="held by nas-host"):
            mine.acquire(0.5)
    finally:
        proc.kill()
        proc.wait(10)
    assert list_locks(store, time.time()) == []  # the dead holder's record is not a lock
    mine.acquire(5)
    assert mine.holding()
    mine.release()


def test_host_lock_serializes_this_hosts_processes(tmp_path):
    """Two processes of one host share its lease file; the local lock keeps them apart."""
    (tmp_path / "mlruns").mkdir()
    settings = LockSettings(str(tmp_path / "mlruns"), str(tmp_path / "state"), "hostA",
                            "lease", 0.1, 10, 1, 0, 0.5, 60)
    with HostLock(settings, "model-m"):
        with pytest.raises(LockTimeout, match="another process of this host"):
            HostLock(settings, "model-m").acquire()
    with HostLock(settings, "model-m"):
        pass
    assert LockSettings.from_env(settings.to_env()) == settings


def test_read_leases_never_blocks_on_a_fifo_lease(tmp_path):
    """A FIFO in a lease folder would freeze every host that tries to take the lock."""
    store = tmp_path / "mlruns"
    store.mkdir()
    lock = lease_lock(store, "hostA", ttl=30.0, renew_every=10.0, settle=0.1)
    lock.acquire(timeout=10)
    import os

    os.mkfifo(locks_dir(store) / "model-m" / "hostB.json")
    found = []
    thread = threading.Thread(target=lambda: found.extend(read_leases(
        locks_dir(store) / "model-m")), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "read_leases blocked on the FIFO"
    assert [le.host_id for le in found] == ["hostA"]
    lock.release()


def beat_of(host: str, last_seen: float, since: float | None) -> Heartbeat:
    return Heartbeat(host, 1, "0", "3.0", "linux", "/x", since or last_seen, last_seen, 5,
                     beating_since=since)


def timed_hold(settings: LockSettings) -> float:
    start = time.monotonic()
    with HostLock(settings, "model-m"):
        return time.monotonic() - start


def test_host_lock_settles_for_the_measured_sync_delay(tmp_path):
    """Through the heartbeat files: alone, no settle; with a live peer whose heartbeat took
    0.6 s to arrive, 2 * 0.6 + 0.5 s; started less than locks.settle ago, until
    beating_since + 2 * locks.settle."""
    store = tmp_path / "mlruns"
    store.mkdir()
    settings = LockSettings(str(store), str(tmp_path / "state"), "hostA", "lease", 3.0, 30, 5,
                            0, 20, 60)
    publish(store, beat_of("hostA", time.time(), since=time.time() - 100))
    alone = timed_hold(settings)
    publish(store, beat_of("hostB", time.time() - 0.6, since=0.0))  # arrives now: lag 0.6 s
    with_peer = timed_hold(settings)
    publish(store, beat_of("hostA", time.time(), since=time.time() - 2.5))
    young = timed_hold(settings)
    print(f"alone {alone:.3f} s, with a peer 0.6 s behind {with_peer:.3f} s, "
          f"just started {young:.3f} s")
    assert alone < 0.5
    assert 1.6 < with_peer < 2.6
    assert 3.2 < young < 4.3  # beating_since + 6 s, 2.5 s ago


def test_a_host_releasing_and_claiming_again_lets_a_waiting_host_go_first(tmp_path):
    """Host A holds; B waits (its 'waiting' record); A releases and at once wants the lock
    again: B gets it first."""
    store = tmp_path / "mlruns"
    store.mkdir()
    order: list[str] = []
    a = lease_lock(store, "hostA", settle=0.2)
    a.acquire(timeout=5)
    order.append("A")

    def b_wants() -> None:
        b = lease_lock(store, "hostB", settle=0.2)
        b.acquire(timeout=20)
        order.append("B")
        time.sleep(0.3)
        b.release()

    thread = threading.Thread(target=b_wants)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(x.state == leases.WAITING for x in read_leases(locks_dir(store) / "model-m")):
        assert time.monotonic() < deadline, "B never queued"
        time.sleep(0.02)
    a.release()
    again = lease_lock(store, "hostA", settle=0.2)
    again.acquire(timeout=20)
    order.append("A")
    again.release()
    thread.join(10)
    assert order == ["A", "B", "A"]


@pytest.mark.parametrize("now, holding, wanted_here, others_waiting, why", [
    (1.0, True, False, False, None),
    (5.0, True, False, False, "the linger is over"),
    (1.0, False, False, False, "no longer held"),
    (1.0, True, True, False, "a process of this host waits for it"),
    (1.0, True, False, True, "another host waits for it"),
])
def test_a_lingering_lock_is_given_up_when_over_lost_or_wanted(now, holding, wanted_here,
                                                                  others_waiting, why):
    assert linger_over(now, 5.0, holding, wanted_here, others_waiting) == why


def peer_settings(tmp_path: Path, settle: float = 3.0) -> LockSettings:
    """A host whose claims settle about 1.7 s: a live peer's heartbeat arrives 0.6 s late."""
    store = tmp_path / "mlruns"
    store.mkdir(exist_ok=True)
    publish(store, beat_of("hostA", time.time(), since=time.time() - 100))
    publish(store, beat_of("hostB", time.time() - 0.6, since=0.0))
    return LockSettings(str(store), str(tmp_path / "state"), "hostA", "lease", settle, 30, 5,
                        0, 20, 60)


def test_a_lingering_lock_is_taken_over_by_the_next_request_without_settling(tmp_path):
    """Kept after one request, the lock is the next request's (another thread) at once: no
    new claim, no settle; released there, it is free for everyone."""
    settings = peer_settings(tmp_path)
    first = HostLock(settings, "model-m")
    start = time.monotonic()
    first.acquire()
    settled = time.monotonic() - start
    kept = Lingering()
    kept.keep(first, 10.0)
    taken: list = []

    def next_request() -> None:
        start = time.monotonic()
        lock = kept.take("model-m")
        taken.append((lock, time.monotonic() - start, lock is not None and lock.holding()))
        if lock is not None:
            lock.release()
    thread = threading.Thread(target=next_request)
    thread.start()
    thread.join(10)
    (lock, waited, held), = taken
    print(f"first request settled {settled:.2f} s, the next took the kept lock in "
          f"{waited * 1000:.1f} ms")
    assert lock is first and held and waited < 0.1 and settled > 1.0
    assert kept.take("model-m") is None
    assert not (locks_dir(Path(settings.store)) / "model-m" / "hostA.json").exists()
    other = HostLock(settings, "model-m")  # the local lock was freed by the other thread
    other.acquire(timeout=5)
    other.release()


def test_a_lingering_lock_is_released_when_the_linger_ends_or_at_shutdown(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    settings = LockSettings(str(store), str(tmp_path / "state"), "hostA", "lease", 0.1, 30, 5,
                            0, 5, 60)
    kept = Lingering()
    lock = HostLock(settings, "model-m")
    lock.acquire()
    kept.keep(lock, 0.4)
    lease = locks_dir(store) / "model-m" / "hostA.json"
    assert lease.exists()
    deadline = time.monotonic() + 3
    while lease.exists():
        assert time.monotonic() < deadline, "the linger never ended"
        time.sleep(0.05)
    assert kept.take("model-m") is None and not lock.holding()
    for seconds in (0.0, 60.0):  # no linger: released at once; a long one: at shutdown
        lock = HostLock(settings, "model-m")
        lock.acquire()
        kept.keep(lock, seconds)
        if seconds:
            assert lease.exists()
            kept.release_all()
        assert not lease.exists() and not lock.holding()
        assert kept.take("model-m") is None


def test_a_process_of_this_host_waiting_ends_the_linger(tmp_path):
    """Another worker of the server (or guardctl) waiting for the local lock: the lingering
    lock is given up at once, not after the linger."""
    store = tmp_path / "mlruns"
    store.mkdir()
    settings = LockSettings(str(store), str(tmp_path / "state"), "hostA", "lease", 0.1, 30, 5,
                            0, 20, 60)
    kept = Lingering()
    lock = HostLock(settings, "model-m")
    lock.acquire()
    kept.keep(lock, 60.0)
    start = time.monotonic()
    other = HostLock(settings, "model-m")  # another open file: the OS lock as between processes
    other.acquire()
    waited = time.monotonic() - start
    other.release()
    print(f"a waiting process got the lingering lock after {waited:.2f} s")
    assert waited < 1.0 and kept.take("model-m") is None


def test_a_host_waiting_ends_the_linger(synced):
    """Another host's 'waiting' record, once synced here, ends the linger: it waits about a
    sync delay, not the linger."""
    (store_a, store_b), syncer = synced(2, delay=0.2)
    settings = LockSettings(str(store_a), str(store_a.parent.parent / "state"), "hostA",
                            "lease", 0.2, 30, 5, 0, 20, 60)
    kept = Lingering()
    lock = HostLock(settings, "model-m")
    lock.acquire()
    kept.keep(lock, 60.0)
    syncer.settle(30)
    b = lease_lock(store_b, "hostB", settle=0.2)
    start = time.monotonic()
    b.acquire(timeout=30)
    waited = time.monotonic() - start
    b.release()
    print(f"host B got the lingering lock after {waited:.2f} s")
    assert waited < 5.0 and kept.take("model-m") is None


def test_a_settling_claim_tells_the_waiter_why(tmp_path):
    """The acquire path reports each wait (a command shows it as a progress line)."""
    store = tmp_path / "mlruns"
    store.mkdir()
    heard: list[str] = []
    lock = lease_lock(store, "hostA", settle=0.6)
    lock.acquire(timeout=5, on_wait=heard.append)
    lock.release()
    assert heard and all("for other claims to sync" in why for why in heard)
    assert "s more at most)" in heard[0]


def test_waiting_for_another_process_of_this_host_is_reported(tmp_path):
    (tmp_path / "mlruns").mkdir()
    settings = LockSettings(str(tmp_path / "mlruns"), str(tmp_path / "state"), "hostA",
                            "lease", 0.1, 10, 1, 0, 0.5, 60)
    first = HostLock(settings, "model-m")
    first.acquire()
    threading.Timer(1.2, first.release).start()
    heard: list[str] = []
    second = HostLock(settings, "model-m")
    second.acquire(timeout=10, on_wait=heard.append)
    second.release()
    assert "another process of this host holds model-m" in heard
