"""Credentials in other processes' command lines never reach the state folder or `guardctl
status` (issue 13, attack 7): an `mlflow gc` aimed at the store with `user:password@` in its
tracking URI is still reported, with the password masked.

A real daemon; the gc is a stand-in that lives long enough: a script named `mlflow` (so the
guard recognises it as `mlflow gc`, see processes.gc_aimed_at) that sleeps, started and ended
by the test, by pid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.daemons import healthy_guard, wait_for

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Pa55"


def every_text(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_bytes().decode("utf-8", "replace")
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
            and not p.relative_to(folder).as_posix().startswith("vault/objects/")}


def test_a_gc_with_credentials_is_reported_without_them(new_store, make_guard, tmp_path):
    guard = healthy_guard(new_store, make_guard, tmp_path)
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(600)\n")
    gc = subprocess.Popen(
        [sys.executable, str(fake), "gc", "--backend-store-uri", str(new_store),
         "--tracking-uri", f"http://alice:{SECRET}@127.0.0.1:{guard.port}",
         "--password", SECRET, f"MLFLOW_TRACKING_PASSWORD={SECRET}", "--older-than", "1d"])
    try:
        doc = wait_for(lambda: next((g for g in guard.status().get("gc_processes", [])
                                     if g["pid"] == gc.pid), None), 30, what="gc in status")
        assert "alice:***@127.0.0.1" in doc["command"]
        wait_for(lambda: f"pid {gc.pid}" in (guard.state_dir / "logs" / "guard.log").read_text(),
                 10, what="the gc in guard.log")
        shown = guard.ctl("status")
        as_json = guard.ctl("status", "--json")
        assert f"pid {gc.pid}" in shown.stdout and str(gc.pid) in as_json.stdout
        json.loads(as_json.stdout)
        leaks = [name for name, text in every_text(guard.state_dir).items() if SECRET in text]
        assert leaks == []
        for out in (shown, as_json):
            assert SECRET not in out.stdout + out.stderr
    finally:
        gc.kill()
        gc.wait(timeout=10)
