"""The daemon over a hostile store (issue 13): symlinks to outside files and folders, to
/dev/zero, dangling ones, loops, absolute and relative `../..` targets, in every kind of
place; FIFOs; 20 GB sparse files; crafted conflict-copy names (Syncthing, Synology, Dropbox
forms; `..`, newlines, bytes that are not UTF-8); malformed and malicious YAML. Seeded before
the daemon starts and again while it runs; then real clients log runs, a run's meta.yaml is
removed (the vault restores it) and a conflict copy is resolved.

What must hold: a decoy folder beside the store (the target of every symlink) is untouched,
file list, sizes and mtimes in ns; nothing was created outside the store and the state folder;
no outside file was linked or copied in; every symlink and FIFO is still there, as it was (the
guard never deletes user data); the daemon still answers, no part crashed, memory is bounded;
the server serves; and the ordinary work (restore, resolution) still gets done.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path
from pprint import pformat

import psutil
import pytest

from guard.core.layout import COORDINATION
from tests.helpers.clients import result_of, start_training_client
from tests.helpers.daemons import wait_for
from tests.helpers.hostile import (
    SECRET,
    STAMP,
    answers,
    changes,
    holding,
    kept,
    make_decoy,
    serving,
    shared_inodes,
    snapshot,
    vault_journal,
)
from tests.helpers.store import EXP, MODEL, RUN, copy_direct_store

pytestmark = pytest.mark.integration

HOST = "hostile-a"
SPARSE = 20 * 1024**3
CONFIG = (f"host_id: {HOST}\nserver:\n  health_interval: 1\n  stop_grace: 5\n"
          "locks:\n  settle: 1\n  ttl: 20\n  renew_every: 2\n"
          "peers:\n  heartbeat_interval: 1\n  stale_after: 10\n"
          "conflicts:\n  scan_interval: 1\nvault:\n  scan_interval: 2\n"
          "rewrite:\n  foreign_delay: 0\n")

# Where symlinks and FIFOs are planted before the daemon starts: every kind of place.
PLACES_BEFORE = ("", EXP, f"{EXP}/{RUN}", f"{EXP}/{RUN}/params", f"{EXP}/{RUN}/metrics",
                 f"{EXP}/{RUN}/tags", f"{EXP}/{RUN}/artifacts", f"{EXP}/models/{MODEL}",
                 "models", "models/adder", "models/adder/version-1", COORDINATION,
                 f"{COORDINATION}/tombstones", ".trash")
# ... and while it runs.
PLACES_RUNNING = (f"{EXP}/{RUN}", f"{EXP}/{RUN}/params", f"{EXP}/{RUN}/artifacts",
                  "models/adder/version-1", COORDINATION, ".trash", "0")


def plant(store: Path, decoy: Path, places: tuple[str, ...], sfx: str) -> dict[bytes, tuple]:
    """Symlinks of every sort and a FIFO in each place; returns what was planted (raw path
    -> (file type, symlink target)) to find it all again, unchanged, at the end."""
    planted: dict[bytes, tuple] = {}
    for place in places:
        folder = store / place if place else store
        folder.mkdir(parents=True, exist_ok=True)
        depth = len(Path(place).parts) + 1  # from `folder` up to the store's parent
        links = {
            f"ln-dir{sfx}": str(decoy),
            f"ln-file{sfx}": str(decoy / "secret.txt"),
            f"ln-zero{sfx}": "/dev/zero",
            f"ln-dangling{sfx}": str(decoy / "nothing-here"),
            f"ln-loop{sfx}": f"ln-loop{sfx}",
            f"ln-up{sfx}": "../" * depth + decoy.name,
            f"ln-up-file{sfx}": "../" * depth + f"{decoy.name}/secret.txt",
        }
        for name, target in links.items():
            os.symlink(target, folder / name)
        os.mkfifo(folder / f"fifo{sfx}")
    for top, dirs, files in os.walk(os.fsencode(store)):
        for entry in dirs + files:
            path = os.path.join(top, entry)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                planted[path] = (stat.S_IFMT(st.st_mode),
                                 os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
    return planted


def seed(store: Path, decoy: Path, tmp_path: Path) -> None:
    """Sparse files, crafted conflict-copy names, malformed and malicious YAML."""
    run = store / EXP / RUN
    for path in (run / "metrics" / "huge", run / "params" / "huge",
                 run / "metrics" / ("m" + STAMP), run / "artifacts" / "huge.bin",
                 run / ("meta" + STAMP + ".yaml")):
        with open(path, "wb") as fh:
            fh.truncate(SPARSE)  # no real disk: a hole
    # a symlink's own conflict copy, a copy named after a symlink (its original)
    os.symlink(decoy / "secret.txt", run / "tags" / ("mlflow.user" + STAMP))
    (run / "tags" / ("ln-file" + STAMP)).write_bytes(b"via the original symlink")
    # names whose original is `..` (the folder above), with a newline, not UTF-8
    (run / "tags" / (".." + STAMP)).write_bytes(b"dotdot")
    (run / ".._hostB_Jan-03-0901-2024_Conflict").write_bytes(b"synology dotdot")
    (run / "metrics" / ".. (hostB's conflicted copy 2024-01-03)").write_bytes(b"1 1 0\n")
    (run / "metrics" / "m (hostB's conflicted copy 2024-01-03)").write_bytes(
        b"1700000000000 0.5 0\n")
    (run / "metrics" / ("lo\nss" + STAMP)).write_bytes(b"1700000000000 0.5 0\n")
    with open(os.fsencode(run / "tags") + b"/\xff\xfe" + STAMP.encode(), "wb") as fh:
        fh.write(b"not utf-8")
    (run / "tags" / ("mlflow.source.name_hostB_Jan-03-0901-2024_Conflict")).write_bytes(b"x")
    # malformed YAML: an experiment, a version's conflict copy, a YAML that runs code if
    # loaded unsafely (it would create a file beside the store)
    # (not an experiment's meta.yaml: MLflow itself fails to list experiments over one)
    bad = store / EXP / "0badc0de0badc0de0badc0de0badc0de"
    for sub in ("params", "metrics", "tags", "artifacts"):
        (bad / sub).mkdir(parents=True)
    (bad / "meta.yaml").write_text("{{{: [\n  - ]]\n")
    (store / "models" / "adder" / "version-1" / ("meta" + STAMP + ".yaml")).write_text(
        "name: adder\nversion: [1\n")
    pwned = tmp_path / "pwned"
    (store / EXP / ("meta" + STAMP + ".yaml")).write_text(
        f"!!python/object/apply:os.system ['touch {pwned}']\n")
    # this host's tombstones are a symlink to the decoy, which holds an old record: a prune
    # through it would remove an outside file
    os.symlink(decoy, store / COORDINATION / "tombstones" / HOST)


def troubles(doc: dict) -> dict[str, dict]:
    """Parts that crashed, stopped or were restarted."""
    return {name: p for name, p in (doc.get("parts") or {}).items()
            if p.get("restarts") or p.get("state") not in (None, "running")}


def test_the_daemon_over_a_hostile_store_touches_nothing_outside_and_keeps_working(
        tmp_path: Path, make_guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = copy_direct_store(tmp_path)
    (store / COORDINATION / "tombstones").mkdir(parents=True, exist_ok=True)
    decoy = make_decoy(tmp_path / "decoy")
    seed(store, decoy, tmp_path)
    plant(store, decoy, PLACES_BEFORE, "")
    client_dir = tmp_path / "client"
    client_dir.mkdir()

    def outside() -> dict:
        return snapshot(tmp_path, exclude=[store, guard.state_dir, client_dir],
                        skip_prefix="guard-run-")

    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG)
    guard = make_guard(store, config=config)
    guard.state_dir.mkdir()
    (tmp_path / f"guard-run-{guard.state_dir.name}.log").touch()  # the daemon's output
    decoy_before, before = snapshot(decoy), outside()  # nothing may change from here on
    guard.start().wait_healthy()
    wait_for(lambda: (guard.status().get("vault") or {}).get("ready")
             and (guard.status().get("conflicts") or {}).get("last_scan"), 60,
             what="the first vault pass and conflict scan")

    planted = plant(store, decoy, PLACES_RUNNING, "-b")
    # real clients through the server: a run with a param, metrics, a tag, an artifact and a
    # registered pyfunc model
    logged: dict = result_of(  # type: ignore[assignment]
        start_training_client(guard.url, "hostile", 1, "hostile-model", client_dir))
    exp, run = logged["experiment_id"], logged["runs"][0]["run_id"]
    run_dir = store / exp / run
    wait_for(lambda: kept(guard, exp, run, "meta.yaml") and kept(guard, exp, run, "params", "i"),
             60, what="the vault to keep the client's run")
    (run_dir / "meta.yaml").unlink()
    meta = run_dir / "meta.yaml"
    wait_for(lambda: meta.exists(), 60, what="the run's meta.yaml to be restored")
    wait_for(lambda: any(e.get("path") == f"{exp}/{run}" and "restore" in e.get("action", "")
                         for e in vault_journal(guard)), 60, what="the restore's journal line")

    # an ordinary conflict copy of the client's tag is resolved, hostile ones aside
    tag = run_dir / "tags" / "origin"
    resolved = (guard.status().get("conflicts") or {}).get("resolved") or 0
    copy = tag.with_name("origin" + STAMP)
    copy.write_bytes(b"from hostB")
    wait_for(lambda: not copy.exists()
             and ((guard.status().get("conflicts") or {}).get("resolved") or 0) > resolved,
             30, what="the ordinary conflict copy to be resolved")
    assert tag.read_bytes() == b"from hostB"  # the copy was newer
    time.sleep(4)  # two more vault passes over everything planted

    doc = answers(guard)
    assert guard.proc is not None
    gone = {os.fsdecode(p): what for p, what in planted.items()
            if not os.path.lexists(p) or (stat.S_IFMT(os.lstat(p).st_mode), os.readlink(p)
                                          if os.path.islink(p) else None) != what}
    # every failed check at once, so one run tells the whole story
    failed = {name: found for name, found in {
        "parts crashed or restarted": troubles(doc),
        "server not serving": not serving(guard),
        "daemon memory above 600 MB":
            psutil.Process(guard.proc.pid).memory_info().rss > 600 * 1024**2,
        "decoy changed": changes(decoy_before, snapshot(decoy)),
        "outside the store and state folder changed": changes(before, outside()),
        "symlinks or FIFOs removed or changed": gone,
        "outside files linked in": shared_inodes(decoy, [store, guard.state_dir]),
        "the secret copied in": holding(SECRET, store, guard.state_dir),
        "malicious YAML ran": (tmp_path / "pwned").exists(),
    }.items() if found}
    assert failed == {}, pformat(failed, width=100)


def test_plant_makes_what_it_says(tmp_path: Path) -> None:
    """The seeding itself (no daemon): every place gets its symlinks and FIFO."""
    store = tmp_path / "s"
    decoy = make_decoy(tmp_path / "decoy")
    planted = plant(store, decoy, ("", "a/b"), "")
    assert len(planted) == 16
    up = store / "a" / "b" / "ln-up-file"
    assert up.read_bytes() == SECRET  # the relative target does reach the decoy
    shutil.rmtree(store)
