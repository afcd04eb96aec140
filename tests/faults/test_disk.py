"""A store the disk refuses to write, and kills in the middle of a pass.

- A full store (a small tmpfs the test mounts: CI runs as root): rewriting and heartbeats are
  held with "store full", status is DEGRADED, the server keeps serving, no temp file and no
  partial meta.yaml is left; once space is freed both resume by themselves and the pending
  files are rewritten.
- A store the daemon's user may not write (a throwaway user made with useradd; CI runs as
  root): the same with "no permission to write", and `guardctl fix` ends with a message and
  exit 1, no traceback. The user gets CAP_DAC_READ_SEARCH only, to reach the project's Python
  under /root: it reads everything and writes only what it owns.
- `kill -9` of `guardctl fix` or of the daemon during a pass: undo gives back every byte.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard.core.journal import read_journal
from guard.core.layout import TEMP_PREFIX
from guard.core.metayaml import parse
from tests.helpers.daemons import Guard, guardctl, wait_for
from tests.helpers.disks import files_of, fill_blocks, health, tmpfs
from tests.helpers.store import copy_direct_store
from tests.helpers.users import as_user, throwaway_user

pytestmark = pytest.mark.integration

USER = "mlflowguard-test"
INODES = 400
CONFIG = ("server:\n  health_interval: 1\npeers:\n  heartbeat_interval: 1\n  stale_after: 30\n"
          "rewrite:\n  foreign_delay: 0\n  experiment_quiet: 0\n")


def metas(store: Path) -> dict[str, bytes]:
    return {k: v for k, v in files_of(store).items() if k.endswith("meta.yaml")}


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")]


def parts(guard: Guard) -> dict:
    return guard.status().get("parts") or {}


def held(guard: Guard, name: str) -> str:
    return (parts(guard).get(name) or {}).get("held") or ""


# --- a full store -----------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MB tmpfs with few inodes, unmounted at teardown."""
    with tmpfs(tmp_path / "disk", "4m", INODES) as mount:
        yield mount


def fill(folder: Path) -> list[Path]:
    """Leave no byte free (inodes stay: a temp file can be made, but not written, which is
    what left a 0-byte temp file per failed heartbeat); returns the files that fill it."""
    made = [fill_blocks(folder)]
    with pytest.raises(OSError) as full:
        (folder / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    (folder / "probe").unlink()
    return made


def test_full_store_holds_rewriting_and_heartbeats_then_both_resume(small_tmpfs, make_guard,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = copy_direct_store(small_tmpfs)  # foreign paths: 5 files to rewrite
    (store / ".trash").mkdir()  # MLflow's server creates it at start: it needs no room then
    original = metas(store)
    fillers = fill(small_tmpfs)
    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG)
    outside = files_of(tmp_path, skip="disk")
    before = files_of(store)
    guard = make_guard(store, config=config).start()
    guard.wait_healthy()
    wait_for(lambda: "store full" in held(guard, "rewrite") and "store full" in held(guard,
             "peers"), 60, what="rewriting and heartbeats held")
    status = guard.ctl("status")
    assert status.returncode == 1, status.stdout
    assert "DEGRADED" in status.stdout and "full" in status.stdout
    assert "free space on its disk" in held(guard, "rewrite")
    assert health(guard.url) == "OK"  # the server keeps serving
    time.sleep(2)  # a few refused heartbeats
    assert files_of(store) == before  # nothing partial, no temp file
    assert temps(small_tmpfs) == []
    after = files_of(tmp_path, skip="disk")
    changed = {k for k in set(outside) | set(after) if outside.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith(("guard-run-", "state0/"))} == set()

    for path in fillers:
        path.unlink()
    wait_for(lambda: not held(guard, "rewrite") and not held(guard, "peers"), 90,
             what="both parts to resume by themselves")
    wait_for(lambda: (guard.status().get("portability") or {}).get("rewrites_total") == 5, 30,
             what="the pending files rewritten")
    wait_for(lambda: guard.ctl("status").returncode == 0, 30, what="status OK again")
    assert all(v.startswith(("mlflow-artifacts:/", "models:/"))
               for k, b in metas(store).items()
               for key, v in parse(b).items() if key in ("artifact_uri", "artifact_location"))
    assert (store / "mlflow-guard.trash" / "peers").is_dir()
    assert temps(small_tmpfs) == []
    assert guard.ctl("stop").returncode == 0
    guard.proc.wait(timeout=60)
    journal = guard.state_dir / "journal" / "rewrites.jsonl"
    res = guardctl("fix", "--undo", str(journal), "--store", str(store), "--state-dir",
                   str(guard.state_dir))
    assert res.returncode == 0 and "undone: 5" in res.stdout, res.stdout + res.stderr
    assert metas(store) == original


# --- a store the daemon's user may not write --------------------------------------------------

@pytest.fixture(scope="session")
def test_user():
    with throwaway_user(USER) as user:
        yield user


class UserGuard(Guard):
    """A daemon run as another user."""

    def __init__(self, *args, user: pwd.struct_passwd, **kw) -> None:
        super().__init__(*args, **kw)
        self.user = user

    def start(self) -> UserGuard:
        log = open(self.state_dir.parent / f"guard-run-{self.state_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [*as_user(self.user), sys.executable, "-m", "guard.cli", "run", "--store",
             str(self.store), *self.opts], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env})
        log.close()
        return self


