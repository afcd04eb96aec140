"""The vault over real stores written by a real MLflow client: hard links where it can (the
same inode), copies where it cannot (another volume), restores that never overwrite."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.core.store import init_store
from guard.protection.vault import COPY, LINK, Vault, index_holds
from tests.helpers.daemons import healthy_guard
from tests.helpers.store import listing


def log_runs(store: Path, n: int = 2, big: int = 0) -> list[str]:
    """Real runs through MLflow's own file store client, each with a small artifact (and a
    `big`-byte one when asked)."""
    import mlflow

    mlflow.set_tracking_uri(store.as_uri())
    mlflow.set_experiment("vault")  # a file-store experiment: artifacts under a local path
    ids = []
    for i in range(n):
        with mlflow.start_run() as run:
            mlflow.log_param("i", i)
            mlflow.log_metric("loss", 1.0 / (i + 1), step=0)
            mlflow.log_text(f"run {i}", "notes.txt")
            if big:
                mlflow.log_text("x" * big, "weights.bin")
        ids.append(run.info.run_id)
    mlflow.set_tracking_uri(None)  # the default lookup again ("" would pin ./mlruns)
    return ids


def store_files(store: Path) -> dict[tuple[str, ...], os.stat_result]:
    out = {}
    for folder, _dirs, files in os.walk(store):
        for name in files:
            path = Path(folder) / name
            out[path.relative_to(store).parts] = path.stat()
    return out


def open_vault(root: Path, store: Path, copy_max: int = 10_000) -> Vault:
    vault = Vault(root, store, copy_max)
    vault.open()
    return vault


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    init_store(store)
    return store


def test_on_one_volume_every_store_file_is_hard_linked_same_inode(store, tmp_path):
    log_runs(store)
    vault = open_vault(tmp_path / "vault", store)
    try:
        assert vault.mode == LINK
        assert vault.sync(()) == []
        files = store_files(store)
        kept = dict(vault.files_under(()))
        assert set(kept) == set(files)
        for rel, st in files.items():
            obj = vault._object(kept[rel]).stat()
            assert (obj.st_ino, obj.st_dev) == (st.st_ino, st.st_dev)
            assert st.st_nlink == 2
    finally:
        vault.close()


def test_a_file_replaced_by_rename_is_linked_again_and_the_old_one_collected(store, tmp_path):
    """Sync clients (and MLflow, when its temp folder shares the volume) replace a file by
    renaming a new one over it: a new inode the vault must link again."""
    run_id = log_runs(store, 1)[0]
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        meta = next(store.glob(f"*/{run_id}/meta.yaml"))
        old = meta.stat().st_ino
        tmp = meta.with_name("incoming.tmp")
        tmp.write_text(meta.read_text().replace("status: 3", "status: 4"))
        os.replace(tmp, meta)
        new = meta.stat().st_ino
        assert new != old
        vault.sync(meta.parent.relative_to(store).parts)
        rel = meta.relative_to(store).parts
        assert dict(vault.files_under(rel))[rel] == new
        assert vault.collect() == 1  # the old version's object
        assert not vault._object(old).exists() and vault._object(new).exists()
    finally:
        vault.close()


def test_restore_puts_a_deleted_run_back_whole_and_never_overwrites(store, tmp_path):
    import shutil

    import mlflow

    run_id = log_runs(store, 1)[0]
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        run_dir = next(store.glob(f"*/{run_id}"))
        rel = run_dir.relative_to(store).parts
        before = {k: v.st_size for k, v in store_files(store).items()}
        shutil.rmtree(run_dir)
        assert rel in vault.sync(rel[:-1], recursive=False)
        (run_dir / "params").mkdir(parents=True)
        (run_dir / "params" / "i").write_text("newer")  # something came back meanwhile
        restored = vault.restore(rel)
        assert restored == len([k for k in before if k[:len(rel)] == rel]) - 1
        assert (run_dir / "params" / "i").read_text() == "newer"  # not overwritten
        run = mlflow.MlflowClient(store.as_uri()).get_run(run_id)
        assert run.data.metrics["loss"] == 1.0
        path = mlflow.MlflowClient(store.as_uri()).download_artifacts(run_id, "notes.txt",
                                                                      str(tmp_path))
        assert Path(path).read_text() == "run 0"
    finally:
        vault.close()


def test_the_index_survives_a_restart_and_finds_deletions_made_while_down(store, tmp_path):
    import shutil

    ids = log_runs(store, 2)
    vault = open_vault(tmp_path / "vault", store)
    vault.sync(())
    vault.close()
    gone = next(store.glob(f"*/{ids[0]}"))
    shutil.rmtree(gone)
    again = open_vault(tmp_path / "vault", store)
    try:
        assert again.knows(gone.relative_to(store).parts)
        assert again.sync(()) == [gone.relative_to(store).parts]
        assert again.restore(gone.relative_to(store).parts) > 5
        assert (gone / "meta.yaml").is_file()
    finally:
        again.close()


def test_one_vault_per_daemon(store, tmp_path):
    from guard.protection.vault import VaultError

    log_runs(store, 1)
    first = open_vault(tmp_path / "vault", store)
    try:
        with pytest.raises(VaultError, match="in use by another guard daemon"):
            open_vault(tmp_path / "vault", store)
    finally:
        first.close()


def other_volume(path: Path) -> Path:
    """A writable folder on another filesystem than `path` (tmpfs /dev/shm on Linux)."""
    for candidate in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR") or "/run/user"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and \
                os.stat(candidate).st_dev != os.stat(path).st_dev:
            return Path(candidate)
    raise AssertionError("this test needs a writable folder on a second filesystem "
                         "(/dev/shm); none was found")


def test_across_volumes_metadata_is_copied_and_artifacts_up_to_the_limit(store, tmp_path):
    import shutil
    import tempfile

    run_id = log_runs(store, 1, big=20_000)[0]
    root = Path(tempfile.mkdtemp(prefix="guard-vault-", dir=other_volume(tmp_path)))
    try:
        vault = open_vault(root / "vault", store, copy_max=10_000)
        try:
            assert vault.mode == COPY
            vault.sync(())
            kept = {rel[-1] for rel, _ in vault.files_under(())}
            assert {"meta.yaml", "notes.txt", "loss", "i"} <= kept
            assert "weights.bin" not in kept and vault.too_large == 1
            run_dir = next(store.glob(f"*/{run_id}"))
            meta = (run_dir / "meta.yaml").read_bytes()
            shutil.rmtree(run_dir)
            assert vault.restore(run_dir.relative_to(store).parts) >= 6
            assert (run_dir / "meta.yaml").read_bytes() == meta
            assert (run_dir / "artifacts" / "notes.txt").read_text() == "run 0"
            assert os.stat(run_dir / "meta.yaml").st_nlink == 1  # a copy, not a link
            assert not (run_dir / "artifacts" / "weights.bin").exists()  # never kept
            assert vault.sync(()) == []
        finally:
            vault.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_an_unmounted_store_is_never_filled_from_the_vault(new_store, make_guard, tmp_path):
    """The drive goes (the folder vanishes), an empty mount point appears, the drive comes
    back: the daemon pauses, restores nothing, and serves the same store again."""
    import time

    from mlflow import MlflowClient

    from tests.helpers.daemons import wait_for

    guard = healthy_guard(new_store, make_guard, tmp_path)
    client = MlflowClient(guard.url)
    run = client.create_run("0")
    client.log_param(run.info.run_id, "lr", "0.1")
    client.set_terminated(run.info.run_id)
    wait_for(lambda: (guard.status().get("vault") or {}).get("ready"), 60)
    time.sleep(1.5)  # the watcher's events for the run have been handled

    away = new_store.with_name("mlruns.unmounted")
    new_store.rename(away)
    wait_for(lambda: guard.status().get("phase") == "waiting for store", 30,
             what="the daemon to notice the store is gone")
    new_store.mkdir()  # the empty mount point
    time.sleep(5)  # several grace periods and store checks
    assert os.listdir(new_store) == []
    status = guard.ctl("status").stdout
    assert "waiting for the store" in status or "unmounted" in status

    new_store.rmdir()
    away.rename(new_store)
    guard.wait_healthy()
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}
    journal = guard.state_dir / "journal" / "vault.jsonl"
    assert not journal.exists() or "restored" not in journal.read_text()


def test_an_index_of_another_store_is_never_restored_from(store, tmp_path):
    """A state folder reused for another store: that store's runs must not appear here."""
    other = tmp_path / "other" / "mlruns"
    init_store(other)
    gone = log_runs(other, 1)[0]
    vault = open_vault(tmp_path / "vault", other)
    vault.sync(())
    vault.close()
    log_runs(store, 1)
    here = open_vault(tmp_path / "vault", store)
    try:
        assert not any(gone in rel for rel, _ in here.files_under(()))
        assert here.sync(()) == []  # nothing of the other store is "missing" here
        assert not list(store.glob(f"*/{gone}"))
    finally:
        here.close()


