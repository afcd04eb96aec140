"""Hostile files in the store, with real daemons and servers: FIFOs, symlinks to /dev/zero or to
a secret outside the store, and names that are not UTF-8.

A FIFO meta.yaml once froze the rewrite thread in open() and, through it, the main loop; a
FIFO conflict copy froze the conflicts thread while it held the cross-machine lease; a
symlinked copy to /dev/zero was read whole at every scan; a folder named with bytes that are
not UTF-8 killed the threads that met it. Each case asserts what status says, that the server
keeps serving, that the hostile file is still there (never deleted, never followed) and that
nothing outside the store and state folder changed.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from guard.sync.locks import list_locks
from tests.helpers.daemons import Guard, guardctl, healthy_guard, wait_for
from tests.helpers.store import DIRECT_STORE, EXP, RUN, copy_direct_store

pytestmark = pytest.mark.integration

SECRET = b"TOP-SECRET-TOKEN-7f3a"
STAMP = ".sync-conflict-20240103-090113-ABCDEF7"
FAST = ("conflicts:\n  scan_interval: 1\nvault:\n  scan_interval: 2\n"
        "server:\n  stop_grace: 5\nrewrite:\n  foreign_delay: 0\n")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return copy_direct_store(tmp_path)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret beside the store: it must never be read into the store or the state folder."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


def status(guard: Guard) -> tuple[int, dict]:
    done = guardctl("status", "--json", *guard.opts, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def serving(guard: Guard) -> bool:
    with urllib.request.urlopen(guard.url + "/health", timeout=10) as resp:
        return resp.read().strip() == b"OK"


def part_troubles(doc: dict) -> dict[str, dict]:
    """The parts that failed, are stuck or were restarted (none should be)."""
    return {name: p for name, p in (doc.get("parts") or {}).items()
            if p.get("error") or p.get("last_error") or p.get("restarts")
            or p.get("state") not in (None, "running")}


def status_keeps_moving(guard: Guard, samples: int = 3, gap: float = 2.5) -> None:
    """status.json's updated_at advances: the main loop is not blocked behind a part."""
    seen = []
    for _ in range(samples):
        raw = (guard.state_dir / "status.json").read_bytes()
        seen.append(json.loads(raw)["updated_at"])
        time.sleep(gap)
    assert seen == sorted(seen) and len(set(seen)) == samples, seen


def secret_nowhere(*roots: Path) -> None:
    for root in roots:
        for folder, _dirs, files in os.walk(os.fsencode(root)):
            for name in files:
                path = os.path.join(folder, name)
                if stat.S_ISREG(os.lstat(path).st_mode):
                    with open(path, "rb") as fh:
                        assert SECRET not in fh.read(), path


