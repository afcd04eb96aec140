"""Table tests for the pure path core: parse_local, rewrite.decide and LocalPath.startswith.

Every platform's forms must be read alike on any machine, because a store synced between
machines carries locations another OS wrote.
"""

from __future__ import annotations

import pytest

from guard.core.paths import LocalPath, parse_local, portable_uri, safe_segments
from guard.portability.rewrite import KEEP, REWRITE, UNPORTABLE, UNSAFE, decide

POSIX, WIN = False, True


# --- parse_local: local forms -----------------------------------------------------------------

LOCAL_FORMS = [
    # POSIX
    ("file:///home/a/x", "/", ("home", "a", "x"), POSIX),
    ("file:/home/a/x", "/", ("home", "a", "x"), POSIX),
    ("/home/a/x", "/", ("home", "a", "x"), POSIX),
    ("FILE:///home/a/x", "/", ("home", "a", "x"), POSIX),
    ("file://localhost/home/x", "/", ("home", "x"), POSIX),
    ("file://LOCALHOST/home/x", "/", ("home", "x"), POSIX),
    ("/mnt/c/Users/a/x", "/", ("mnt", "c", "Users", "a", "x"), POSIX),  # WSL view of C:
    ("/Volumes/x", "/", ("Volumes", "x"), POSIX),  # macOS external drive
    ("/Volumes/My Drive/x", "/", ("Volumes", "My Drive", "x"), POSIX),
    # Windows drive letters
    ("file:///C:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    ("file:/C:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    ("file://localhost/C:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    ("C:\\Users\\a\\x", "C:", ("Users", "a", "x"), WIN),
    ("C:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    # UNC
    ("\\\\nas\\share\\x", "//nas", ("share", "x"), WIN),
    ("file://nas/share/x", "//nas", ("share", "x"), WIN),
    ("//nas/share/x", "//nas", ("share", "x"), WIN),
    ("file:////nas/share/x", "//nas", ("share", "x"), WIN),
    ("\\\\NAS\\share\\x", "//nas", ("share", "x"), WIN),  # host names are case-insensitive
    ("file://NAS/share/x", "//nas", ("share", "x"), WIN),
    # percent-encoding and spaces
    ("file:///home/a%20b/x", "/", ("home", "a b", "x"), POSIX),
    ("file:///C:/My%20Drive/x", "C:", ("My Drive", "x"), WIN),
    ("file://nas/my%20share/x", "//nas", ("my share", "x"), WIN),
    ("C:\\My Drive\\x", "C:", ("My Drive", "x"), WIN),
    ("/home/a b/x", "/", ("home", "a b", "x"), POSIX),
    # a plain path is not a URI: '%20' there is part of a folder name
    ("/home/a%20b/x", "/", ("home", "a%20b", "x"), POSIX),
    # mixed separators
    ("C:\\Users/a\\x", "C:", ("Users", "a", "x"), WIN),
    ("C:/Users\\a/x", "C:", ("Users", "a", "x"), WIN),
    ("file:///C:/Users\\a\\x", "C:", ("Users", "a", "x"), WIN),
    ("\\\\nas/share\\x", "//nas", ("share", "x"), WIN),
    # trailing slashes, doubled slashes and '.' segments
    ("/home/a/x/", "/", ("home", "a", "x"), POSIX),
    ("/home/a/x//", "/", ("home", "a", "x"), POSIX),
    ("file:///home/a/x/", "/", ("home", "a", "x"), POSIX),
    ("C:\\Users\\a\\x\\", "C:", ("Users", "a", "x"), WIN),
    ("C:/Users/a/x/", "C:", ("Users", "a", "x"), WIN),
    ("\\\\nas\\share\\x\\", "//nas", ("share", "x"), WIN),
    ("/home//a/./x", "/", ("home", "a", "x"), POSIX),
    # drive letter case: the anchor is normalised, segments keep their case
    ("c:\\Users\\a\\x", "C:", ("Users", "a", "x"), WIN),
    ("c:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    ("file:///c:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    ("file:/c:/Users/a/x", "C:", ("Users", "a", "x"), WIN),
    # surrounding whitespace (a hand-edited file)
    ("  /home/a/x\n", "/", ("home", "a", "x"), POSIX),
]


@pytest.mark.parametrize("value, anchor, segments, windows", LOCAL_FORMS,
                         ids=[row[0] for row in LOCAL_FORMS])
def test_parse_local_forms(value, anchor, segments, windows):
    assert parse_local(value) == LocalPath(anchor, segments, windows)


@pytest.mark.parametrize("a, b", [
    ("file:///home/a/x", "/home/a/x"),
    ("file:/home/a/x", "/home/a/x/"),
    ("file://localhost/home/a/x", "/home/a/x"),
    ("file:///C:/Users/a/x", "C:\\Users\\a\\x"),
    ("file:/C:/Users/a/x", "c:/Users/a/x"),
    ("file://nas/share/x", "\\\\nas\\share\\x"),
    ("//nas/share/x", "\\\\NAS\\share\\x\\"),
    ("file:///C:/My%20Drive/x", "C:\\My Drive\\x"),
])
def test_equivalent_forms_parse_equal(a, b):
    assert parse_local(a) == parse_local(b)


def test_drive_letter_case_does_not_matter_but_segment_case_is_kept():
    lower, upper = parse_local("c:\\Data\\x"), parse_local("C:\\Data\\x")
    assert lower == upper
    assert lower.segments == ("Data", "x")


@pytest.mark.parametrize("value, segments", [
    ("/x/12/../../etc", ("x", "12", "..", "..", "etc")),
    ("file:///x/%2E%2E/y", ("x", "..", "y")),
    ("C:\\x\\..\\y", ("x", "..", "y")),
    ("\\\\nas\\share\\..\\y", ("share", "..", "y")),
])
def test_parse_local_keeps_dotdot_so_callers_can_refuse_it(value, segments):
    loc = parse_local(value)
    assert loc is not None and loc.segments == segments
    assert loc.climbs


def test_plain_path_does_not_climb():
    assert not parse_local("/home/a/...x/x..y").climbs


# --- parse_local: not local -------------------------------------------------------------------

NOT_LOCAL = [
    "s3://bucket/x", "S3://bucket/x", "gs://bucket/x",
    "wasbs://container@account.blob.core.windows.net/x", "abfss://c@a.dfs.core.windows.net/x",
    "hdfs://namenode:8020/x", "hdfs:/x", "viewfs://cluster/x",
    "http://host/x", "https://host:5000/api/2.0/mlflow-artifacts/artifacts/x",
    "ftp://host/x", "sftp://user@host/x",
    "dbfs:/databricks/mlflow/x", "dbfs:/x",
    "runs:/0123456789abcdef/model", "models:/m-abc", "models:/adder/1",
    "mlflow-artifacts:/12/abc/artifacts", "mlflow-artifacts://host:5000/12/abc/artifacts",
    "", "   ", "file://", "file:///",
]


@pytest.mark.parametrize("value", NOT_LOCAL)
def test_parse_local_not_local(value):
    assert parse_local(value) is None


# --- decide: what happens to one location value -----------------------------------------------

TARGET = ("12", "abc", "artifacts")
NEW = "mlflow-artifacts:/12/abc/artifacts"

REWRITE_FORMS = [
    "file:///home/a/mlruns/12/abc/artifacts",
    "file:/home/a/mlruns/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts/",
    "file://localhost/home/a/mlruns/12/abc/artifacts",
    "file:///C:/Users/a/mlruns/12/abc/artifacts",
    "file:/C:/Users/a/mlruns/12/abc/artifacts",
    "C:\\Users\\a\\mlruns\\12\\abc\\artifacts",
    "C:\\Users\\a\\mlruns\\12\\abc\\artifacts\\",
    "C:/Users/a/mlruns/12/abc/artifacts",
    "c:/Users/a/mlruns/12/abc/artifacts",
    "C:\\Users/a\\mlruns/12\\abc/artifacts",
    "\\\\nas\\share\\mlruns\\12\\abc\\artifacts",
    "file://nas/share/mlruns/12/abc/artifacts",
    "//nas/share/mlruns/12/abc/artifacts",
    "/mnt/c/Users/a/mlruns/12/abc/artifacts",
    "/Volumes/lab/mlruns/12/abc/artifacts",
    "file:///home/a%20b/mlruns/12/abc/artifacts",
    "file:///C:/My%20Drive/mlruns/12/abc/artifacts",
    "C:\\My Drive\\mlruns\\12\\abc\\artifacts",
]


@pytest.mark.parametrize("value", REWRITE_FORMS)
def test_decide_rewrites_every_local_form_ending_in_the_target(value):
    d = decide(value, TARGET)
    assert (d.action, d.new) == (REWRITE, NEW)


@pytest.mark.parametrize("value", [
    "C:\\Users\\a\\mlruns\\12\\ABC\\Artifacts",
    "file:///C:/Users/a/mlruns/12/Abc/ARTIFACTS",
    "c:/users/a/MLRUNS/12/aBc/artifacts",
    "\\\\nas\\share\\mlruns\\12\\ABC\\artifacts",
    "file://nas/share/mlruns/12/ABC/artifacts",
])
def test_decide_windows_tail_matches_case_insensitively(value):
    d = decide(value, TARGET)
    # the new value names the store's folder as the file's own place says, not as typed
    assert (d.action, d.new) == (REWRITE, NEW)


@pytest.mark.parametrize("value", [
    "/home/a/mlruns/12/ABC/artifacts",
    "file:///home/a/mlruns/12/abc/Artifacts",
    "/mnt/c/Users/a/mlruns/12/ABC/Artifacts",
    "/Volumes/lab/mlruns/12/ABC/artifacts",
])
def test_decide_posix_tail_is_case_sensitive(value):
    assert decide(value, TARGET).action == UNPORTABLE


@pytest.mark.parametrize("value", [
    "/data/elsewhere",
    "file:///data/elsewhere",
    "C:\\data\\elsewhere",
    "\\\\nas\\share\\custom",
    "/home/a/mlruns/12/abc",  # the run folder, not its artifacts
    "/home/a/mlruns/12/abc/artifacts/sub",  # below the artifacts folder
    "/home/a/mlruns/99/abc/artifacts",  # another experiment
    "/home/a/mlruns/x12/abc/artifacts",  # segment-wise, not a string suffix
    "/home/a/mlruns/12/xabc/artifacts",
    "abc/artifacts",  # too short to hold the tail
])
def test_decide_path_ending_elsewhere_is_unportable(value):
    d = decide(value, TARGET)
    assert d.action == UNPORTABLE
    assert d.new is None


@pytest.mark.parametrize("value", [
    "file:///x/12/../../etc/12/abc/artifacts",
    "/x/12/../../etc/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts/../../12/abc/artifacts",
    "C:\\x\\..\\12\\abc\\artifacts",
    "\\\\nas\\share\\..\\..\\12\\abc\\artifacts",
    "file:///x/%2E%2E/12/abc/artifacts",
    "file:///x/..%2F..%2F12/abc/artifacts",
    "../12/abc/artifacts",
    "/12/abc/artifacts/..",
])
def test_decide_dotdot_is_unsafe(value):
    d = decide(value, TARGET)
    assert d.action == UNSAFE
    assert d.new is None


@pytest.mark.parametrize("value", [
    "s3://bucket/mlruns/12/abc/artifacts",
    "gs://bucket/12/abc/artifacts",
    "wasbs://c@a.blob.core.windows.net/12/abc/artifacts",
    "hdfs://nn/12/abc/artifacts",
    "http://host/12/abc/artifacts",
    "https://host/12/abc/artifacts",
    "dbfs:/12/abc/artifacts",
    "runs:/abc/artifacts",
    "models:/m-abc",
    "mlflow-artifacts:/12/abc/artifacts",
    "mlflow-artifacts:/99/other/artifacts",  # portable is never touched, even if odd
    "",
])
def test_decide_non_local_and_portable_values_are_kept(value):
    d = decide(value, TARGET)
    assert d.action == KEEP
    assert d.new is None


@pytest.mark.parametrize("value", [
    "mlflow-artifacts:/12/../../etc",
    "s3://bucket/../12/abc/artifacts",
])
def test_decide_never_rewrites_non_local_values_with_dotdot(value):
    assert decide(value, TARGET).action in (KEEP, UNSAFE)


@pytest.mark.parametrize("target", [(), ("12", ".."), ("..",), ("12", "C:"), ("a/b",), ("a\\b",),
                                    ("12", ""), (".",)])
def test_decide_refuses_targets_that_leave_the_store(target):
    d = decide("/home/a/mlruns/12/abc/artifacts", target)
    assert d.action == UNSAFE


def test_decide_experiment_target():
    d = decide("file:///C:/Users/alice/mlruns/12", ("12",))
    assert (d.action, d.new) == (REWRITE, "mlflow-artifacts:/12")


def test_portable_uri_and_safe_segments():
    assert portable_uri(("12", "models", "m-abc", "artifacts")) == \
        "mlflow-artifacts:/12/models/m-abc/artifacts"
    assert safe_segments(("12", "abc", "artifacts"))
    assert not safe_segments(())
    for bad in [("12", ".."), ("12", "."), ("12", ""), ("C:",), ("a:b",), ("a/b",), ("a\\b",)]:
        assert not safe_segments(bad), bad


# --- LocalPath.startswith: is a location under this machine's own store root? -----------------

@pytest.mark.parametrize("path, root, expected", [
    ("/home/a/mlruns/12/abc/artifacts", "/home/a/mlruns", True),
    ("file:///home/a/mlruns/12", "/home/a/mlruns", True),
    ("/home/a/mlruns/12", "/home/a/mlruns/", True),
    ("/home/a/mlruns", "/home/a/mlruns", True),  # the root itself
    ("/home/a/mlruns-old/12", "/home/a/mlruns", False),  # a string prefix is not a parent
    ("/home/a/mlrun/12", "/home/a/mlruns", False),
    ("/home/a", "/home/a/mlruns", False),  # a parent of the root
    ("/home/b/mlruns/12", "/home/a/mlruns", False),
    ("/home/A/mlruns/12", "/home/a/mlruns", False),  # POSIX is case-sensitive
    ("/home/a/MLRUNS/12", "/home/a/mlruns", False),
    ("/mnt/c/Users/a/mlruns/12", "C:\\Users\\a\\mlruns", False),  # different anchor
    ("C:\\Users\\a\\mlruns\\12", "/home/a/mlruns", False),
    # Windows: case-insensitive, every form alike
    ("C:\\Users\\Alice\\MLRuns\\12", "C:\\Users\\alice\\mlruns", True),
    ("file:///c:/users/alice/mlruns/12", "C:\\Users\\Alice\\MLRuns", True),
    ("C:/Users/alice/mlruns/12/abc", "c:\\users\\ALICE\\mlruns\\", True),
    ("file:///C:/Users/alice/mlruns-old/12", "C:\\Users\\alice\\mlruns", False),
    ("D:\\Users\\alice\\mlruns\\12", "C:\\Users\\alice\\mlruns", False),
    ("\\\\NAS\\Share\\mlruns\\12", "\\\\nas\\share\\mlruns", True),
    ("file://nas/SHARE/mlruns/12", "//nas/share/mlruns", True),
    ("\\\\other\\share\\mlruns\\12", "\\\\nas\\share\\mlruns", False),
    ("\\\\nas\\share\\mlruns\\12", "C:\\share\\mlruns", False),
])
def test_startswith_own_root(path, root, expected):
    assert parse_local(path).startswith(parse_local(root)) is expected