def test_a_folder_gone_before_it_was_seen_leaves_no_entry(store, tmp_path):
    log_runs(store, 1)
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        assert vault.sync(("0", "never-there")) == []
        assert not vault.knows(("0", "never-there"))
        assert vault.sync(()) == []  # and no later pass reports it
    finally:
        vault.close()


def test_hidden_artifacts_are_kept_and_sync_clients_temp_files_are_not(store, tmp_path):
    run_id = log_runs(store, 1)[0]
    arts = next(store.glob(f"*/{run_id}")) / "artifacts"
    (arts / ".hydra").mkdir()
    (arts / ".hydra" / "config.yaml").write_text("lr: 0.1\n")
    (arts / ".syncthing.notes.txt.tmp").write_text("partial")
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        kept = {rel[-1] for rel, _ in vault.files_under(())}
        assert "config.yaml" in kept and ".syncthing.notes.txt.tmp" not in kept
    finally:
        vault.close()


def test_policy_alert_reports_without_restoring_and_refuse_blocks_model_deletion(
        new_store, make_guard, tmp_path):
    """vault.policy alert: a run removed by hand is reported (journal, status), not put back.
    gc.model_deletions refuse: deleting a registered model through the server is a 403."""
    import shutil

    import pytest as _pytest
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tests.helpers.daemons import wait_for

    guard = healthy_guard(new_store, make_guard, tmp_path,
                          "vault:\n  policy: alert\ngc:\n  model_deletions: refuse\n")
    client = MlflowClient(guard.url)
    run = client.create_run("0")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("precious")
    wait_for(lambda: (guard.status().get("vault") or {}).get("ready"), 60)
    import time
    time.sleep(1.5)

    with _pytest.raises(MlflowException, match="gc.model_deletions: refuse"):
        client.delete_registered_model("precious")
    assert (new_store / "models" / "precious" / "meta.yaml").is_file()

    shutil.rmtree(new_store / "0" / run.info.run_id)
    journal = guard.state_dir / "journal" / "vault.jsonl"
    wait_for(lambda: journal.exists() and '"alert"' in journal.read_text(), 30,
             what="the alert in the vault journal")
    assert run.info.run_id in journal.read_text()
    time.sleep(3)
    assert not (new_store / "0" / run.info.run_id).exists()  # reported, not restored
    status = guard.ctl("status").stdout
    assert "1 alert," in status and f"alert 0/{run.info.run_id}" in status


