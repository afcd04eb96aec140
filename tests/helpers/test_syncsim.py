"""Tests of the sync-client simulator itself (tests/helpers/syncsim.py), with real files in
tmp_path."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.helpers.syncsim import Syncer

pytestmark = pytest.mark.integration  # the simulated sync client's thread over real folders

DELAY = 0.25
INTERVAL = 0.05
SYNOLOGY_DATE = r"[A-Z][a-z]{2}-\d{2}-\d{4}-\d{4}"


@pytest.fixture
def make_syncer(tmp_path):
    started: list[Syncer] = []

    def make(n: int = 2, **kwargs) -> tuple[Syncer, list[Path]]:
        folders = [tmp_path / f"host{chr(ord('A') + i)}" for i in range(n)]
        for f in folders:
            f.mkdir(exist_ok=True)
        kwargs.setdefault("delay", DELAY)
        kwargs.setdefault("interval", INTERVAL)
        syncer = Syncer(folders, **kwargs)
        started.append(syncer)
        syncer.start()
        return syncer, folders

    yield make
    for s in started:
        s.stop()


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for folders), ignoring temp files."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name.startswith((".syncsim-", ".guard-tmp-")):
            continue
        out[p.relative_to(root).as_posix()] = None if p.is_dir() else p.read_bytes()
    return out


def edit_while_paused(syncer, a: Path, b: Path, rel: str, content_a: bytes, content_b: bytes):
    """Both hosts change `rel` during an outage; B's write is the later one (by mtime)."""
    syncer.pause()
    now = time.time()
    (a / rel).write_bytes(content_a)
    os.utime(a / rel, (now - 10, now - 10))
    (b / rel).write_bytes(content_b)
    os.utime(b / rel, (now, now))
    time.sleep(DELAY + 3 * INTERVAL)  # both local changes are indexed and "old enough"
    syncer.resume()
    syncer.settle(10)


def test_new_file_appears_only_after_the_delay(make_syncer):
    syncer, (a, b) = make_syncer()
    t0 = time.monotonic()
    (a / "x.txt").write_text("hello")
    assert not (b / "x.txt").exists()
    time.sleep(DELAY / 2)
    if time.monotonic() - t0 < DELAY:  # only meaningful if the sleep did not overshoot
        assert not (b / "x.txt").exists()
    assert syncer.settle(10) is True
    assert (b / "x.txt").read_text() == "hello"
    assert (b / "x.txt").stat().st_mtime_ns == (a / "x.txt").stat().st_mtime_ns
    assert syncer.replayed == 1
    assert any(action == "copy" and host == "hostA" and rel == "x.txt"
               for _, action, host, rel in syncer.log)


def test_modification_propagates_both_ways(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "f.txt").write_text("v1")
    syncer.settle(10)
    (a / "f.txt").write_text("v2 from A")
    syncer.settle(10)
    assert (b / "f.txt").read_text() == "v2 from A"
    (b / "f.txt").write_text("v3 from B")
    syncer.settle(10)
    assert (a / "f.txt").read_text() == "v3 from B"
    assert syncer.conflicts == 0


def test_replay_copies_the_content_current_at_replay_time(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "f.txt").write_text("first")
    time.sleep(INTERVAL * 2)  # seen as "first", then changed again before the delay is over
    (a / "f.txt").write_text("second")
    syncer.settle(10)
    assert (b / "f.txt").read_text() == "second"
    assert syncer.conflicts == 0


def test_deletions_propagate(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "keep.txt").write_text("k")
    (a / "gone.txt").write_text("g")
    (a / "d" / "sub").mkdir(parents=True)
    (a / "d" / "sub" / "inner.txt").write_text("i")
    syncer.settle(10)
    assert (b / "d" / "sub" / "inner.txt").exists()
    (a / "gone.txt").unlink()
    (a / "d" / "sub" / "inner.txt").unlink()
    (a / "d" / "sub").rmdir()
    (a / "d").rmdir()
    syncer.settle(10)
    assert not (b / "gone.txt").exists()
    assert not (b / "d").exists()
    assert (b / "keep.txt").read_text() == "k"
    assert syncer.deleted == 4  # gone.txt, inner.txt, d/sub, d


def test_nested_new_folders_propagate(make_syncer):
    syncer, (a, b) = make_syncer()
    deep = a / "mlruns" / "1" / "abc" / "metrics"
    deep.mkdir(parents=True)
    (deep / "loss").write_text("1 0.5 0\n")
    (a / "empty" / "also_empty").mkdir(parents=True)
    syncer.settle(10)
    assert (b / "mlruns" / "1" / "abc" / "metrics" / "loss").read_text() == "1 0.5 0\n"
    assert (b / "empty" / "also_empty").is_dir()
    assert tree(a) == tree(b)


def test_three_hosts_converge(make_syncer):
    syncer, (a, b, c) = make_syncer(3)
    (a / "from_a.txt").write_text("a")
    (b / "sub").mkdir()
    (b / "sub" / "from_b.txt").write_text("b")
    (c / "from_c.txt").write_text("c")
    syncer.settle(10)
    for f in (a, b, c):
        assert tree(f) == {"from_a.txt": b"a", "sub": None, "sub/from_b.txt": b"b",
                           "from_c.txt": b"c"}
    (c / "from_a.txt").write_text("a, edited on C")
    (b / "from_c.txt").unlink()
    syncer.settle(10)
    assert tree(a) == tree(b) == tree(c)
    assert (a / "from_a.txt").read_text() == "a, edited on C"
    assert not (a / "from_c.txt").exists()


