"""The state folder: atomic JSON writes, and its privacy (modes, owners, trusted requests)."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time

import pytest

from guard.core import state as state_mod
from guard.core.layout import TEMP_PREFIX
from guard.core.state import StateDir, file_problem, folder_verdict, read_json, write_json_atomic


def test_a_write_the_disk_refuses_leaves_no_temp_file_and_names_the_target(tmp_path,
                                                                            monkeypatch):
    target = tmp_path / "host.json"
    write_json_atomic(target, {"n": 1})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_mod.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        write_json_atomic(target, {"n": 2})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["host.json"]  # no 0-byte temp file
    assert read_json(target) == {"n": 1}
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


def test_names_that_are_not_utf8_round_trip_through_a_json_file(tmp_path):
    """status.json carries store paths; a non-UTF-8 folder name must neither break the write
    nor come back as another name (os.fsencode gives the same bytes)."""
    import os

    name = os.fsdecode(b"1234/\xff\xfe/metrics/l\xe9oss")
    path = tmp_path / "status.json"
    write_json_atomic(path, {"problems": {name: "malformed"}})
    path.read_bytes().decode("ascii")  # plain ASCII on disk: any reader can open it
    back = read_json(path)
    assert back == {"problems": {name: "malformed"}}
    assert os.fsencode(next(iter(back["problems"]))) == b"1234/\xff\xfe/metrics/l\xe9oss"


# --- a private state folder (issue 13) --------------------------------------------------------
posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners and modes")
REG, DIR = stat.S_IFREG, stat.S_IFDIR


@pytest.mark.parametrize("uid, mode, problem", [
    (1000, REG | 0o600, None),
    (1000, REG | 0o644, None),                      # readable by others: no decision of theirs
    (0, REG | 0o600, None),                         # root may ask (sudo guardctl stop)
    (1001, REG | 0o600, "owned by uid 1001"),
    (1000, REG | 0o620, "writable by group or others (mode 0620)"),
    (1000, REG | 0o602, "writable by group or others"),
    (1000, stat.S_IFIFO | 0o600, "not a regular file"),
])
def test_file_problem(uid, mode, problem):
    found = file_problem("control.json", uid, mode, 1000)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("uid, mode, verdict", [
    (1000, DIR | 0o700, "ok"), (1000, DIR | 0o755, "tighten"), (1000, DIR | 0o777, "tighten"),
    (1001, DIR | 0o700, "refuse"), (0, DIR | 0o700, "refuse"),
])
def test_folder_verdict(uid, mode, verdict):
    assert folder_verdict(uid, mode, 1000) == verdict


@posix
def test_create_under_umask_000_makes_everything_private(tmp_path):
    old = os.umask(0)
    try:
        state = StateDir(tmp_path / "state")
        assert state.create() == []
        state.request("stop")
        write_json_atomic(state.status, {"n": 1})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state.root, *state.root.iterdir()]}
    assert modes == {"state": 0o700, "logs": 0o700, "journal": 0o700, "quarantine": 0o700,
                     "locks": 0o700, "vault": 0o700, "daemon.lock": 0o600,
                     "control.json": 0o600, "status.json": 0o600}


@posix
def test_create_tightens_a_loose_folder_and_says_so(tmp_path):
    root = tmp_path / "state"
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "guard.log").write_text("x")
    for path, mode in ((root, 0o777), (root / "logs", 0o755), (root / "logs" / "guard.log", 0o644)):
        os.chmod(path, mode)
    notes = StateDir(root).create()
    assert "mode 0777); made it 0700" in notes[0]
    assert any("logs/guard.log" in n for n in notes)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "logs" / "guard.log").stat().st_mode) == 0o600


@posix
def test_create_refuses_another_users_folder(tmp_path):
    if os.geteuid() != 0:  # giving a folder to another user needs root, which CI has
        if os.environ.get("CI") == "true":
            pytest.fail("chown needs root (CI runs as root)")
        pytest.skip("chown needs root; run the suite as root to cover this")
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(OSError, match="not to the daemon's user.*chown"):
        StateDir(root).create()


@posix
@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_control_file_others_may_write_is_removed_not_obeyed(tmp_path, mode, caplog):
    state = StateDir(tmp_path / "state")
    state.create()
    state.control.write_text(json.dumps({"command": "stop"}))
    os.chmod(state.control, mode)
    assert state.take_request() is None
    assert not state.control.exists()
    assert "writable by group or others" in caplog.text and "not obeyed" in caplog.text


@posix
def test_a_symlinked_control_file_is_refused(tmp_path, caplog):
    state = StateDir(tmp_path / "state")
    state.create()
    target = tmp_path / "req.json"
    target.write_text(json.dumps({"command": "stop"}))
    state.control.symlink_to(target)
    assert state.take_request() is None and target.exists()
    assert "symlink" in caplog.text


@posix
def test_the_users_own_request_is_obeyed(tmp_path):
    state = StateDir(tmp_path / "state")
    state.create()
    token = state.request("restart")
    assert state.take_request() == {"command": "restart", "id": token,
                                    "at": pytest.approx(time.time(), abs=60)}