def test_with_rewriting_off_a_run_deleted_by_hand_is_put_back_on_its_watcher_event(
        new_store, make_guard, tmp_path):
    """The watcher belongs to the daemon, not to the rewrite part: with rewrite.enabled false
    the vault still hears the deletion and puts the run back within seconds, long before its
    next full scan (vault.scan_interval, an hour here)."""
    import shutil
    import time

    from mlflow import MlflowClient

    from tests.helpers.daemons import wait_for

    guard = healthy_guard(new_store, make_guard, tmp_path,
                          "rewrite:\n  enabled: false\nvault:\n  scan_interval: 3600\n")
    client = MlflowClient(guard.url)
    run = client.create_run("0")
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_metric(run.info.run_id, "loss", 0.5)  # MLflow needs metrics/ and artifacts/,
    client.log_text(run.info.run_id, "w=1", "notes.txt")  # and the vault keeps files only
    client.set_terminated(run.info.run_id)
    wait_for(lambda: (guard.status().get("vault") or {}).get("ready"), 60)
    time.sleep(1.5)  # the watcher's events for the run have been handled
    portability = guard.status()["portability"]
    assert portability["enabled"] is False and portability["watch_mode"] == "events"

    run_dir = new_store / "0" / run.info.run_id
    shutil.rmtree(run_dir)
    deleted = time.monotonic()
    wait_for(lambda: (run_dir / "meta.yaml").is_file(), 20,
             what="the vault to put the run back on its watcher event")
    assert time.monotonic() - deleted < 20
    journal = guard.state_dir / "journal" / "vault.jsonl"
    wait_for(lambda: journal.exists() and '"restored"' in journal.read_text(), 10,
             what="the restore in the vault journal")
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}
    assert "rewriting disabled" in guard.ctl("status").stdout


# ---- folders: MLflow opens a run only with its metrics/, params/ and artifacts/ ----------------

def bare_run(store: Path, metric: bool) -> str:
    """A run with no params and no artifacts (its params/ and artifacts/ are empty folders),
    logged through MLflow's own file store client."""
    from mlflow import MlflowClient

    client = MlflowClient(store.as_uri())
    run = client.create_run("0").info.run_id
    if metric:
        client.log_metric(run, "loss", 0.5, step=1)
    client.set_terminated(run)
    return run


@pytest.mark.parametrize("metric", [True, False], ids=["metric only", "nothing logged"])
def test_a_run_with_empty_folders_comes_back_whole_and_mlflow_opens_it(store, tmp_path, metric):
    import shutil

    from mlflow import MlflowClient

    run = bare_run(store, metric)
    client = MlflowClient(store.as_uri())
    before = client.get_run(run)
    run_dir = store / "0" / run
    folders = sorted(p.relative_to(store) for p in run_dir.rglob("*") if p.is_dir())
    assert {"params", "artifacts"} <= {p.name for p in folders}
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        shutil.rmtree(run_dir)
        vault.restore(("0", run))
        assert sorted(p.relative_to(store) for p in run_dir.rglob("*") if p.is_dir()) == folders
        after = client.get_run(run)  # "Run ... not found" without params/ and artifacts/
        assert after.data.to_dictionary() == before.data.to_dictionary()
        assert [m.value for m in client.get_metric_history(run, "loss")] == \
            ([0.5] if metric else [])
    finally:
        vault.close()