def stop_within(guard: Guard, seconds: float) -> None:
    started = time.monotonic()
    done = guard.ctl("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert guard.proc is not None
    guard.proc.wait(timeout=seconds)
    assert time.monotonic() - started < seconds


def first_pass_done(guard: Guard) -> dict | None:
    doc = guard.status()
    vault, conflicts = doc.get("vault") or {}, doc.get("conflicts") or {}
    rewrite = doc.get("portability") or {}
    return doc if vault.get("ready") and conflicts.get("last_scan") and \
        rewrite.get("rewrites_total") else None


def test_a_fifo_meta_yaml_moved_in_blocks_nothing(store: Path, make_guard, tmp_path: Path,
                                                  outside: Path) -> None:
    guard = healthy_guard(store, make_guard, tmp_path, FAST)
    wait_for(lambda: first_pass_done(guard), 60, what="the first passes")
    stage = store / EXP / ".stage"
    stage.mkdir()
    os.mkfifo(stage / "meta.yaml")
    os.rename(stage, store / EXP / "x")  # as in the report: the watcher sees a new folder
    fifo = store / EXP / "x" / "meta.yaml"

    def reported() -> list | None:
        problems = (guard.status().get("portability") or {}).get("problems") or []
        return [p for p in problems if "not a regular file but a FIFO" in json.dumps(p)] or None

    wait_for(reported, 30, what="the FIFO meta.yaml to be reported, unopened")
    ticked = guard.status()["parts"]["rewrite"]["last_tick"]
    status_keeps_moving(guard)
    wait_for(lambda: guard.status()["parts"]["rewrite"]["last_tick"] > ticked, 30,
             what="the rewrite part to go round again")
    code, doc = status(guard)
    assert code == 0, doc["reason"]
    assert part_troubles(doc) == {}
    assert serving(guard)
    # the main loop still keeps the server: a killed server is started again
    old = doc["server"]["pid"]
    os.kill(old, signal.SIGKILL)
    guard.wait_healthy(timeout=90, not_pid=old)
    assert serving(guard)
    stop_within(guard, 15)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left where it was
    assert (outside / "secret.txt").read_bytes() == SECRET
    secret_nowhere(store, guard.state_dir)


def test_fifo_and_symlinked_conflict_copies_are_left_alone(store: Path, make_guard,
                                                           tmp_path: Path,
                                                           outside: Path) -> None:
    guard = healthy_guard(store, make_guard, tmp_path, FAST)
    wait_for(lambda: first_pass_done(guard), 60, what="the first passes")
    run = store / EXP / RUN
    tag = next(p for p in sorted((run / "tags").iterdir()) if p.name == "mlflow.user")
    metric = next(p for p in sorted((run / "metrics").iterdir()) if p.is_file())
    param = next(p for p in sorted((run / "params").iterdir()) if p.is_file())
    fifo = tag.with_name(tag.name + STAMP)
    os.mkfifo(fifo)
    zero = metric.with_name(metric.name + STAMP)
    os.symlink("/dev/zero", zero)
    leak = param.with_name(param.name + STAMP)
    os.symlink(outside / "secret.txt", leak)
    # and one ordinary copy, so a pass takes (and must give back) the conflicts lease
    ordinary = tag.with_name(tag.name + STAMP.replace("ABCDEF7", "BCDEFG8"))
    ordinary.write_bytes(tag.read_bytes())
    daemon = psutil.Process(guard.proc.pid if guard.proc else 0)

    def settled() -> dict | None:
        c = guard.status().get("conflicts") or {}
        return c if c.get("left_alone") == 3 and c.get("resolved") == 1 else None

    first = wait_for(settled, 30, what="the copies to be resolved or left alone")
    rss = []
    later = first
    for _ in range(4):  # several scans (every second): the part keeps going, memory flat
        time.sleep(1.5)
        rss.append(daemon.memory_info().rss + sum(
            c.memory_info().rss for c in daemon.children() if "guard" in " ".join(c.cmdline())
            and "mlflow" not in " ".join(c.cmdline())))
        later = guard.status()["conflicts"]
    assert later["last_scan"] > first["last_scan"]
    assert max(rss) < 300 * 1024 * 1024, rss
    held = [lk for lk in list_locks(store, time.time())
            if lk["resource"] == "conflicts" and lk["state"] == "held" and not lk["released"]]
    assert held == []  # the lease was given back
    code, doc = status(guard)
    assert code == 0, doc["reason"]
    assert part_troubles(doc) == {}
    assert doc["conflicts"]["waiting"] == 0 and doc["conflicts"]["error"] is None
    assert "3 left alone" in guardctl("status", *guard.opts, timeout=60).stdout
    assert serving(guard)
    assert not ordinary.exists()  # the ordinary copy was resolved
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.readlink(zero) == "/dev/zero" and os.readlink(leak) == str(outside / "secret.txt")
    log = (guard.state_dir / "logs" / "guard.log").read_text(encoding="utf-8")
    assert log.count(f"{fifo.name}: the copy is a FIFO") == 1  # reported once
    stop_within(guard, 15)
    assert (outside / "secret.txt").read_bytes() == SECRET
    secret_nowhere(store, guard.state_dir)


def test_names_that_are_not_utf8_break_no_part(store: Path, make_guard, tmp_path: Path,
                                                outside: Path) -> None:
    guard = healthy_guard(store, make_guard, tmp_path, FAST)
    wait_for(lambda: first_pass_done(guard), 60, what="the first passes")
    exp = os.fsencode(store / EXP)
    bad_run = exp + b"/\xff\xfe"
    for sub in (b"metrics", b"params", b"tags", b"artifacts"):
        os.makedirs(bad_run + b"/" + sub)
    # a run's meta.yaml in a folder it does not name: the rewrite part reports it by its path
    with open(bad_run + b"/meta.yaml", "wb") as fh:
        fh.write((DIRECT_STORE / EXP / RUN / "meta.yaml").read_bytes())
    metrics = exp + b"/" + RUN.encode() + b"/metrics/"
    bad_metric = metrics + b"l\xe9oss"
    with open(bad_metric, "wb") as fh:
        fh.write(b"1700000000000 0.5 0\n")
    with open(bad_metric + STAMP.encode(), "wb") as fh:  # a conflict copy of it from hostB
        fh.write(b"1700000000000 0.5 0\n1700000001000 0.4 1\n")
    bad_meta = os.fsdecode(bad_run[len(os.fsencode(store)) + 1:] + b"/meta.yaml")

    def reported() -> list | None:
        problems = (guard.status().get("portability") or {}).get("problems") or []
        return [p for p in problems if p.get("file") == bad_meta] or None

    wait_for(reported, 30, what="the run folder's meta.yaml to be reported by its own name")
    wait_for(lambda: (guard.status().get("conflicts") or {}).get("resolved"), 30,
             what="the conflict copy with the non-UTF-8 name to be resolved")
    time.sleep(3)  # a vault pass over the new names
    status_keeps_moving(guard)
    raw = (guard.state_dir / "status.json").read_bytes()
    raw.decode("ascii")
    doc = json.loads(raw)  # still valid JSON, the names escaped in it
    assert part_troubles(doc) == {}
    code, shown = status(guard)
    assert code == 0, shown["reason"]
    text = subprocess.run([*guardctl_cmd(), "status", *guard.opts], capture_output=True,
                          timeout=60)
    assert text.returncode == 0 and b"Traceback" not in text.stderr, text.stderr
    text.stdout.decode("utf-8")
    assert serving(guard)
    log = (guard.state_dir / "logs" / "guard.log").read_text(encoding="utf-8")
    assert "metrics/l\\xe9oss" + STAMP in log  # the escaped name, not a dropped line
    assert "Logging error" not in guard.output()
    stop_within(guard, 15)
    with open(bad_metric, "rb") as fh:  # the copy's point merged in, under the same bytes
        assert fh.read() == b"1700000000000 0.5 0\n1700000001000 0.4 1\n"
    assert not os.path.lexists(bad_metric + STAMP.encode())
    assert (outside / "secret.txt").read_bytes() == SECRET


def guardctl_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "guard.cli"]
