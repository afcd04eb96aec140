"""The state folder's atomic JSON writes."""

from __future__ import annotations

import errno

import pytest

from guard.core import state as state_mod
from guard.core.layout import TEMP_PREFIX
from guard.core.state import read_json, write_json_atomic


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
