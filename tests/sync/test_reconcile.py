"""Conflict copies in a real MLflow store (written by a real MLflow client), resolved by the
reconcile shell, and read back with MLflow's own FileStore: nothing lost, nothing left."""

from __future__ import annotations

import os
import time

import pytest

from guard.core import metayaml
from guard.core.journal import Journal
from guard.core.layout import COORDINATION
from guard.sync.reconcile import (
    RENUMBERED_HOST_TAG,
    RENUMBERED_TAG,
    Reconciler,
    find_copies,
    read_records,
    renumbered_versions,
)
from tests.helpers.heldopen import failing, no_waiting
from tests.helpers.store import EXP, RUN, copy_direct_store, listing

SYN = "_hostB_Nov-22-0650-2026_Conflict_1"  # Synology Drive's marker, as hostB lost


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return copy_direct_store(tmp_path)


def reconciler(tmp_path, store) -> Reconciler:
    return Reconciler(store, tmp_path / "state" / "quarantine",
                      Journal(tmp_path / "state" / "journal" / "conflicts.jsonl"))


def file_store(store):
    from mlflow.store.tracking.file_store import FileStore

    return FileStore(store.as_uri())


def registry(store):
    from mlflow.store.model_registry.file_store import FileStore

    return FileStore(store.as_uri())


