"""A full state folder: the daemon's state folder on a small tmpfs that fills up once the
server is healthy. Stopping (`guardctl stop`, which cannot leave its request file there and
signals the daemon instead) ends the daemon and its whole server tree: the tree is ended
before anything is written, and the writes that fail are logged, not raised.
CI runs as root: the test mounts and unmounts the tmpfs itself.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from guard.supervision.server import port_bindable
from tests.helpers.daemons import any_alive, tree_pids, wait_for
from tests.helpers.disks import files_of, fill_blocks, health, tmpfs

pytestmark = pytest.mark.integration

INODES = 400  # the state folder needs a few dozen


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MB tmpfs with few inodes, unmounted at teardown."""
    with tmpfs(tmp_path / "state", "16m", INODES) as mount:
        yield mount


def fill(folder: Path) -> None:
    """Leave not a byte nor an inode free: blocks, then ever smaller ones, then empty files
    (a failed write that is cleaned up gives its pages back; a file needs an inode). A second
    name for each file there keeps a file the daemon removes (pids.json) from freeing any."""
    for path in [*folder.glob("*"), *folder.glob("*/*")]:
        if path.is_file():
            os.link(path, path.with_name(f"held-{path.name}"))
    fill_blocks(folder)
    for n in range(INODES):
        try:
            (folder / f"inode-{n}").touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            break
    with pytest.raises(OSError) as full:
        (folder / "probe").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC


@pytest.mark.parametrize("how", ["guardctl stop", "SIGTERM"])
def test_full_state_folder_leaves_no_server_behind(how, small_tmpfs, new_store, make_guard,
                                                   tmp_path):
    config = tmp_path / "guard.yaml"
    # the vault on the tmpfs would copy the store there (another volume): keep it beside it
    config.write_text(f"server:\n  health_interval: 1\nvault:\n  path: {tmp_path / 'vault'}\n")
    guard = make_guard(new_store, state_dir=small_tmpfs, config=config).start()
    doc = guard.wait_healthy()
    daemon_pid, server_pid = doc["daemon"]["pid"], doc["server"]["pid"]
    tree = wait_for(lambda: tree_pids(server_pid) if len(tree_pids(server_pid)) > 1 else None,
                    30, what="the server's worker")
    guard.seen_server_pids |= tree
    assert health(guard.url) == "OK"
    outside = files_of(tmp_path, skip="state")

    fill(small_tmpfs)
    assert guard.proc is not None
    if how == "SIGTERM":
        os.kill(daemon_pid, signal.SIGTERM)
    else:
        stop = guard.ctl("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        # the daemon ended its tree itself: stop found nothing left behind
        assert stop.stdout.strip() == f"mlflow-guard stopped (was pid {daemon_pid})"
        assert "sending SIGTERM" in stop.stderr  # the request file could not be written
    guard.proc.wait(timeout=60)
    assert any_alive([daemon_pid, *tree]) == []
    wait_for(lambda: port_bindable("127.0.0.1", guard.port), 10, what="the port to be free")
    output = guard.output()
    # the loop met the full folder first: said once, and the daemon went on guarding
    assert output.count("cannot write the status file") == 1, output
    assert "No space left on device" in output
    assert guard.proc.returncode == 0, output

    # the store and everything outside the state folder: as before (the guard's own run log,
    # the vault and the store's coordination folder are the guard's to write)
    after = files_of(tmp_path, skip="state")
    changed = {k for k in set(outside) | set(after) if outside.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith(("guard-run-", "vault/",
                                                    "mlruns/mlflow-guard.trash/"))} == set()
