"""Reading, serializing and safely replacing meta.yaml files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guard.core import safepath
from guard.core.metayaml import (
    MAX_BYTES,
    TEMP_PREFIX,
    MetaError,
    dump,
    parse,
    read,
    read_doc,
    replace_if_unchanged,
)
from tests.helpers.store import DIRECT_STORE, copy_direct_store

REAL_STORE = DIRECT_STORE

BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
artifact_location: *h
"""


@pytest.fixture
def real_store(tmp_path) -> Path:
    return copy_direct_store(tmp_path)


# --- parse rejects what MLflow never writes ---------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (b"artifact_location: [unclosed\n", "not valid YAML"),
    (b"a: b: c\n", "not valid YAML"),
    (b"key: 'unterminated\n", "not valid YAML"),
    (b"\tartifact_location: x\n  - y\n", "not valid YAML"),
    (b"a: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    (b"- a\n- b\n", "not a mapping but list"),
    (b"just text\n", "not a mapping but str"),
    (b"42\n", "not a mapping but int"),
    (b"null\n", "not a mapping"),
    (b"---\n", "not a mapping"),
    (b"", "empty"),
    (b"   \n\t\n\r\n", "empty"),
    (b"\n", "empty"),
    (b"artifact_location: file:///x\x00\x01\x02\n", "binary"),
    (b"\x00" * 64, "binary"),
    ("artifact_location: x".encode("utf-16"), "binary"),
    (b"artifact_location: caf\xe9\n", "UTF-8"),
    (b"name: \xff\xfe\xfd\n", "UTF-8"),
    (b"artifact_location: x\n#" + b"p" * MAX_BYTES + b"\n", "larger than"),
    (BILLION_LAUGHS, "anchors/aliases"),
    (b"base: &base {artifact_location: x}\nrun:\n  <<: *base\n", "anchors/aliases"),
    (b"a: &x 1\nb: *x\n", "anchors/aliases"),
])
def test_parse_rejects(raw, reason):
    with pytest.raises(MetaError) as info:
        parse(raw)
    assert reason in str(info.value)


PARSE_IN_CHILD = """
import sys
from guard.core.metayaml import MetaError, parse
raw = open(sys.argv[1], "rb").read()
try:
    doc = parse(raw)
except MetaError as exc:
    print("MetaError:", exc)
else:
    print("parsed", type(doc).__name__)
"""


@pytest.mark.integration
@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b"{a: ", b"}")])
def test_parse_rejects_deep_nesting_without_crashing(tmp_path, opening, closing):
    # ~300 KB, well under the 1 MB cap; MLflow never nests deeper than a few levels.
    # Parsed in a child process: a crash there must fail this test, not end the test run.
    depth = 100_000
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"artifact_location: " + opening * depth + closing * depth + b"\n")
    assert path.stat().st_size < MAX_BYTES
    proc = subprocess.run([sys.executable, "-c", PARSE_IN_CHILD, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"parse() crashed the interpreter (exit {proc.returncode}) on {depth}-deep nesting: "
        f"{proc.stderr[-500:]}")
    assert proc.stdout.startswith("MetaError"), proc.stdout


def test_parse_rejects_just_over_the_limit_but_reads_the_limit():
    head = b"artifact_location: x\n#"
    at_limit = head + b"p" * (MAX_BYTES - len(head) - 1) + b"\n"
    assert len(at_limit) == MAX_BYTES
    assert parse(at_limit) == {"artifact_location": "x"}
    with pytest.raises(MetaError, match="larger than"):
        parse(at_limit + b"\n")


@pytest.mark.parametrize("raw, expected", [
    (b"run_name: a&b*c\n", {"run_name": "a&b*c"}),
    (b"run_name: a *b &c\n", {"run_name": "a *b &c"}),
    (b"run_name: '*x'\n", {"run_name": "*x"}),
    (b"run_name: '&x'\n", {"run_name": "&x"}),
    (b'description: "&y *z"\n', {"description": "&y *z"}),
    (b"run_name: 'x: &y'\n", {"run_name": "x: &y"}),
    (b"name: x # &c *d\n", {"name": "x"}),
    (b"artifact_uri: file:///C:/R&D/*/mlruns/0\n", {"artifact_uri": "file:///C:/R&D/*/mlruns/0"}),
    (b"description: |\n  *literal &block\n", {"description": "*literal &block\n"}),
    ("run_name: caf\u00e9 \u2603\n".encode(), {"run_name": "caf\u00e9 \u2603"}),
])
def test_parse_accepts_star_and_ampersand_inside_values(raw, expected):
    assert parse(raw) == expected


def test_parse_accepts_every_real_meta_yaml(real_store):
    files = sorted(real_store.rglob("meta.yaml"))
    assert len(files) >= 7
    for path in files:
        doc = parse(path.read_bytes())
        assert isinstance(doc, dict) and doc, path


def test_read_returns_raw_and_doc_and_refuses_big_files_by_size(tmp_path):
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"artifact_location: x\n")
    assert read(path) == (b"artifact_location: x\n", {"artifact_location": "x"})
    path.write_bytes(b"artifact_location: x\n#" + b"p" * MAX_BYTES)
    with pytest.raises(MetaError, match="larger than"):
        read(path)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.yaml")


