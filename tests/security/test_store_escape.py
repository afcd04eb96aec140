"""Attacks that make the guard write (or read) outside the store through a symlink that arrived
by sync (issue 13, findings 1 and 2), with one real daemon and real MLflow clients.

1. The vault restores a run through a symlinked folder: `params/`, the run folder or the
   experiment folder swapped for a symlink to a folder beside the store, and the run's
   meta.yaml removed. The restore must create nothing there, say it did not follow the
   symlink, and still put back what is safe to put back.
2. Conflict copies that pull an outside file in, or whose resolution would write through a
   symlinked folder: the copy is left alone and reported, nothing outside is touched.

Each case asserts on a decoy folder beside the store (file list, sizes, mtimes in ns, before
and after), on the test's whole folder outside the store and the state folder, that no file of
the store or state folder is a hard link to an outside file, that the daemon still answers and
its server still serves, and that the planted symlink is still there.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from guard.core.store import init_store
from tests.helpers.daemons import Guard, free_port, wait_for
from tests.helpers.hostile import (
    SECRET,
    STAMP,
    answers,
    changes,
    holding,
    kept,
    log_since,
    log_size,
    make_decoy,
    passes_after,
    serving,
    shared_inodes,
    snapshot,
)

pytestmark = pytest.mark.integration

CONFIG = ("host_id: escape-a\nserver:\n  health_interval: 1\n  stop_grace: 5\n"
          "locks:\n  settle: 1\n  ttl: 20\n  renew_every: 2\n"
          "peers:\n  heartbeat_interval: 1\n  stale_after: 10\n"
          "conflicts:\n  scan_interval: 1\nvault:\n  scan_interval: 2\n"
          "rewrite:\n  foreign_delay: 0\n")


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory):
    """One daemon for the module: each test works in its own experiment and decoy folder."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path_factory.mktemp("escape")
    store = root / "mlruns"
    init_store(store)
    config = root / "guard.yaml"
    config.write_text(CONFIG)
    daemon = Guard(store, root / "state", free_port(), config=config).start()
    try:
        daemon.wait_healthy()
        wait_for(lambda: (daemon.status().get("vault") or {}).get("ready"), 60,
                 what="the vault's first pass")
        yield daemon
    finally:
        daemon.teardown()


def logged_run(guard: Guard, name: str) -> tuple[str, str, Path]:
    """A finished run logged by a real client through the server, kept by the vault."""
    from mlflow import MlflowClient

    client = MlflowClient(guard.url)
    exp = client.create_experiment(f"{name}-{time.time_ns()}")
    run = client.create_run(exp).info.run_id
    client.log_param(run, "lr", "0.1")
    client.log_param(run, "batch", "32")
    for step in range(2):
        client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
    client.set_tag(run, "mlflow.user", "alice")
    client.set_terminated(run)
    wait_for(lambda: all(kept(guard, exp, run, *p) for p in
                         (("meta.yaml",), ("params", "lr"), ("tags", "mlflow.user"),
                          ("metrics", "loss"))), 60, what="the vault to keep the run")
    return exp, run, guard.store / exp / run


def outside(guard: Guard) -> dict:
    """The module's folder beside the store and the state folder (the daemon's output aside)."""
    return snapshot(guard.store.parent, exclude=[guard.store, guard.state_dir],
                    skip_prefix="guard-run-")