def test_store_the_user_may_not_write_holds_and_fix_says_why(test_user, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = copy_direct_store(tmp_path)  # owned by root: the user may read, not write
    (store / ".trash").mkdir()  # MLflow's server creates it at start
    original = metas(store)
    home = tmp_path / "home"
    state = tmp_path / "state"
    for folder in (home, state):
        folder.mkdir()
        os.chown(folder, test_user.pw_uid, test_user.pw_gid)
    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG)
    env = {"HOME": str(home)}

    fix = subprocess.run([*as_user(test_user), sys.executable, "-m", "guard.cli", "fix",
                          "--store", str(store), "--state-dir", str(state), "--config",
                          str(config)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert fix.returncode == 1, fix.stdout + fix.stderr
    assert "Traceback" not in fix.stderr
    assert "no permission to write in the store" in fix.stderr
    assert "give the guard's user write access" in fix.stderr
    assert metas(store) == original and temps(store) == []

    from tests.helpers.daemons import free_port
    guard = UserGuard(store, state, free_port(), config=config, env=env, user=test_user)
    try:
        guard.start()
        doc = guard.wait_healthy()
        assert pwd.getpwuid(os.stat(f"/proc/{doc['daemon']['pid']}").st_uid).pw_name == USER
        wait_for(lambda: "no permission" in held(guard, "rewrite")
                 and "no permission" in held(guard, "peers"), 60, what="both parts held")
        status = guard.ctl("status")
        assert status.returncode == 1 and "DEGRADED" in status.stdout
        assert "no permission to write" in status.stdout
        assert health(guard.url) == "OK"
        assert metas(store) == original and temps(store) == []

        for folder, _, names in os.walk(store):  # the condition clears: the user may write
            os.chown(folder, test_user.pw_uid, test_user.pw_gid)
            for name in names:
                os.chown(os.path.join(folder, name), test_user.pw_uid, test_user.pw_gid)
        wait_for(lambda: not held(guard, "rewrite") and not held(guard, "peers"), 90,
                 what="both parts to resume by themselves")
        wait_for(lambda: (guard.status().get("portability") or {}).get("rewrites_total") == 5,
                 30, what="the pending files rewritten")
        assert temps(store) == []
    finally:
        guard.teardown()


# --- kill -9 during a pass, then undo ---------------------------------------------------------

def generated_store(root: Path, runs: int) -> Path:
    """A store of direct-client runs with foreign paths (bench/bench_rewrite.py's generator)."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    sys.path.insert(0, str(bench))
    try:
        from bench_rewrite import StoreGenerator
    finally:
        sys.path.remove(str(bench))
    store = root / "mlruns"
    StoreGenerator(store).generate(runs)
    return store


def journal_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("who", ["fix", "daemon"])
def test_kill_during_a_pass_then_undo_gives_back_every_byte(who, tmp_path, make_guard,
                                                            monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = generated_store(tmp_path, 1500)
    pristine = tmp_path / "pristine"
    shutil.copytree(store, pristine, symlinks=True)
    original = files_of(pristine)
    state = tmp_path / "state"
    journal = state / "journal" / "rewrites.jsonl"
    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG)
    if who == "fix":
        proc = subprocess.Popen([sys.executable, "-m", "guard.cli", "fix", "--store",
                                 str(store), "--state-dir", str(state), "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        guard = None
    else:
        guard = make_guard(store, state_dir=state, config=config).start()
        proc = guard.proc
    wait_for(lambda: journal_lines(journal) >= 400 or proc.poll() is not None, 120, 0.01,
             what="the pass under way")
    assert proc.poll() is None, "the pass ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if guard is not None:
        guard.teardown()  # the orphaned server tree, by the pids the daemon recorded

    killed = files_of(store)
    for rel, data in killed.items():
        if rel.endswith("meta.yaml"):
            parse(data)  # no partial meta.yaml
    assert sum(1 for k in killed if killed[k] != original.get(k)) > 0  # it was rewriting
    intents = {r["file"] for r in read_journal(journal)}
    changed = {k for k in original if killed.get(k) != original[k]}
    assert changed <= intents  # every changed file has its journal line
    res = guardctl("fix", "--undo", str(journal), "--store", str(store), "--state-dir",
                   str(state))
    assert res.returncode == 0, res.stdout + res.stderr
    after = files_of(store)
    leftovers = {k for k in after if Path(k).name.startswith(TEMP_PREFIX)}
    assert {k: v for k, v in after.items() if k not in leftovers
            and not k.startswith("mlflow-guard.trash/")} == original