def test_read_refuses_a_fifo_or_symlink_without_opening_it(tmp_path):
    """A FIFO meta.yaml moved into the store once froze the rewrite thread in open()."""
    import threading

    fifo = tmp_path / "fifo" / "meta.yaml"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    link = tmp_path / "link" / "meta.yaml"
    link.parent.mkdir()
    (tmp_path / "outside.yaml").write_bytes(b"artifact_location: x\n")
    os.symlink(tmp_path / "outside.yaml", link)
    errors = {}

    def attempt(path):
        try:
            read(path)
        except MetaError as exc:
            errors[path] = str(exc)

    for path in (fifo, link):
        thread = threading.Thread(target=attempt, args=(path,), daemon=True)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), f"read({path.parent.name}) blocked"
    assert errors == {fifo: "not a regular file but a FIFO",
                      link: "not a regular file but a symlink"}
    assert read_doc(fifo) == {} and read_doc(link) == {}


# --- dump is MLflow's write_yaml, byte for byte -----------------------------------------------

def test_round_trip_every_real_meta_yaml(real_store):
    files = sorted(real_store.rglob("meta.yaml"))
    assert len(files) >= 7
    for path in files:
        raw = path.read_bytes()
        assert dump(parse(raw)) == raw, path


@pytest.mark.parametrize("relpath, key", [
    ("0/meta.yaml", "artifact_location"),
    ("401878344117323602/meta.yaml", "artifact_location"),
    ("401878344117323602/57718c19fb0047259fbe7565bb4c52ea/meta.yaml", "artifact_uri"),
    ("401878344117323602/models/m-da48845d65f640198a3930713e766e00/meta.yaml",
     "artifact_location"),
    ("models/adder/version-1/meta.yaml", "storage_location"),
])
def test_changing_one_key_changes_only_that_line(real_store, relpath, key):
    raw = (real_store / relpath).read_bytes()
    doc = parse(raw)
    doc[key] = "mlflow-artifacts:/some/where"
    new = dump(doc)
    old_lines, new_lines = raw.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    diff = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(diff) == 1
    assert diff[0][0].startswith(f"{key}: ".encode())
    assert diff[0][1] == f"{key}: mlflow-artifacts:/some/where\n".encode()


def test_dump_matches_mlflow_write_yaml(tmp_path):
    from mlflow.utils.yaml_utils import write_yaml

    doc = {"artifact_location": "file:///C:/Users/alice/My Drive/lab with a long name/"
                                "mlruns/401878344117323602/models/m-abc/artifacts",
           "name": "caf\u00e9 & *stars*", "experiment_id": "0", "current_stage": "None",
           "tags": [], "aliases": {}, "status": 3, "description": None, "flag": True,
           "run_name": "&anchor-looking", "zeta": "yes", "alpha": "1.5"}
    write_yaml(str(tmp_path), "meta.yaml", doc)
    written = (tmp_path / "meta.yaml").read_bytes()
    assert dump(doc) == written
    assert parse(written) == doc


# --- replace_if_unchanged ---------------------------------------------------------------------

def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444])
def test_replace_writes_keeps_mode_and_leaves_no_temp(tmp_path, mode):
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"artifact_location: file:///x/0\n")
    os.chmod(path, mode)
    assert replace_if_unchanged(path, b"artifact_location: mlflow-artifacts:/0\n",
                                b"artifact_location: file:///x/0\n") is True
    assert path.read_bytes() == b"artifact_location: mlflow-artifacts:/0\n"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.yaml"]


def test_replace_refuses_when_content_changed_in_between(tmp_path):
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"artifact_location: file:///x/0\n")
    stale = path.read_bytes()
    path.write_bytes(b"artifact_location: file:///x/0\nname: renamed\n")  # another writer
    os.chmod(path, 0o640)
    before = path.stat()
    assert replace_if_unchanged(path, b"artifact_location: mlflow-artifacts:/0\n", stale) is False
    assert path.read_bytes() == b"artifact_location: file:///x/0\nname: renamed\n"
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert temp_files(tmp_path) == []


def test_replace_leaves_no_temp_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "meta.yaml"
    path.write_bytes(b"a: 1\n")

    def broken(src, dst, sfd, dfd, attempts=20):
        raise PermissionError(13, "held by a scanner")

    monkeypatch.setattr(safepath, "_replace_in", broken)
    with pytest.raises(PermissionError):
        replace_if_unchanged(path, b"a: 2\n", b"a: 1\n")
    assert path.read_bytes() == b"a: 1\n"
    assert temp_files(tmp_path) == []


def test_replace_on_real_file_round_trip(real_store):
    path = real_store / "0" / "meta.yaml"
    raw, doc = read(path)
    doc["artifact_location"] = "mlflow-artifacts:/0"
    assert replace_if_unchanged(path, dump(doc), raw)
    assert read(path)[1] == doc
    assert temp_files(path.parent) == []


def test_replace_never_writes_through_a_symlinked_folder(tmp_path):
    from guard.core.safepath import Escape, Target

    store, decoy = tmp_path / "store", tmp_path / "decoy"
    (store / "0").mkdir(parents=True)
    decoy.mkdir()
    (decoy / "meta.yaml").write_bytes(b"a: 1\n")
    os.symlink(decoy, store / "0" / "tags")
    with pytest.raises(Escape):
        replace_if_unchanged(Target(store, ("0", "tags", "meta.yaml")), b"a: 2\n", b"a: 1\n")
    assert (decoy / "meta.yaml").read_bytes() == b"a: 1\n"
    assert sorted(p.name for p in decoy.iterdir()) == ["meta.yaml"]