class NoLock:
    taken: list[str] = []

    def __init__(self, name: str) -> None:
        NoLock.taken.append(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_metrics_params_tags_and_run_meta_copies_are_merged_and_moved_aside(store, tmp_path):
    run_dir = store / EXP / RUN
    metric = run_dir / "metrics" / "m"
    ours = metric.read_text()
    theirs_line = f"{int(time.time() * 1000)} 0.5 7\n"
    (run_dir / "metrics" / f"m{SYN}").write_text(ours + theirs_line)
    (run_dir / "params" / f"p{SYN}").write_bytes((run_dir / "params" / "p").read_bytes())
    (run_dir / "params" / "q").write_text("1")
    (run_dir / "params" / f"q{SYN}").write_text("2")
    tag = run_dir / "tags" / "mlflow.runName"
    (run_dir / "tags" / f"mlflow.runName{SYN}").write_text("renamed-on-B")
    os.utime(tag, (time.time() - 100, time.time() - 100))
    meta, doc = run_dir / "meta.yaml", metayaml.parse((run_dir / "meta.yaml").read_bytes())
    running = dict(doc, status=1, end_time=None)
    meta.write_bytes(metayaml.dump(running))
    (run_dir / f"meta{SYN}.yaml").write_bytes(metayaml.dump(doc))  # B finished the run

    copies = find_copies(store)
    assert len(copies) == 5
    records = reconciler(tmp_path, store).resolve_all(copies)
    by_file = {r["original"].split("/")[-1]: r for r in records}
    assert by_file["m"]["action"] == "merge" and not by_file["m"]["needs_attention"]
    assert by_file["p"]["action"] == "keep_original"
    assert by_file["q"]["action"] == "keep_original" and by_file["q"]["needs_attention"]
    assert by_file["mlflow.runName"]["action"] == "take_copy"
    assert by_file["meta.yaml"]["action"] == "take_copy"

    assert find_copies(store) == []  # nothing left in the store
    run = file_store(store).get_run(RUN)
    assert run.info.status == "FINISHED"
    assert run.data.params["q"] == "1" and run.data.tags["mlflow.runName"] == "renamed-on-B"
    history = file_store(store).get_metric_history(RUN, "m")
    # the union of both sides, duplicates dropped (this one already held a repeated line)
    assert 7 in [m.step for m in history] and len(history) == len(set(ours.splitlines())) + 1
    # every copy, and every original that was replaced, is in the quarantine
    kept = [p for r in records for p in r["quarantined"]]
    assert len(kept) == 5 + 3 and all(os.path.exists(p) for p in kept)
    assert any(p.endswith("meta.yaml.before") for p in kept)
    assert read_records(tmp_path / "state" / "journal" / "conflicts.jsonl") == records


def model_version_copy(store, later: str) -> tuple[dict, dict]:
    """Version 1 registered on two machines: the original from hostA, a copy from hostB."""
    vdir = store / "models" / "adder" / "version-1"
    ours = metayaml.parse((vdir / "meta.yaml").read_bytes())
    theirs = dict(ours, run_id="b" * 32, model_id="m-" + "b" * 32,
                  source="models:/m-" + "b" * 32,
                  creation_timestamp=ours["creation_timestamp"] + (5 if later == "copy" else -5))
    (vdir / f"meta{SYN}.yaml").write_bytes(metayaml.dump(theirs))
    return ours, theirs


@pytest.mark.parametrize("later", ["copy", "original"])
def test_one_version_number_taken_twice_keeps_both_versions(store, tmp_path, later, monkeypatch):
    # The registry's search consults the tracking store; without this it opens ./mlflow.db.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    ours, theirs = model_version_copy(store, later)
    NoLock.taken = []
    (record,) = reconciler(tmp_path, store).resolve_all(find_copies(store), NoLock)
    assert NoLock.taken == ["adder"]  # renumbering holds the model's lock
    assert record["action"] == "renumber" and record["new_version"] == 2
    assert record["needs_attention"]
    found = registry(store).search_model_versions("name='adder'", max_results=100)
    versions = {int(mv.version): mv for mv in found}
    assert sorted(versions) == [1, 2]
    moved, stayed = (theirs, ours) if later == "copy" else (ours, theirs)
    assert versions[2].run_id == moved["run_id"] and versions[1].run_id == stayed["run_id"]
    assert "version 1: registered on two machines" in versions[2].tags[RENUMBERED_TAG]
    assert find_copies(store) == []


@pytest.mark.parametrize("later", ["copy", "original"])
def test_a_renumbered_version_names_its_host_and_its_registering_host_hears_of_it(
        store, tmp_path, later, monkeypatch):
    """hostA's server registered the original version-1 (its registration journal says so);
    hostB's arrived as the copy. Whichever moves is tagged with where it was registered, and
    when it is hostA's, hostA's conflict journal says: given 1, now 2 (once)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    ours, _theirs = model_version_copy(store, later)
    state = tmp_path / "state"
    registrations = state / "journal" / "registrations.jsonl"
    Journal(registrations).append(model="adder", version=1, host="hostA",
                                  creation_timestamp=ours["creation_timestamp"],
                                  run_id=ours["run_id"])

    def host_a() -> Reconciler:
        return Reconciler(store, state / "quarantine",
                          Journal(state / "journal" / "conflicts.jsonl"), "hostA", registrations)

    rec = host_a()
    (record,) = rec.resolve_all(find_copies(store), NoLock)
    host = "hostB" if later == "copy" else "hostA"  # the copy's name says hostB
    assert (record["model"], record["old_version"], record["new_version"], record["host"]) \
        == ("adder", 1, 2, host)
    assert registry(store).get_model_version("adder", "2").tags[RENUMBERED_HOST_TAG] == host
    assert [r.describe() for r, _ in renumbered_versions(store)] == [
        f"model 'adder': was version 1 on {host}, now 2"]
    told = rec.notice_renumbered()
    assert [r.describe() for r in rec.renumbered] == [
        f"model 'adder': was version 1 on {host}, now 2"]
    if later == "original":  # hostA's client was given version 1; its version is now 2
        (note,) = told
        assert (note["model"], note["given"], note["now"]) == ("adder", 1, 2)
        assert note["needs_attention"] and "was given version 1; it is now version 2" in \
            note["report"]
    else:
        assert told == []
    assert rec.notice_renumbered() == [] and host_a().notice_renumbered() == []  # said once
    journal = read_records(state / "journal" / "conflicts.jsonl")
    assert sum(r["action"] == "renumbered" for r in journal) == (later == "original")


def test_a_copy_whose_original_is_gone_takes_its_place(store, tmp_path):
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_bytes((params / "p").read_bytes())
    (params / "p").unlink()
    (record,) = reconciler(tmp_path, store).resolve_all(find_copies(store))
    assert record["action"] == "restored" and (params / "p").exists()


def test_a_copy_held_open_for_a_moment_still_goes_to_the_quarantine(store, tmp_path,
                                                                      monkeypatch):
    """Synology Drive (or a scan) holds the copy it just wrote: the move into the quarantine
    fails with a sharing violation a few times, then goes through in the same pass."""
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_bytes((params / "p").read_bytes())
    no_waiting(monkeypatch)
    calls = failing(monkeypatch, "rename", 3)
    (record,) = reconciler(tmp_path, store).resolve_all(find_copies(store))
    assert record["action"] == "keep_original" and len(calls) == 4
    assert not (params / f"p{SYN}").exists() and find_copies(store) == []
    (kept,) = record["quarantined"]
    assert os.path.exists(kept)


def test_a_copy_held_open_throughout_is_logged_with_its_holder_and_left_for_the_next_pass(
        store, tmp_path, monkeypatch, caplog):
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_bytes((params / "p").read_bytes())
    no_waiting(monkeypatch)
    rename = os.rename
    failing(monkeypatch, "rename", None)
    with caplog.at_level("WARNING", logger="guard.reconcile"):
        assert reconciler(tmp_path, store).resolve_all(find_copies(store)) == []
    (warned,) = [r.getMessage() for r in caplog.records if "could not resolve" in r.getMessage()]
    assert f"p{SYN}" in warned and "another program holds it open" in warned
    assert "Synology Drive" in warned and "will retry" in warned
    assert (params / f"p{SYN}").exists()  # still there for the next pass
    monkeypatch.setattr(os, "rename", rename)  # let go
    (record,) = reconciler(tmp_path, store).resolve_all(find_copies(store))
    assert record["action"] == "keep_original" and find_copies(store) == []


def test_artifacts_and_the_coordination_folder_are_not_touched(store, tmp_path):
    art = store / EXP / RUN / "artifacts"
    art.mkdir(exist_ok=True)
    (art / "notes.txt").write_text("a")
    (art / f"notes{SYN}.txt").write_text("b")
    peers = store / COORDINATION / "peers"
    peers.mkdir(parents=True)
    (peers / "hostA.json").write_text("{}")
    (peers / f"hostA{SYN}.json").write_text("{}")
    assert find_copies(store) == []


def test_syncthing_dropbox_and_onedrive_copies_are_found(store, tmp_path):
    params = store / EXP / RUN / "params"
    (params / "p.sync-conflict-20261122-065000-ABCDEF7").write_text("x")
    (params / "p (Andy's conflicted copy 2026-11-22)").write_text("x")
    (params / "p-hostB").write_text("x")
    assert len(find_copies(store)) == 2
    assert len(find_copies(store, ["hostB"])) == 3


def test_the_daemon_resolves_a_copy_as_soon_as_the_watcher_sees_it(store, tmp_path, make_guard):
    """The full scan runs once an hour here; a meta.yaml copy is handled on its event."""
    from tests.helpers.daemons import wait_for

    config = tmp_path / "guard.yaml"
    config.write_text("conflicts:\n  scan_interval: 3600\nlocks:\n  settle: 0.2\n")
    guard = make_guard(store, config=config).start()
    guard.wait_healthy()
    wait_for(lambda: (guard.status().get("conflicts") or {}).get("last_scan"), 30,
             what="the first conflict scan")
    run_dir = store / EXP / RUN
    doc = metayaml.parse((run_dir / "meta.yaml").read_bytes())
    tmp = tmp_path / "incoming.yaml"
    tmp.write_bytes(metayaml.dump(dict(doc, status=1, end_time=None)))  # a stale RUNNING copy
    os.replace(tmp, run_dir / f"meta{SYN}.yaml")  # as a sync client delivers it
    journal = guard.state_dir / "journal" / "conflicts.jsonl"
    (record,) = wait_for(lambda: read_records(journal), 20, what="the copy to be resolved")
    assert record["action"] == "keep_original" and record["kind"] == "run_meta"
    assert not (run_dir / f"meta{SYN}.yaml").exists()
    assert file_store(store).get_run(RUN).info.status == "FINISHED"
    # status.json is rewritten about once a second
    wait_for(lambda: "conflicts 1 copy resolved since start, 0 need a look"
             in guard.ctl("status").stdout, 15, what="status to count the resolved copy")


# ---- copies that are not regular files: never opened, never followed, never holding the lock

def _hostile_copies(store, tmp_path):
    """A FIFO tag copy, a metric copy that is a symlink to /dev/zero and a param copy that is
    a symlink to a secret outside the store, as a hostile or broken sync could deliver them."""
    run_dir = store / EXP / RUN
    tag = next(p for p in (run_dir / "tags").iterdir() if p.is_file())
    metric = next(p for p in (run_dir / "metrics").iterdir() if p.is_file())
    param = next(p for p in (run_dir / "params").iterdir() if p.is_file())
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-TOKEN")
    fifo = tag.with_name(tag.name + ".sync-conflict-20240103-090113-ABCDEF7")
    os.mkfifo(fifo)
    zero = metric.with_name(metric.name + ".sync-conflict-20240103-090113-ABCDEF7")
    os.symlink("/dev/zero", zero)
    leak = param.with_name(param.name + ".sync-conflict-20240103-090113-ABCDEF7")
    os.symlink(secret, leak)
    return [fifo, zero, leak], secret


def _in_thread(fn, timeout=10.0):
    import threading

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked on a file that is not a regular file"
    return box.get("value")


def _tree_bytes(root):
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def test_fifo_and_symlinked_copies_are_left_alone_without_taking_the_lock(
        store, tmp_path, monkeypatch, caplog):
    from guard.sync import reconcile as rc

    hostile, secret = _hostile_copies(store, tmp_path)
    copies = find_copies(store)
    assert {c.path for c in copies} == set(hostile)
    assert all(c.unsafe for c in copies)
    taken = []

    class Lock(NoLock):
        def __init__(self, settings, name):
            taken.append(name)

    monkeypatch.setattr(rc, "HostLock", Lock)
    rec = reconciler(tmp_path, store)
    service = rc.ConflictService(rec, None, 60.0, lambda: ())
    with caplog.at_level("WARNING", logger="guard.reconcile"):
        assert _in_thread(service.run_once) == []
        assert _in_thread(service.run_once) == []
    assert taken == []  # nothing to resolve: the cross-machine lock is never held for them
    figures = service.snapshot()
    assert figures.left_alone == 3 and figures.waiting == 0 and figures.resolved == 0
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3  # each reported once, not at every pass
    assert any("copy is a FIFO" in w for w in warned)
    assert sum("copy is a symlink" in w for w in warned) == 2
    assert all(os.path.lexists(p) for p in hostile)  # left where they are
    assert not (tmp_path / "state" / "quarantine").exists()
    assert b"TOP-SECRET-TOKEN" not in _tree_bytes(store)
    assert read_records(tmp_path / "state" / "journal" / "conflicts.jsonl") == []


def test_a_copy_turned_into_a_fifo_after_the_scan_is_not_opened(store, tmp_path):
    params = store / EXP / RUN / "params"
    copy = params / f"p{SYN}"
    copy.write_bytes(b"other\n")
    copies = find_copies(store)
    assert [c.unsafe for c in copies] == [None]
    copy.unlink()
    os.mkfifo(copy)  # swapped between the scan and the read
    rec = reconciler(tmp_path, store)
    assert _in_thread(lambda: rec.resolve_all(copies)) == []
    assert "FIFO" in rec.left_alone[copy]
    assert os.path.lexists(copy) and not (tmp_path / "state" / "quarantine").exists()


def test_a_copy_whose_original_is_a_fifo_or_symlink_is_left_alone(store, tmp_path):
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_bytes(b"theirs\n")
    (params / "p").unlink()
    os.mkfifo(params / "p")
    (copy,) = find_copies(store)
    assert copy.unsafe == "its original is a FIFO, not a regular file; left alone"
    assert _in_thread(lambda: reconciler(tmp_path, store).resolve_all([copy])) == []
    assert (params / f"p{SYN}").read_bytes() == b"theirs\n"


def test_a_copy_too_large_to_hold_is_left_for_a_person(store, tmp_path, monkeypatch):
    from guard.sync import reconcile as rc

    monkeypatch.setattr(rc, "MAX_READ", 16)
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_bytes(b"x" * 17)
    rec = reconciler(tmp_path, store)
    assert rec.resolve_all(find_copies(store)) == []
    assert "larger than 16 bytes" in rec.left_alone[params / f"p{SYN}"]
    assert (params / f"p{SYN}").exists()


COPY_NAME = "mlflow.user.sync-conflict-20240103-090113-ABCDEF7"


def test_a_copy_swapped_for_a_symlink_to_a_secret_is_left_alone(store, tmp_path):
    tags = store / EXP / RUN / "tags"
    original = (tags / "mlflow.user").read_bytes()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN")
    (tags / COPY_NAME).write_text("someone else")
    copies = find_copies(store)
    assert [c.unsafe for c in copies] == [None]
    (tags / COPY_NAME).unlink()
    os.symlink(secret, tags / COPY_NAME)  # swapped between the scan and the resolution
    rec = reconciler(tmp_path, store)
    assert rec.resolve_all(copies) == []
    assert "symlink" in rec.left_alone[tags / COPY_NAME]
    assert (tags / "mlflow.user").read_bytes() == original
    assert os.path.islink(tags / COPY_NAME) and secret.read_text() == "TOP-SECRET-TOKEN"
    assert b"TOP-SECRET-TOKEN" not in _tree_bytes(store)
    assert not (tmp_path / "state" / "quarantine").exists()


@pytest.mark.parametrize("original_there", [True, False])
def test_a_copy_in_a_folder_swapped_for_a_symlink_is_refused_and_the_outside_untouched(
        store, tmp_path, original_there):
    """`tags/` becomes a symlink to an outside folder holding a tag and its conflict copy:
    the merge, the rename of the copy onto its original and the move to the quarantine
    went through the symlink (outside files changed, moved into the quarantine)."""
    tags = store / EXP / RUN / "tags"
    (tags / COPY_NAME).write_text("someone else")
    copies = find_copies(store)
    assert [c.unsafe for c in copies] == [None]
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    if original_there:
        (decoy / "mlflow.user").write_text("outside original")
    (decoy / COPY_NAME).write_text("OUTSIDE-SECRET")
    os.rename(tags, tmp_path / "tags-moved")
    os.symlink(decoy, tags)
    before = listing(decoy)
    rec = reconciler(tmp_path, store)
    assert rec.resolve_all(copies) == []
    why = rec.left_alone[tags / COPY_NAME]
    assert "tags is a symlink, not a folder" in why
    assert listing(decoy) == before
    assert not (tmp_path / "state" / "quarantine").exists()  # nothing moved from outside