def files(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def symlink_said(text: str, *where: str) -> list[str]:
    """Log lines that name `where` (all of it) and say it is a symlink / was not followed."""
    return [line for line in text.splitlines()
            if all(w in line for w in where)
            and ("symlink" in line.lower() or "not followed" in line.lower())]


def safe_afterwards(guard: Guard, before: dict, decoy: Path, decoy_before: dict) -> None:
    """Nothing outside changed, nothing outside linked or copied in; the daemon is fine."""
    assert changes(decoy_before, snapshot(decoy)) == {}
    assert changes(before, outside(guard)) == {}
    assert shared_inodes(decoy, [guard.store, guard.state_dir]) == []
    assert holding(SECRET, guard.store, guard.state_dir) == []
    answers(guard)
    assert serving(guard)


# ---- 1. the vault's restore through a symlinked folder ----------------------------------------

def test_restore_writes_nothing_through_a_symlinked_params_folder(guard: Guard) -> None:
    exp, run, run_dir = logged_run(guard, "params-link")
    meta = (run_dir / "meta.yaml").read_bytes()
    tags = files(run_dir / "tags")
    decoy = make_decoy(guard.store.parent / "decoy-params")
    before, decoy_before = outside(guard), snapshot(decoy)
    specials = (guard.status().get("vault") or {}).get("not_regular") or 0

    shutil.rmtree(run_dir / "params")
    os.symlink(decoy, run_dir / "params")
    wait_for(lambda: ((guard.status().get("vault") or {}).get("not_regular") or 0) > specials,
             30, what="the vault to see the symlinked params folder")
    offset = log_size(guard)
    (run_dir / "meta.yaml").unlink()
    shutil.rmtree(run_dir / "tags")

    # what is safe to put back comes back: the run's meta.yaml and its tags
    wait_for(lambda: (run_dir / "meta.yaml").exists() and (run_dir / "tags").is_dir()
             and files(run_dir / "tags") == tags, 60, what="the vault to restore the run")
    passes_after(guard, time.time(), 2)
    assert (run_dir / "meta.yaml").read_bytes() == meta
    assert os.readlink(run_dir / "params") == str(decoy)  # the symlink is left as it is
    safe_afterwards(guard, before, decoy, decoy_before)
    said = symlink_said(log_since(guard, offset), f"{run}/params")
    assert said, "the restore did not say it left the symlinked params folder alone:\n" + \
        log_since(guard, offset)[-3000:]


def _swap_for_copy(folder: Path, decoy: Path, drop: list[str]) -> Path:
    """Replace `folder` by a symlink to a copy of it inside `decoy`, minus `drop` (paths
    relative to the copy): what the vault would want to put back through the symlink."""
    copy = decoy / f"{folder.name}-copy"
    shutil.copytree(folder, copy, symlinks=True)
    for rel in drop:
        target = copy / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    return copy


def _swap_now(folder: Path, copy: Path) -> None:
    shutil.rmtree(folder)
    os.symlink(copy, folder)


@pytest.mark.parametrize("level", ["run", "experiment"])
def test_restore_writes_nothing_through_a_symlinked_run_or_experiment_folder(
        guard: Guard, level: str) -> None:
    exp, run, run_dir = logged_run(guard, f"{level}-link")
    decoy = make_decoy(guard.store.parent / f"decoy-{level}")
    if level == "run":
        folder, drop, name = run_dir, ["meta.yaml", "tags"], f"{exp}/{run}"
    else:
        folder, drop, name = run_dir.parent, [f"{run}/meta.yaml", f"{run}/tags"], exp
    copy = _swap_for_copy(folder, decoy, drop)
    for path in [*copy.rglob("*"), copy]:
        os.utime(path, ns=(10**18, 10**18), follow_symlinks=False)
    before, decoy_before = outside(guard), snapshot(decoy)
    offset = log_size(guard)
    started = time.time()

    _swap_now(folder, copy)
    # the disappearance is judged after locks.settle (1 s); a few passes and events later any
    # restore through the symlink would have happened
    wait_for(lambda: symlink_said(log_since(guard, offset), name), 30,
             what=f"the daemon to report the symlinked {level} folder")
    passes_after(guard, started, 3)
    time.sleep(2)
    assert os.readlink(folder) == str(copy)
    safe_afterwards(guard, before, decoy, decoy_before)


# ---- 2. conflict copies ----------------------------------------------------------------------

def test_a_symlinked_conflict_copy_never_becomes_the_tag(guard: Guard) -> None:
    exp, run, run_dir = logged_run(guard, "copy-link")
    decoy = make_decoy(guard.store.parent / "decoy-copy")
    tag = run_dir / "tags" / "mlflow.user"
    copy = tag.with_name(tag.name + STAMP)
    os.utime(tag, (1_000_000_000, 1_000_000_000))  # the original is older: a copy would win
    before, decoy_before = outside(guard), snapshot(decoy)
    offset = log_size(guard)
    started = time.time()

    os.symlink(decoy / "secret.txt", copy)
    wait_for(lambda: copy.name in log_since(guard, offset), 30,
             what="the daemon to report the symlinked copy")
    wait_for(lambda: ((guard.status().get("conflicts") or {}).get("last_scan") or 0)
             > started + 2, 30, what="a later conflict scan")
    assert tag.read_bytes() == b"alice"
    assert os.readlink(copy) == str(decoy / "secret.txt")
    safe_afterwards(guard, before, decoy, decoy_before)


def test_a_conflict_copy_in_a_symlinked_tags_folder_is_not_resolved_through_it(
        guard: Guard) -> None:
    exp, run, run_dir = logged_run(guard, "tags-link")
    decoy = make_decoy(guard.store.parent / "decoy-tags")
    tags = decoy / "tags-out"
    shutil.copytree(run_dir / "tags", tags)
    (tags / ("mlflow.user" + STAMP)).write_bytes(b"mallory")  # newer: the copy would win
    os.utime(tags / "mlflow.user", (1_000_000_000, 1_000_000_000))
    before, decoy_before = outside(guard), snapshot(decoy)
    offset = log_size(guard)
    started = time.time()

    _swap_now(run_dir / "tags", tags)
    wait_for(lambda: symlink_said(log_since(guard, offset), f"{run}/tags"), 30,
             what="the daemon to report the symlinked tags folder")
    wait_for(lambda: ((guard.status().get("conflicts") or {}).get("last_scan") or 0)
             > started + 3, 30, what="later conflict scans")
    passes_after(guard, started, 2)
    assert (tags / "mlflow.user").read_bytes() == b"alice"
    assert (tags / ("mlflow.user" + STAMP)).read_bytes() == b"mallory"
    assert os.readlink(run_dir / "tags") == str(tags)
    safe_afterwards(guard, before, decoy, decoy_before)


def test_a_meta_yaml_conflict_copy_in_a_symlinked_run_folder_is_not_resolved_through_it(
        guard: Guard) -> None:
    exp, run, run_dir = logged_run(guard, "meta-link")
    decoy = make_decoy(guard.store.parent / "decoy-meta")
    out = decoy / "run-out"
    shutil.copytree(run_dir, out)
    doc = yaml.safe_load((out / "meta.yaml").read_text())
    running = dict(doc, status=1, end_time=None)  # the original says RUNNING, the copy ended:
    (out / "meta.yaml").write_text(yaml.safe_dump(running))  # the copy would be taken
    (out / "meta.sync-conflict-20240103-090113-ABCDEF7.yaml").write_text(yaml.safe_dump(doc))
    for path in [*out.rglob("*"), out]:
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    before, decoy_before = outside(guard), snapshot(decoy)
    offset = log_size(guard)
    started = time.time()

    _swap_now(run_dir, out)
    wait_for(lambda: symlink_said(log_since(guard, offset), f"{exp}/{run}"), 30,
             what="the daemon to report the symlinked run folder")
    wait_for(lambda: ((guard.status().get("conflicts") or {}).get("last_scan") or 0)
             > started + 3, 30, what="later conflict scans")
    passes_after(guard, started, 2)
    assert yaml.safe_load((out / "meta.yaml").read_text())["status"] == 1
    assert os.readlink(run_dir) == str(out)
    safe_afterwards(guard, before, decoy, decoy_before)
