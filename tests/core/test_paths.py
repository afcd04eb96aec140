"""Table tests for the pure path core: parse_local, LocalPath.startswith, uri_to_local_path
and same_folder.

Every platform's forms must be read alike on any machine, because a store synced between
machines carries locations another OS wrote.
"""

from __future__ import annotations

import os

import pytest

from guard.core.paths import (
    LocalPath,
    parse_local,
    portable_uri,
    safe_segments,
    same_folder,
    uri_to_local_path,
)

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


# --- uri_to_local_path and same_folder --------------------------------------------------------

@pytest.mark.parametrize("value, cwd, expected", [
    ("file:///home/a/x", None, "/home/a/x"),
    ("file:/home/a/x", None, "/home/a/x"),
    ("FILE:///home/a/x", None, "/home/a/x"),
    ("file://localhost/home/a/x", None, "/home/a/x"),
    ("file:///home/a/x/", None, "/home/a/x"),
    ("file:///home/a/./y/../x", None, "/home/a/x"),
    ("/home/a/x", None, "/home/a/x"),
    ("/home/a/x/", "/elsewhere", "/home/a/x"),
    ("  /home/a/x  ", None, "/home/a/x"),
    ("mlruns", "/home/a", "/home/a/mlruns"),
    ("./data/mlruns", "/home/a", "/home/a/data/mlruns"),
    ("../mlruns", "/home/a/proj", "/home/a/mlruns"),
    ("mlruns", None, None),
    ("./mlruns", None, None),
    ("s3://b/x", None, None),
    ("s3://b/x", "/home/a", None),
    ("sqlite:///x.db", None, None),
    ("sqlite:///x.db", "/home/a", None),
    ("postgresql://user@host:5432/db", None, None),
    ("databricks", None, None),
    ("file:///home/a%20b/x", None, "/home/a b/x"),
    ("file:///home/caf%C3%A9/x", None, "/home/café/x"),
    ("", "/home/a", None),
    ("   ", "/home/a", None),
    ("file://", None, None),
])
def test_uri_to_local_path(value, cwd, expected):
    assert uri_to_local_path(value, cwd) == expected


def test_uri_to_local_path_unc_names_nothing_on_posix():
    # A UNC share (\\\\nas\\share) is not a folder a POSIX process can be serving.
    assert uri_to_local_path("file://nas/share/mlruns") is None
    assert uri_to_local_path("\\\\nas\\share\\mlruns") is None


@pytest.mark.parametrize("value", ["file:mlruns", "file:./mlruns"])
def test_relative_file_uri_resolves_against_cwd(value):
    # MLflow reads `file:mlruns` as the relative path mlruns in the server's working folder,
    # so it must resolve against that folder like a plain relative path does.
    assert uri_to_local_path(value, "/home/a") == "/home/a/mlruns"


@pytest.mark.parametrize("value", ["file:mlruns", "file:./mlruns"])
def test_relative_file_uri_without_cwd_is_unknown(value):
    # like "mlruns" with no cwd: the folder cannot be known, so None (never a relative path)
    assert uri_to_local_path(value, None) is None


def test_same_folder_compares_what_resolve_makes_of_both_paths():
    lab = os.path.abspath(os.sep + "lab")  # never created: `resolve` is a table
    a, b, link = (os.path.join(lab, n) for n in ("a", "b", "link"))
    links = {link: a}

    def resolve(path: str) -> str:
        return links.get(os.path.normpath(path), os.path.normpath(path))

    assert same_folder(a, a + os.sep, resolve)
    assert same_folder(a, link, resolve)
    assert same_folder(a, os.path.join(lab, "b", "..", "a"), resolve)
    assert not same_folder(a, b, resolve)
    assert not same_folder(a, link, lambda path: path)  # nothing followed, nothing equal