def test_conflict_keeps_later_mtime_and_a_synology_copy_on_both_sides(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "meta.yaml").write_text("name: base\n")
    syncer.settle(10)
    edit_while_paused(syncer, a, b, "meta.yaml", b"name: from A\n", b"name: from B\n")
    pattern = re.compile(rf"^meta_hostA_{SYNOLOGY_DATE}_Conflict_\d+\.yaml$")
    for host in (a, b):
        assert (host / "meta.yaml").read_bytes() == b"name: from B\n"  # later mtime wins
        copies = [p for p in host.iterdir() if p.name != "meta.yaml"]
        assert len(copies) == 1 and pattern.match(copies[0].name), copies
        assert copies[0].read_bytes() == b"name: from A\n"  # nothing lost
    assert syncer.conflicts == 1
    assert tree(a) == tree(b)


def test_metric_file_without_extension_gets_conflict_name_without_extension(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "metrics").mkdir()
    (a / "metrics" / "loss").write_text("1 0.5 0\n")
    syncer.settle(10)
    edit_while_paused(syncer, a, b, "metrics/loss", b"1 0.5 0\n2 0.4 1\n", b"1 0.5 0\n9 0.1 1\n")
    for host in (a, b):
        names = sorted(p.name for p in (host / "metrics").iterdir())
        assert len(names) == 2 and names[0] == "loss"
        assert re.fullmatch(rf"loss_hostA_{SYNOLOGY_DATE}_Conflict_\d+", names[1]), names
        assert (host / "metrics" / names[1]).read_bytes() == b"1 0.5 0\n2 0.4 1\n"
        assert (host / "metrics" / "loss").read_bytes() == b"1 0.5 0\n9 0.1 1\n"


def test_syncthing_conflict_naming(make_syncer):
    syncer, (a, b) = make_syncer(conflict_style="syncthing", host_names=["laptop", "server"])
    (a / "meta.yaml").write_text("v: 0\n")
    (a / "loss").write_text("0\n")
    syncer.settle(10)
    edit_while_paused(syncer, a, b, "meta.yaml", b"v: A\n", b"v: B\n")
    edit_while_paused(syncer, a, b, "loss", b"A\n", b"B\n")
    for host in (a, b):
        names = sorted(p.name for p in host.iterdir())
        assert len(names) == 4, names
        meta_copy = [n for n in names if n.startswith("meta.sync-conflict-")]
        loss_copy = [n for n in names if n.startswith("loss.sync-conflict-")]
        assert re.fullmatch(r"meta\.sync-conflict-\d{8}-\d{6}-laptop\.yaml", meta_copy[0])
        assert re.fullmatch(r"loss\.sync-conflict-\d{8}-\d{6}-laptop", loss_copy[0])
        assert (host / meta_copy[0]).read_bytes() == b"v: A\n"
        assert (host / "meta.yaml").read_bytes() == b"v: B\n"
    assert syncer.conflicts == 2


def test_identical_content_on_both_sides_is_not_a_conflict(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "f.txt").write_text("base")
    syncer.settle(10)
    syncer.pause()
    (a / "f.txt").write_text("same")
    (b / "f.txt").write_text("same")
    time.sleep(DELAY + 3 * INTERVAL)
    syncer.resume()
    syncer.settle(10)
    assert syncer.conflicts == 0
    assert tree(a) == tree(b) == {"f.txt": b"same"}


def test_modification_wins_over_deletion(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "d").mkdir()
    (a / "d" / "f.txt").write_text("base")
    syncer.settle(10)
    syncer.pause()
    (a / "d" / "f.txt").unlink()
    (a / "d").rmdir()
    (b / "d" / "f.txt").write_text("edited on B")
    time.sleep(DELAY + 3 * INTERVAL)
    syncer.resume()
    syncer.settle(10)
    assert (a / "d" / "f.txt").read_text() == "edited on B"
    assert tree(a) == tree(b)


def test_no_ping_pong(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / "x").mkdir()
    (a / "x" / "one.txt").write_text("1")
    (b / "two.txt").write_text("2")
    syncer.settle(10)
    before = (syncer.counters(), len(syncer.log))
    time.sleep(1.0)
    assert (syncer.counters(), len(syncer.log)) == before
    assert syncer.replayed == 2 and syncer.deleted == 0 and syncer.conflicts == 0


def test_guard_temp_files_are_not_synced(make_syncer):
    syncer, (a, b) = make_syncer()
    (a / ".guard-tmp-123").write_text("in flight")
    (a / "real.txt").write_text("real")
    syncer.settle(10)
    assert (b / "real.txt").read_text() == "real"
    assert not (b / ".guard-tmp-123").exists()
    # The usual atomic write: temp file renamed over the real name is synced as a change.
    (a / ".guard-tmp-456").write_text("new real")
    os.replace(a / ".guard-tmp-456", a / "real.txt")
    syncer.settle(10)
    assert (b / "real.txt").read_text() == "new real"
    assert sorted(p.name for p in b.iterdir()) == ["real.txt"]
    assert not any(".guard-tmp-" in rel or ".syncsim-" in rel for _, _, _, rel in syncer.log)


def test_symlinks_are_neither_followed_nor_synced(make_syncer, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    syncer, (a, b) = make_syncer()
    (a / "link").symlink_to(outside, target_is_directory=True)
    (a / "filelink").symlink_to(outside / "secret.txt")
    (a / "plain.txt").write_text("p")
    syncer.settle(10)
    assert sorted(p.name for p in b.iterdir()) == ["plain.txt"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_settle_reports_differences_on_timeout(make_syncer):
    syncer, (a, b) = make_syncer()
    syncer.pause()
    (a / "stuck.txt").write_text("x")
    with pytest.raises(AssertionError, match=r"(?s)paused.*stuck\.txt"):
        syncer.settle(0.5)
    syncer.resume()
    assert syncer.settle(10)
