"""The one path layer for writes: nothing below a root is followed out of it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.core import safepath
from guard.core.safeio import NotARegularFile, TooLarge
from guard.core.safepath import Escape, HeldOpen, Target, rel_of, target_of
from tests.helpers.heldopen import (
    ACCESS_DENIED,
    LOCK_VIOLATION,
    SHARING_VIOLATION,
    failing,
    held_open_error,
    no_waiting,
)
from tests.helpers.store import listing


@pytest.fixture(params=["fds", "checks"])
def mode(request, monkeypatch) -> str:
    """Every test runs twice: descriptor-relative (POSIX) and component checks (Windows)."""
    if request.param == "checks":
        monkeypatch.setattr(safepath, "USE_FDS", False)
    return request.param


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """A root and a decoy folder beside it, with a secret file."""
    root, decoy = tmp_path / "root", tmp_path / "decoy"
    (root / "a" / "b").mkdir(parents=True)
    decoy.mkdir()
    (decoy / "secret").write_text("secret")
    return root, decoy


@pytest.mark.parametrize("path, expected", [
    ("/r/a/b", ("a", "b")),
    ("/r", ()),
    ("/r/../x", None),
    ("/x/a", None),
    ("/r/a/../b", ("b",)),
    ("/rr/a", None),
])
def test_rel_of_is_lexical_and_refuses_what_leaves_the_root(path, expected):
    assert rel_of("/r", path) == expected


def test_target_of_refuses_a_path_outside(tmp_path):
    with pytest.raises(Escape):
        target_of(tmp_path / "root", tmp_path / "other" / "x")
    assert target_of(tmp_path, tmp_path / "a" / "b") == Target(tmp_path, ("a", "b"))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_names_that_are_not_one_component_are_refused(world, mode, name):
    root, _ = world
    with pytest.raises(Escape):
        safepath.mkdirs(Target(root, ("a", name)))


def test_mkdirs_makes_missing_folders_below_the_root(world, mode):
    root, _ = world
    safepath.mkdirs(Target(root, ("a", "x", "y")))
    assert (root / "a" / "x" / "y").is_dir()


def test_mkdirs_never_makes_the_root_itself(tmp_path, mode):
    with pytest.raises(FileNotFoundError, match="mounted"):
        safepath.mkdirs(Target(tmp_path / "unmounted", ("a",)))
    assert not (tmp_path / "unmounted").exists()


def test_a_symlinked_root_is_trusted(world, mode, tmp_path):
    root, _ = world
    (tmp_path / "link-to-root").symlink_to(root)
    safepath.write_new(Target(tmp_path / "link-to-root", ("a", "f")), b"x")
    assert (root / "a" / "f").read_bytes() == b"x"


@pytest.mark.parametrize("op", ["mkdirs", "write_new", "link", "copy_new", "replace",
                                "rename_new"])
def test_no_write_goes_through_a_symlinked_folder(world, mode, op):
    root, decoy = world
    (root / "src").write_text("data")
    os.symlink(decoy, root / "a" / "evil")
    before = listing(decoy)
    dst = Target(root, ("a", "evil", "new"))
    src = Target(root, ("src",))
    with pytest.raises(Escape, match="symlink"):
        if op == "mkdirs":
            safepath.mkdirs(dst.child("deeper"))
        elif op == "write_new":
            safepath.write_new(dst, b"x")
        elif op == "link":
            safepath.link(src, dst)
        elif op == "copy_new":
            safepath.copy_new(src, dst)
        elif op == "replace":
            safepath.replace(src, dst)
        else:
            safepath.rename_new(src, dst)
    assert listing(decoy) == before
    assert (root / "src").read_text() == "data"


def test_a_symlinked_folder_is_not_read_through_either(world, mode):
    root, decoy = world
    os.symlink(decoy, root / "a" / "evil")
    with pytest.raises(Escape):
        safepath.copy_new(Target(root, ("a", "evil", "secret")), Target(root, ("stolen",)))
    with pytest.raises(Escape):
        safepath.link(Target(root, ("a", "evil", "secret")), Target(root, ("stolen",)))
    assert not (root / "stolen").exists()
    assert not safepath.exists(Target(root, ("a", "evil", "secret")))


def test_only_regular_files_are_linked_or_copied(world, mode):
    root, decoy = world
    os.symlink(decoy / "secret", root / "a" / "link")
    os.mkfifo(root / "a" / "fifo")
    for name in ("link", "fifo"):
        for op in (safepath.link, safepath.copy_new):
            with pytest.raises(NotARegularFile):
                op(Target(root, ("a", name)), Target(root, ("out",)))
    assert not os.path.lexists(root / "out")


def test_a_symlink_as_the_last_component_is_never_written_through(world, mode):
    root, decoy = world
    os.symlink(decoy / "secret", root / "a" / "f")
    with pytest.raises(FileExistsError):
        safepath.write_new(Target(root, ("a", "f")), b"overwritten")
    assert (decoy / "secret").read_text() == "secret"


def test_replace_moves_a_symlink_itself_not_its_target(world, mode):
    root, decoy = world
    os.symlink(decoy / "secret", root / "a" / "l")
    safepath.replace(Target(root, ("a", "l")), Target(root, ("a", "m")))
    assert os.readlink(root / "a" / "m") == str(decoy / "secret")
    assert (decoy / "secret").read_text() == "secret"


def test_copy_is_bounded_and_keeps_mode_and_times(world, mode):
    root, _ = world
    src = root / "a" / "f"
    src.write_bytes(b"12345")
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_000_000_000, 2_000_000_000))
    with pytest.raises(TooLarge):
        safepath.copy_new(Target(root, ("a", "f")), Target(root, ("g",)), max_bytes=4)
    assert not (root / "g").exists()
    safepath.copy_new(Target(root, ("a", "f")), Target(root, ("c", "g")))
    st = os.stat(root / "c" / "g")
    assert (root / "c" / "g").read_bytes() == b"12345"
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 2_000_000_000)


def test_rename_new_refuses_an_existing_target(world, mode):
    root, _ = world
    (root / "x").write_text("x")
    (root / "y").write_text("y")
    with pytest.raises(FileExistsError):
        safepath.rename_new(Target(root, ("x",)), Target(root, ("y",)))
    assert (root / "y").read_text() == "y"


def test_walk_files_lists_kinds_and_never_descends_a_symlink(world, mode):
    root, decoy = world
    (root / "a" / "b" / "f").write_text("f")
    os.symlink(decoy, root / "a" / "evil")
    found = dict(safepath.walk_files(Target(root, ())))
    assert found[("a", "b", "f")] is None
    assert found[("a",)] == "folder"
    assert found[("a", "evil")] == "symlink"
    assert not any(rel[:2] == ("a", "evil") and len(rel) > 2 for rel in found)


def swap_for_symlink(root: Path, decoy: Path) -> None:
    """Between check and use: a/b moves away to a/moved and a symlink to the decoy takes
    its name."""
    os.rename(root / "a" / "b", root / "a" / "moved")
    os.symlink(decoy, root / "a" / "b")


def test_a_folder_swapped_for_a_symlink_between_check_and_use_gains_nothing(
        world, monkeypatch):
    """The walk has opened a/b; then a/b becomes a symlink to the decoy. The write goes into
    the folder that was checked (now named a/moved), never into the decoy."""
    if not safepath.USE_FDS:
        pytest.skip("descriptor-relative calls are POSIX only")
    root, decoy = world
    before = listing(decoy)

    monkeypatch.setattr(safepath, "between", lambda: swap_for_symlink(root, decoy))
    safepath.write_new(Target(root, ("a", "b", "planted")), b"x")
    assert listing(decoy) == before
    assert (root / "a" / "moved" / "planted").read_bytes() == b"x"


def test_the_component_checks_refuse_a_swap_made_before_the_use(world, monkeypatch):
    """Without descriptors (Windows) the components are checked again just before the call:
    a symlink swapped in after the first walk is refused there."""
    monkeypatch.setattr(safepath, "USE_FDS", False)
    root, decoy = world
    before = listing(decoy)

    monkeypatch.setattr(safepath, "between", lambda: swap_for_symlink(root, decoy))
    with pytest.raises(Escape):
        safepath.write_new(Target(root, ("a", "b", "planted")), b"x")
    assert listing(decoy) == before


# ---- reads, atomic writes, removals ----------------------------------------------------------

def test_reads_never_go_through_a_symlinked_folder_nor_a_symlink(world, mode):
    root, decoy = world
    (root / "a" / "f").write_bytes(b"12345")
    os.symlink(decoy, root / "a" / "evil")
    os.symlink(decoy / "secret", root / "a" / "link")
    assert safepath.read_bytes(Target(root, ("a", "f")), 5) == b"12345"
    with pytest.raises(TooLarge):
        safepath.read_bytes(Target(root, ("a", "f")), 4)
    with pytest.raises(Escape):
        safepath.read_bytes(Target(root, ("a", "evil", "secret")), 100)
    with pytest.raises(NotARegularFile):
        safepath.read_bytes(Target(root, ("a", "link")), 100)
    with pytest.raises(Escape):
        safepath.entries(Target(root, ("a", "evil")))
    assert [n for n, _ in safepath.entries(Target(root, ("a",)))] == ["b", "evil", "f", "link"]


def test_write_atomic_replaces_keeps_the_mode_and_leaves_no_temp(world, mode):
    root, decoy = world
    target = Target(root, ("a", "f"))
    (root / "a" / "f").write_bytes(b"old")
    os.chmod(root / "a" / "f", 0o640)
    assert safepath.write_atomic(target, b"newer", mode=None, expected=b"stale") is False
    assert (root / "a" / "f").read_bytes() == b"old"
    assert safepath.write_atomic(target, b"newer", mode=None, expected=b"old") is True
    assert (root / "a" / "f").read_bytes() == b"newer"
    assert os.stat(root / "a" / "f").st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b", "f"]
    os.symlink(decoy, root / "a" / "evil")
    with pytest.raises(Escape):
        safepath.write_atomic(Target(root, ("a", "evil", "secret")), b"overwritten")
    assert (decoy / "secret").read_text() == "secret" and listing(decoy)[0][0] == "secret"


def test_a_new_file_follows_the_umask_and_a_private_one_stays_private(world, mode):
    """Store files get the bits MLflow's would (0o666 less the umask), never world-writable;
    `mode` can only narrow them."""
    root, _ = world
    old = os.umask(0o022)
    try:
        safepath.write_atomic(Target(root, ("a", "shared")), b"x")
        safepath.write_atomic(Target(root, ("a", "private")), b"x", mode=0o600)
    finally:
        os.umask(old)
    assert os.stat(root / "a" / "shared").st_mode & 0o777 == 0o644
    assert os.stat(root / "a" / "private").st_mode & 0o777 == 0o600


def test_write_atomic_over_a_symlink_replaces_the_link_not_its_target(world, mode):
    root, decoy = world
    os.symlink(decoy / "secret", root / "a" / "f")
    assert safepath.write_atomic(Target(root, ("a", "f")), b"x", expected=b"secret") is False
    safepath.write_atomic(Target(root, ("a", "f")), b"x")
    assert (root / "a" / "f").read_bytes() == b"x" and not (root / "a" / "f").is_symlink()
    assert (decoy / "secret").read_text() == "secret"


def test_replace_file_and_mkdir_new_refuse_what_they_must(world, mode):
    root, decoy = world
    os.symlink(decoy / "secret", root / "a" / "link")
    with pytest.raises(NotARegularFile):
        safepath.replace_file(Target(root, ("a", "link")), Target(root, ("a", "f")))
    assert not os.path.lexists(root / "a" / "f")
    with pytest.raises(FileExistsError):
        safepath.mkdir_new(Target(root, ("a", "b")))
    safepath.mkdir_new(Target(root, ("a", "c")))
    assert (root / "a" / "c").is_dir()


@pytest.mark.parametrize("py311", [True, False])
def test_rmtree_removes_links_inside_never_what_they_point_to(world, mode, monkeypatch, py311):
    root, decoy = world
    if not py311:
        monkeypatch.setattr(safepath.sys, "version_info", (3, 10))
    (root / "a" / "b" / "f").write_text("f")
    os.symlink(decoy, root / "a" / "b" / "evil")
    os.symlink(decoy, root / "x")
    before = listing(decoy)
    with pytest.raises(Escape):
        safepath.rmtree(Target(root, ("x",)))
    safepath.rmtree(Target(root, ("a",)))
    assert not (root / "a").exists() and listing(decoy) == before


def test_copy_tree_copies_files_and_links_as_links(world, mode):
    root, decoy = world
    (root / "a" / "b" / "f").write_text("f")
    os.symlink(decoy, root / "a" / "evil")
    os.mkfifo(root / "a" / "fifo")
    left = safepath.copy_tree(Target(root, ("a",)), Target(root, ("copy",)))
    assert left == [(("fifo",), "FIFO")]
    assert (root / "copy" / "b" / "f").read_text() == "f"
    assert os.readlink(root / "copy" / "evil") == str(decoy)


# ---- a file another program holds open (Windows; issue 15) ------------------------------------

MOVES = {  # op: (the os function it calls, what it does to root/a/f and root/a/b/g)
    "replace": "replace", "rename_new": "rename", "link": "link", "replace_file": "replace",
    "write_atomic": "replace", "replace_path": "replace",
}


def move(op: str, root: Path) -> None:
    """Move (link, write) root/a/f to root/a/b/g with the safepath operation `op`."""
    src, dst = Target(root, ("a", "f")), Target(root, ("a", "b", "g"))
    if op == "write_atomic":
        safepath.write_atomic(dst, b"f")
    elif op == "replace_path":
        safepath.replace_path(src.path, dst.path)
    else:
        getattr(safepath, op)(src, dst)


@pytest.mark.parametrize("winerror", [SHARING_VIOLATION, LOCK_VIOLATION, ACCESS_DENIED])
@pytest.mark.parametrize("op", sorted(MOVES))
def test_a_file_held_open_for_a_moment_is_moved_once_it_is_let_go(world, mode, monkeypatch, op,
                                                                 winerror):
    root, _ = world
    (root / "a" / "f").write_bytes(b"f")
    pauses = no_waiting(monkeypatch)
    calls = failing(monkeypatch, MOVES[op], 3, lambda: held_open_error(winerror))
    move(op, root)
    assert (root / "a" / "b" / "g").read_bytes() == b"f"
    assert len(calls) == 4 and pauses == [0.02, 0.04, 0.08]
    assert (root / "a" / "f").exists() == (op in ("link", "write_atomic"))
    assert [p.name for p in (root / "a" / "b").iterdir()] == ["g"]  # no temp file left


@pytest.mark.parametrize("op", sorted(MOVES))
def test_a_file_held_open_throughout_is_named_with_its_holders_after_about_five_seconds(
        world, mode, monkeypatch, op):
    root, _ = world
    (root / "a" / "f").write_bytes(b"f")
    (root / "a" / "b" / "g").write_bytes(b"g")
    if op in ("rename_new", "link"):
        (root / "a" / "b" / "g").unlink()
    pauses = no_waiting(monkeypatch)
    failing(monkeypatch, MOVES[op], None)
    with pytest.raises(HeldOpen) as raised:
        move(op, root)
    exc = raised.value
    assert isinstance(exc, OSError) and exc.errno == errno.EACCES
    text = str(exc)
    named = root / "a" / "b" / "g" if op == "write_atomic" else root / "a" / "f"
    assert str(named) in text
    for holder in ("Synology Drive", "Explorer", "antivirus", "close it", "next pass"):
        assert holder in text
    assert 4.5 <= sum(pauses) <= 5.5 and max(pauses) == 0.5 and pauses[0] == 0.02
    assert (root / "a" / "f").read_bytes() == b"f"  # nothing moved, nothing lost
    assert sorted(p.name for p in (root / "a" / "b").iterdir()) == (
        [] if op in ("rename_new", "link") else ["g"])


@pytest.mark.parametrize("error", [
    lambda: PermissionError(errno.EACCES, "Permission denied"),  # POSIX: no winerror
    lambda: FileNotFoundError(errno.ENOENT, "No such file or directory"),
    lambda: OSError(errno.EXDEV, "Invalid cross-device link"),
    lambda: held_open_error(183),  # ERROR_ALREADY_EXISTS: no program to wait for
], ids=["EACCES", "ENOENT", "EXDEV", "winerror-183"])
@pytest.mark.parametrize("op", sorted(MOVES))
def test_other_errors_are_raised_at_once(world, mode, monkeypatch, op, error):
    root, _ = world
    (root / "a" / "f").write_bytes(b"f")
    pauses = no_waiting(monkeypatch)
    calls = failing(monkeypatch, MOVES[op], None, error)
    with pytest.raises(OSError) as raised:
        move(op, root)
    assert not isinstance(raised.value, HeldOpen)
    assert type(raised.value) is type(error())
    assert len(calls) == 1 and pauses == []
