"""Every part supervised, and a status that cannot go stale, with real daemons and servers.

A part whose work raises (here the vault, whose index file was replaced by a folder so that
saving it fails) is reported DEGRADED by name, restarted with backoff under the server's rules
once the cause is gone, and after a crash loop waits for `guardctl restart`. A daemon that
stops responding (SIGSTOP) is DEGRADED within seconds, never OK, and OK again once it goes on.
Throughout, the server keeps answering /health, and nothing in the store is lost or changed
but what the test itself wrote.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.daemons import Guard, guardctl, healthy_guard, wait_for

pytestmark = pytest.mark.integration

FAST_RESTARTS = ("vault:\n  scan_interval: 1\n"
                 "restart:\n  backoff_initial: 1\n  backoff_max: 2\n  crash_loop_count: 4\n"
                 "  crash_loop_window: 600\n")


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (the guard's own coordination folder left out)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith("mlflow-guard.")}


class HealthWatch:
    """GET /health every half second in the background; any failure is kept."""

    def __init__(self, url: str) -> None:
        self.url, self.failures, self.probes = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
                    resp.read()
                self.probes += 1
            except OSError as exc:
                self.failures.append(repr(exc))


def status(guard: Guard) -> tuple[int, dict]:
    done = guardctl("status", "--json", *guard.opts, timeout=60)
    return done.returncode, json.loads(done.stdout)


def status_is(guard: Guard, exit_code: int, words: str = ""):
    """A predicate: `guardctl status` exits `exit_code` with `words` in its reason."""
    def check():
        code, doc = status(guard)
        return doc if code == exit_code and words in doc["reason"] else None
    return check


def vault_state(guard: Guard) -> str | None:
    return ((guard.status().get("parts") or {}).get("vault") or {}).get("state")


def test_a_failing_part_is_degraded_by_name_restarted_and_resumed(new_store, make_guard,
                                                                  tmp_path):
    guard = healthy_guard(new_store, make_guard, tmp_path, FAST_RESTARTS)
    wait_for(lambda: guard.status().get("vault", {}).get("ready"), 60, what="the vault ready")
    code, doc = status(guard)
    assert code == 0 and doc["parts"]["vault"]["state"] == "running", doc["reason"]
    before = files_of(new_store)
    index = guard.state_dir / "vault" / "index.sqlite"
    with HealthWatch(guard.url) as served:
        # the cause: the vault's index cannot be replaced; a new store file makes it save
        index.unlink()
        index.mkdir()
        (new_store / "0" / "tags").mkdir(exist_ok=True)
        (new_store / "0" / "tags" / "note").write_text("written by the test")
        wait_for(lambda: vault_state(guard) == "backoff", 60, 0.05, what="the vault to fail")
        index.rmdir()  # fixed while it waits: the restart alone brings it back
        doc = wait_for(status_is(guard, 0, "serving"), 60, what="OK after the restart")
        vault = doc["parts"]["vault"]
        assert vault["state"] == "running" and vault["restarts"] >= 1
        assert "IsADirectoryError" in vault["last_error"]
        assert index.is_file()

        # the same cause again, left in place: a crash loop, which only `guardctl restart` ends
        index.unlink()
        index.mkdir()
        (new_store / "0" / "tags" / "note2").write_text("written by the test")
        doc = wait_for(status_is(guard, 1, "vault keeps failing"), 90, what="a crash loop")
        assert "`guardctl restart`" in doc["reason"] and "IsADirectoryError" in doc["reason"]
        assert doc["parts"]["vault"]["state"] == "crash loop"
        text = guardctl("status", *guard.opts).stdout
        assert "  PART      vault keeps failing" in text
        index.rmdir()
        time.sleep(5)  # longer than any backoff: fixed, but nothing restarts it by itself
        assert vault_state(guard) == "crash loop"
    assert served.failures == [] and served.probes > 10  # the server served throughout
    done = guard.ctl("restart")  # restarts the server too, on purpose
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed vault" in done.stdout
    doc = wait_for(status_is(guard, 0, "serving"), 60, what="OK after `guardctl restart`")
    assert doc["parts"]["vault"]["state"] == "running"
    after = files_of(new_store)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing lost or changed
    assert set(after) - set(before) == {"0/tags/note", "0/tags/note2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["mlruns", "guard.yaml", guard.state_dir.name, f"guard-run-{guard.state_dir.name}.log"])


def test_a_daemon_that_stops_responding_is_degraded_then_ok_again(new_store, make_guard,
                                                                  tmp_path):
    guard = healthy_guard(new_store, make_guard, tmp_path)
    assert guard.proc is not None
    wait_for(status_is(guard, 0, "serving"), 30, what="OK")
    with HealthWatch(guard.url) as served:
        os.kill(guard.proc.pid, signal.SIGSTOP)  # the daemon, not its server
        stopped = time.monotonic()
        try:
            doc = wait_for(status_is(guard, 1, "daemon not responding"), 30, 1.0,
                           what="DEGRADED while the daemon is stopped")
            took = time.monotonic() - stopped
            assert "status file" in doc["reason"] and took < 15
            assert status(guard)[0] == 1  # and stays so, never OK, while it is stopped
        finally:
            os.kill(guard.proc.pid, signal.SIGCONT)
        wait_for(status_is(guard, 0, "serving"), 30, what="OK once it goes on")
    assert served.failures == [] and served.probes > 5
    print(f"DEGRADED {took:.1f} s after SIGSTOP")