def test_the_index_records_empty_folders_and_keeps_them_across_a_restart(store, tmp_path):
    run = bare_run(store, metric=False)
    vault = open_vault(tmp_path / "vault", store)
    vault.sync(())
    vault.close()
    again = open_vault(tmp_path / "vault", store)
    try:
        entries = dict(again.entries_under(("0", run)))
        for folder in ("params", "metrics", "artifacts"):
            assert entries[("0", run, folder)] is None  # a folder, no file below it
            assert again.knows(("0", run, folder))
        assert ("0", run, "params") not in dict(again.files_under(("0", run)))
        assert entries[("0", run)] is None and isinstance(entries[("0", run, "meta.yaml")], int)
    finally:
        again.close()


def test_an_empty_folder_removed_from_a_live_run_is_missing_and_put_back(store, tmp_path):
    run = bare_run(store, metric=True)
    params = store / "0" / run / "params"
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        params.rmdir()
        assert vault.sync(("0", run)) == [("0", run, "params")]
        assert vault.restore(("0", run, "params")) == 0  # no file, one folder
        assert params.is_dir()
        assert vault.sync(()) == []
    finally:
        vault.close()


def test_a_followed_empty_folder_is_forgotten(store, tmp_path):
    """A folder that is let go (a stray one, sanctioned) leaves the index: no later pass
    reports it again."""
    (store / "stray").mkdir()
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        (store / "stray").rmdir()
        assert vault.sync(()) == [("stray",)]
        vault.forget(("stray",))
        assert vault.sync(()) == [] and not vault.knows(("stray",))
    finally:
        vault.close()


def hostile_run(store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A run folder by hand holding a FIFO metric, a tag that is a symlink to /dev/zero and a
    param that is a symlink to a secret outside the store, beside a regular metric."""
    run = store / "123456789012345678" / ("a" * 32)
    for sub in ("metrics", "params", "tags"):
        (run / sub).mkdir(parents=True)
    (run.parent / "meta.yaml").write_text("name: e\n")
    (run / "meta.yaml").write_text("run_id: x\n")
    (run / "metrics" / "loss").write_text("1 0.5 0\n")
    os.mkfifo(run / "metrics" / "fifo")
    os.symlink("/dev/zero", run / "tags" / "zero")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN")
    os.symlink(secret, run / "params" / "leak")
    return run, secret


@pytest.mark.parametrize("volume", ["same", "other"])
def test_symlinks_and_fifos_in_the_store_are_left_alone_and_reported_once(
        store, tmp_path, volume, caplog):
    import shutil
    import tempfile
    import threading

    run, secret = hostile_run(store, tmp_path)
    base = tmp_path if volume == "same" else other_volume(tmp_path)
    root = Path(tempfile.mkdtemp(prefix="guard-vault-", dir=base))
    try:
        vault = open_vault(root / "vault", store)
        try:
            assert vault.mode == (LINK if volume == "same" else COPY)
            missing: list = []
            with caplog.at_level("WARNING", logger="guard.vault"):
                for _ in range(2):
                    thread = threading.Thread(target=lambda: missing.extend(vault.sync(())),
                                              daemon=True)
                    thread.start()
                    thread.join(10)
                    assert not thread.is_alive(), "the vault blocked on a FIFO or /dev/zero"
            assert missing == []  # there, so not deletions
            kept = {rel[-1] for rel, _ in vault.files_under(())}
            assert "loss" in kept and not kept & {"fifo", "zero", "leak"}
            assert vault.not_regular == 3
            warned = [r.getMessage() for r in caplog.records]
            assert len(warned) == 3  # once each, not at every pass
            assert any("metrics/fifo is a FIFO" in w for w in warned)
            assert sum("is a symlink" in w for w in warned) == 2
            held = b"".join(p.read_bytes() for p in root.rglob("*")
                            if p.is_file() and not p.is_symlink() and p.suffix != ".gz")
            assert b"TOP-SECRET-TOKEN" not in held
            assert os.path.lexists(run / "metrics" / "fifo")  # never deleted
            (run / "metrics" / "fifo").unlink()
            vault.sync(())
            assert vault.not_regular == 2
        finally:
            vault.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_run_folder_named_with_bytes_that_are_not_utf8_is_kept_and_restored(store, tmp_path):
    import shutil

    exp = store / "123456789012345678"
    exp.mkdir()
    (exp / "meta.yaml").write_text("name: e\n")
    bad = os.fsencode(exp) + b"/\xff\xfe"
    for sub in (b"metrics", b"params", b"artifacts"):
        os.makedirs(bad + b"/" + sub)
    with open(bad + b"/metrics/l\xe9oss", "wb") as fh:
        fh.write(b"1 0.5 0\n")
    vault = open_vault(tmp_path / "vault", store)
    try:
        assert vault.sync(()) == []
        vault.save(force=True)
    finally:
        vault.close()
    vault = open_vault(tmp_path / "vault", store)  # the index came back with the same names
    try:
        shutil.rmtree(bad)
        rel = (exp.name, os.fsdecode(b"\xff\xfe"))
        assert vault.sync(()) == [rel]
        assert vault.restore(rel) == 1
        with open(bad + b"/metrics/l\xe9oss", "rb") as fh:
            assert fh.read() == b"1 0.5 0\n"
    finally:
        vault.close()


@pytest.mark.parametrize("volume", ["same", "other"])
@pytest.mark.parametrize("where", ["params", "run", "experiment"])
def test_a_restore_never_writes_through_a_symlinked_folder(store, tmp_path, volume, where,
                                                           caplog):
    """The attack of issue 13: in a run the vault indexed, `params/` (or the run, or its
    experiment) becomes a symlink to a folder outside the store and meta.yaml goes: the
    restore linked the params into the outside folder. Now that folder is refused, said
    once, and the rest of the run that is safe comes back."""
    import shutil
    import tempfile

    run_id = log_runs(store, 1)[0]
    base = tmp_path if volume == "same" else other_volume(tmp_path)
    root = Path(tempfile.mkdtemp(prefix="guard-vault-", dir=base))
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "mine").write_text("outside the store")
    try:
        vault = open_vault(root / "vault", store)
        try:
            vault.sync(())
            run_dir = next(store.glob(f"*/{run_id}"))
            rel = run_dir.relative_to(store).parts
            files = [k for k, _ in vault.files_under(rel)]
            swapped = {"params": run_dir / "params", "run": run_dir,
                       "experiment": run_dir.parent}[where]
            shutil.rmtree(swapped)
            os.symlink(decoy, swapped)
            if where == "params":
                os.unlink(run_dir / "meta.yaml")
            before = listing(decoy)
            with caplog.at_level("ERROR", logger="guard.vault"):
                restored = [vault.restore(rel), vault.restore(rel)]
            assert listing(decoy) == before  # not one link or folder outside
            refused = swapped.relative_to(store).parts
            assert list(vault.refused) == [refused]
            assert "symlink" in vault.refused[refused]
            said = [r.getMessage() for r in caplog.records if "not restored below" in r.message]
            assert len(said) == 1 and "is a symlink, not a folder" in said[0]
            if where == "params":
                assert any(k[-2] == "params" for k in files)
                assert restored == [1, 0]  # meta.yaml, the safe part that was missing
                assert (run_dir / "meta.yaml").is_file()
            else:
                assert restored == [0, 0]
        finally:
            vault.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- the index on disk (issue 16): flat memory, migration, a damaged database ---------------

def index_files(root: Path) -> dict[str, int]:
    """The index's files in the vault folder, with their permission bits."""
    return {p.name: p.stat().st_mode & 0o777 for p in root.iterdir()
            if p.name.startswith("index.")}


def test_the_index_is_a_private_database_kept_across_close_and_open(store, tmp_path):
    log_runs(store, 2)
    (store / "0" / "empty").mkdir()
    root = tmp_path / "vault"
    vault = open_vault(root, store)
    try:
        vault.sync(())
        assert set(index_files(root)) >= {"index.sqlite"}
        assert all(mode == 0o600 for mode in index_files(root).values())  # -wal, -shm too
        before = sorted(vault.entries_under(()), key=repr)
    finally:
        vault.close()
    assert "index.json.gz" not in index_files(root)
    assert index_holds(root, ("0", "empty")) and not index_holds(root, ("0", "nothing"))
    again = open_vault(root, store)
    try:
        assert index_holds(root, ("0", "meta.yaml"))  # read-only, beside the open vault
        assert sorted(again.entries_under(()), key=repr) == before
        assert again.knows(("0", "empty")) and again.stats()["files"] == len(store_files(store))
        assert again.sync(()) == [] and not again.dirty  # a pass with no change writes nothing
    finally:
        again.close()


def legacy_tree(vault: Vault) -> dict:
    """The index as index.json.gz (version 1) held it: folders as nested objects."""
    tree: dict = {}
    for rel, key in vault.entries_under(()):
        if not rel:
            continue
        node = tree
        for part in rel[:-1]:
            node = node[part]
        node[rel[-1]] = {} if key is None else key
    return tree


def test_an_index_json_gz_is_moved_into_the_database_once_and_set_aside(store, tmp_path):
    import gzip
    import json
    import shutil

    from mlflow import MlflowClient

    ids = log_runs(store, 2)
    root = tmp_path / "vault"
    vault = open_vault(root, store)
    vault.sync(())
    before = sorted(vault.entries_under(()), key=repr)
    doc = {"version": 1, "mode": vault.mode, "store": str(store), "next_id": 1,
           "tree": legacy_tree(vault)}
    vault.close()
    for name in index_files(root):  # as an older guard left the vault: objects, index.json.gz
        (root / name).unlink()
    with gzip.open(root / "index.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(doc, fh)
    run_dir = next(store.glob(f"*/{ids[0]}"))
    shutil.rmtree(run_dir)  # deleted while no guard ran: only the old index knows it

    migrated = open_vault(root, store)
    try:
        assert not (root / "index.json.gz").exists()
        assert json.loads(gzip.decompress((root / "index.json.gz.migrated").read_bytes())) == doc
        assert sorted(migrated.entries_under(()), key=repr) == before
        rel = run_dir.relative_to(store).parts
        assert migrated.sync(()) == [rel]
        assert migrated.restore(rel) > 5
        assert MlflowClient(store.as_uri()).get_run(ids[0]).data.params == {"i": "0"}
    finally:
        migrated.close()
    again = open_vault(root, store)  # read once: the database is the index from now on
    try:
        assert sorted(again.entries_under(()), key=repr) == before
    finally:
        again.close()


def assert_reopened_holds_the_store(root, store) -> None:
    """Opened again, the vault's index names every file of the store."""
    again = open_vault(root, store)
    try:
        assert {rel for rel, _ in again.files_under(())} == set(store_files(store))
    finally:
        again.close()


def test_an_unreadable_index_is_set_aside_with_a_warning_and_rebuilt(store, tmp_path, caplog):
    log_runs(store, 1)
    root = tmp_path / "vault"
    vault = open_vault(root, store)
    vault.sync(())
    vault.close()
    damaged = b"not a database: overwritten by a disk error " * 100
    (root / "index.sqlite").write_bytes(damaged)
    with caplog.at_level("WARNING", logger="guard.vault"):
        vault = open_vault(root, store)
    try:
        said = [r.getMessage() for r in caplog.records]
        assert any("index.sqlite is unreadable" in w and "set aside as" in w
                   and "rebuilding it from the store" in w for w in said), said
        aside = [p for p in root.iterdir() if p.name.startswith("index.sqlite.unreadable-")]
        assert [p.read_bytes() for p in aside] == [damaged]  # kept, not deleted
        assert vault.sync(()) == []
        assert {rel for rel, _ in vault.files_under(())} == set(store_files(store))
    finally:
        vault.close()
    assert_reopened_holds_the_store(root, store)


def test_an_index_removed_or_replaced_by_a_folder_while_open(store, tmp_path):
    """Removed while the daemon runs: written again from the open database at the next save.
    A folder in its place: an error that names it (the part fails until it is moved)."""
    log_runs(store, 1)
    root = tmp_path / "vault"
    vault = open_vault(root, store)
    try:
        vault.sync(())
        (root / "index.sqlite").unlink()
        (store / "0" / "tags").mkdir(exist_ok=True)
        (store / "0" / "tags" / "note").write_text("new")
        vault.sync(())
        vault.save()
        assert (root / "index.sqlite").stat().st_mode & 0o777 == 0o600
        (root / "index.sqlite").unlink()
        (root / "index.sqlite").mkdir()
        (store / "0" / "tags" / "note2").write_text("new")
        vault.sync(())
        with pytest.raises(IsADirectoryError, match="index is a folder"):
            vault.save()
        (root / "index.sqlite").rmdir()
    finally:
        vault.close()
    assert_reopened_holds_the_store(root, store)


def test_the_vault_is_used_from_another_thread_than_the_one_that_opened_it(store, tmp_path):
    """The daemon opens it in its main thread, the vault part's thread (a new one after a
    restart) syncs and restores, the main thread closes it."""
    import threading

    log_runs(store, 1)
    vault = open_vault(tmp_path / "vault", store)
    out: list = []
    try:
        for _ in range(2):
            thread = threading.Thread(target=lambda: out.append(vault.sync(())))
            thread.start()
            thread.join(30)
        assert out == [[], []]
    finally:
        vault.close()


def test_restores_of_a_run_an_experiment_and_a_registered_model_from_the_database(
        store, tmp_path):
    import shutil

    from mlflow import MlflowClient

    ids = log_runs(store, 2)
    client = MlflowClient(store.as_uri())
    other = client.create_experiment("second")
    kept_run = client.create_run(other).info.run_id
    client.log_param(kept_run, "lr", "0.1")
    client.create_registered_model("precious")
    client.create_model_version("precious", f"runs:/{ids[1]}/model", run_id=ids[1])
    root = tmp_path / "vault"
    vault = open_vault(root, store)
    vault.sync(())
    vault.close()  # what follows comes from the database alone
    vault = open_vault(root, store)
    try:
        run_dir = next(store.glob(f"*/{ids[0]}"))
        gone = [run_dir, store / other, store / "models" / "precious"]
        for path in gone:
            shutil.rmtree(path)
        rels = sorted(p.relative_to(store).parts for p in gone)
        assert sorted(vault.sync(())) == rels
        for rel in rels:
            assert vault.restore(rel) >= 1
        assert vault.sync(()) == []
        assert client.get_run(ids[0]).data.params == {"i": "0"}
        assert client.get_experiment(other).name == "second"
        assert client.get_run(kept_run).data.params == {"lr": "0.1"}
        assert client.get_model_version("precious", "1").run_id == ids[1]
    finally:
        vault.close()


def many_files(store: Path, files: int) -> None:
    """`files` small files, ten to a folder, as run folders hold them."""
    for i in range(files // 10):
        folder = store / "1" / f"{i:032x}" / "params"
        folder.mkdir(parents=True)
        for j in range(10):
            (folder / f"p{j}").write_text(str(j))


def held_after_sync(tmp_path: Path, files: int) -> int:
    """Bytes of Python objects a vault holds after two full passes over `files` store
    files."""
    import gc
    import tracemalloc

    store = tmp_path / f"store-{files}"
    init_store(store)
    many_files(store, files)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        vault = open_vault(tmp_path / f"vault-{files}", store)
        try:
            for _ in range(2):  # the build, then a pass that finds everything known
                assert vault.sync(()) == []
            vault.save()
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            vault.close()
    finally:
        tracemalloc.stop()
    return held


def test_the_memory_a_vault_holds_does_not_grow_with_the_store(tmp_path):
    """The index is on disk: ten times the files, about the same Python memory (an
    in-memory index held about 310 bytes per file: 560 KB more here)."""
    small = held_after_sync(tmp_path, 200)
    large = held_after_sync(tmp_path, 2000)
    assert large - small < 100_000, (small, large)


# ---- files the vault cannot keep (issue 15) ----------------------------------------------------

def hand_run(store: Path, names: tuple[str, ...] = ("a.txt", "b.txt", "c.txt")) -> Path:
    """A run folder with a few artifacts, written by hand (the vault keeps any file)."""
    arts = store / "0" / "abc" / "artifacts"
    arts.mkdir(parents=True)
    (store / "0" / "abc" / "meta.yaml").write_text("run_id: abc\n")
    for name in names:
        (arts / name).write_text(name)
    return arts


def recording(monkeypatch, name: str, fail: OSError | None = None) -> list[tuple[str, tuple]]:
    """Every os.link and os.open (what safepath links, copies and reads with) that names
    `name`; `fail`: os.link raises it for that file."""
    from guard.core import safepath

    calls: list[tuple[str, tuple]] = []
    real_link, real_open = safepath.os.link, safepath.os.open

    def names_it(args: tuple) -> bool:
        return any(isinstance(a, (str, os.PathLike)) and os.fspath(a).endswith(name)
                   for a in args)

    def link(*args, **kw):
        if names_it(args):
            calls.append(("link", args))
            if fail is not None:
                raise fail
        return real_link(*args, **kw)

    def open_(*args, **kw):
        if names_it(args):
            calls.append(("open", args))
        return real_open(*args, **kw)

    monkeypatch.setattr(safepath.os, "link", link)
    monkeypatch.setattr(safepath.os, "open", open_)
    return calls


@pytest.mark.parametrize("attributes, exc, reason", [
    (0, None, None),
    (0x20, None, None),  # FILE_ATTRIBUTE_ARCHIVE: an ordinary file
    (0x400000, None, "online-only placeholder"),  # RECALL_ON_DATA_ACCESS (Synology Drive)
    (0x40000, None, "online-only placeholder"),  # RECALL_ON_OPEN
    (0x1000, None, "online-only placeholder"),  # OFFLINE
    (0x400020, OSError(errno.EXDEV, "Invalid cross-device link"), "online-only placeholder"),
    (0, OSError(errno.EXDEV, "Invalid cross-device link"), "on another volume"),
    (0, FileNotFoundError(errno.ENOENT, "No such file"), None),  # vanished: not unprotected
    (0, OSError(errno.EPERM, "Operation not permitted"),
     "could not be linked: Operation not permitted (EPERM)"),
])
def test_why_a_file_is_unprotected_is_a_pure_function(attributes, exc, reason):
    from guard.protection.vault import why_unprotected

    assert why_unprotected(attributes, exc) == reason


def test_windows_errors_say_placeholder_or_other_volume_by_their_number():
    from guard.protection.vault import why_unprotected

    def win(winerror: int, text: str) -> OSError:
        exc = OSError(errno.EINVAL, text)
        exc.winerror = winerror  # as Windows sets it
        return exc

    assert why_unprotected(0, win(362, "The cloud file provider is not running.")) == \
        "online-only placeholder"
    assert why_unprotected(0, win(389, "The cloud operation was unsuccessful.")) == \
        "online-only placeholder"
    assert why_unprotected(0, win(17, "The system cannot move the file to a different disk "
                                      "drive.")) == "on another volume"
    assert why_unprotected(0, win(367, "The process creation has been blocked."),
                           "copied") == ("could not be copied: The process creation has been "
                                         "blocked. (winerror 367)")


def test_a_file_on_another_volume_is_recorded_and_the_others_are_kept(store, tmp_path,
                                                                       monkeypatch, caplog):
    arts = hand_run(store)
    vault = open_vault(tmp_path / "vault", store)
    try:
        assert vault.mode == LINK
        calls = recording(monkeypatch, "b.txt", OSError(errno.EXDEV, "Invalid cross-device link"))
        with caplog.at_level("WARNING", logger="guard.vault"):
            for _ in range(2):
                assert vault.sync(()) == []
        rel = ("0", "abc", "artifacts", "b.txt")
        assert vault.unprotected == {rel: "on another volume"}
        assert calls and all(kind == "link" for kind, _ in calls)
        kept = {r for r, _ in vault.files_under(())}
        assert {("0", "abc", "meta.yaml"), rel[:-1] + ("a.txt",), rel[:-1] + ("c.txt",)} <= kept
        assert rel not in kept
        warned = [r.getMessage() for r in caplog.records if "b.txt" in r.getMessage()]
        assert len(warned) == 1 and "keep the store on one volume" in warned[0]  # once
        assert vault.stats()["unprotected"] == 1
        assert vault.unprotected_summary() == [("on another volume", 1,
                                                ["0/abc/artifacts/b.txt"])]

        monkeypatch.undo()  # the mount is gone: the file links now
        assert vault.sync(()) == []
        assert vault.unprotected == {} and rel in {r for r, _ in vault.files_under(())}
        assert os.stat(arts / "b.txt").st_nlink == 2
    finally:
        vault.close()


def test_a_file_that_vanishes_while_it_is_linked_is_not_unprotected(store, tmp_path,
                                                                    monkeypatch):
    hand_run(store)
    vault = open_vault(tmp_path / "vault", store)
    try:
        recording(monkeypatch, "b.txt", FileNotFoundError(errno.ENOENT, "No such file"))
        vault.sync(())
        assert vault.unprotected == {}
    finally:
        vault.close()


@pytest.mark.parametrize("volume", ["same", "other"])
def test_a_placeholder_is_never_linked_or_opened_and_is_recorded(store, tmp_path, monkeypatch,
                                                                 volume, caplog):
    """Synology Drive's online-only files: linking fails and reading downloads them, so the
    vault looks at the attributes the folder listing gives and leaves the file alone."""
    import shutil
    import tempfile

    from guard.protection import vault as vault_mod

    arts = hand_run(store, ("a.txt", "cloud.bin"))
    cloud: set[str] = {"cloud.bin"}
    monkeypatch.setattr(vault_mod, "file_attributes",
                        lambda entry: 0x400000 if os.path.basename(entry) in cloud else 0)
    base = tmp_path if volume == "same" else other_volume(tmp_path)
    root = Path(tempfile.mkdtemp(prefix="guard-vault-", dir=base))
    try:
        vault = open_vault(root / "vault", store)
        try:
            assert vault.mode == (LINK if volume == "same" else COPY)
            calls = recording(monkeypatch, "cloud.bin")
            with caplog.at_level("WARNING", logger="guard.vault"):
                vault.sync(())
                vault.sync(())
            rel = ("0", "abc", "artifacts", "cloud.bin")
            assert calls == []  # never linked, never opened: nothing was downloaded
            assert vault.unprotected == {rel: "online-only placeholder"}
            kept = {r for r, _ in vault.files_under(())}
            assert rel not in kept and rel[:-1] + ("a.txt",) in kept
            warned = [r.getMessage() for r in caplog.records if "cloud.bin" in r.getMessage()]
            assert len(warned) == 1 and "Always available on this device" in warned[0]

            cloud.clear()  # pinned: its data is on this machine now
            vault.sync(rel[:-1], recursive=False)
            assert vault.unprotected == {} and rel in {r for r, _ in vault.files_under(())}
            assert calls  # kept now, by a link or a copy

            cloud.add("cloud.bin")
            (arts / "a.txt").unlink()
            (arts / "other.bin").write_text("x")
            cloud.add("other.bin")
            vault.sync(rel[:-1], recursive=False)
            assert vault.unprotected == {rel[:-1] + ("other.bin",): "online-only placeholder"}
            (arts / "other.bin").unlink()  # gone: no longer unprotected (nor a deletion)
            assert vault.sync(rel[:-1], recursive=False) == [rel[:-1] + ("a.txt",)]
            assert vault.unprotected == {}
            (arts / "late.bin").write_text("x")
            cloud.add("late.bin")
            vault.sync(())
            assert list(vault.unprotected) == [rel[:-1] + ("late.bin",)]
            shutil.rmtree(store / "0" / "abc")  # its whole folder gone
            vault.sync(())
            assert vault.unprotected == {}
        finally:
            vault.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_record_is_bounded_and_says_there_are_more(store, tmp_path, monkeypatch):
    from guard.protection import vault as vault_mod

    hand_run(store, tuple(f"f{i}.bin" for i in range(5)))
    monkeypatch.setattr(vault_mod, "UNPROTECTED_MAX", 3)
    monkeypatch.setattr(vault_mod, "file_attributes",
                        lambda entry: 0x400000 if os.path.basename(entry).endswith(".bin")
                        else 0)
    vault = open_vault(tmp_path / "vault", store)
    try:
        vault.sync(())
        assert len(vault.unprotected) == 3 and vault.unprotected_more
        assert vault.unprotected_summary(2) == [
            ("online-only placeholder", 3, ["/".join(r) for r in list(vault.unprotected)[:2]])]
    finally:
        vault.close()
