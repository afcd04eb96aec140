"""Path and URI canonicalization (pure functions: no disk access).

A location another machine wrote (`file:///C:/Users/alice/...`) must be understood on this one,
so parsing never asks the local OS what a path means: every platform's forms are read alike.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote


def uri_to_local_path(value: str, cwd: str | None = None) -> str | None:
    """The folder on *this* machine a store URI or path names, or None if not local here.

    Relative paths resolve against `cwd` (the process's working folder), as MLflow does.
    """
    loc = parse_local(value)
    if loc is None:
        return None
    if loc.anchor == "":
        return None if cwd is None else os.path.normpath(os.path.join(cwd, *loc.segments))
    if loc.anchor == "/":
        return os.path.normpath("/" + "/".join(loc.segments))
    if sys.platform != "win32":
        return None  # a drive or UNC path names nothing on a POSIX machine
    if loc.anchor.startswith("//"):
        return os.path.normpath("\\\\" + loc.anchor[2:] + "\\" + "\\".join(loc.segments))
    return os.path.normpath(loc.anchor + "\\" + "\\".join(loc.segments))


def same_folder(a: str, b: str, resolve: Callable[[str], str]) -> bool:
    """True when two local paths name the same folder, case per platform. `resolve` follows
    symlinks: the shell passes os.path.realpath, tests a table (so this stays disk-free)."""
    ra, rb = resolve(a), resolve(b)
    if sys.platform == "win32":
        return ntpath.normcase(ra) == ntpath.normcase(rb)
    return posixpath.normpath(ra) == posixpath.normpath(rb)


# ---- locations written into meta.yaml ------------------------------------------------------

PORTABLE_SCHEME = "mlflow-artifacts:"
_DRIVE = re.compile(r"^[A-Za-z]:(?:[\\/]|$)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


@dataclass(frozen=True)
class LocalPath:
    """A local filesystem location of any platform, reduced to comparable segments.

    `windows` marks drive-letter, UNC and backslash forms, which compare case-insensitively.
    Segments keep '..' so callers can refuse values that try to climb out of the store.
    """

    anchor: str
    segments: tuple[str, ...]
    windows: bool

    def has_tail(self, tail: tuple[str, ...]) -> bool:
        if not tail or len(self.segments) < len(tail):
            return False
        mine = self.segments[len(self.segments) - len(tail):]
        if self.windows:
            return tuple(s.casefold() for s in mine) == tuple(t.casefold() for t in tail)
        return mine == tail

    def startswith(self, other: LocalPath) -> bool:
        """True when `other` is this path or one of its parents (same anchor)."""
        fold = self.windows or other.windows
        norm = (lambda s: s.casefold()) if fold else (lambda s: s)
        if norm(self.anchor) != norm(other.anchor) or len(other.segments) > len(self.segments):
            return False
        return all(norm(a) == norm(b) for a, b in zip(self.segments, other.segments))

    @property
    def climbs(self) -> bool:
        return ".." in self.segments


def _split(path: str) -> tuple[str, ...]:
    return tuple(s for s in re.split(r"[\\/]+", path) if s and s != ".")


def parse_local(value: str) -> LocalPath | None:
    """Parse a location if it is a local filesystem path or file: URI, else None.

    Handles file:///home/a/x, file:/home/a/x, /home/a/x, file:///C:/x, file:/C:/x, C:\\x, C:/x,
    \\\\nas\\share\\x, file://nas/share/x, //nas/share/x, WSL /mnt/c/..., percent-encoding,
    mixed separators, trailing slashes and drive letter case.
    """
    v = value.strip()
    if not v:
        return None
    if v[:5].lower() == "file:":
        rest = v[5:]
        if rest.startswith("//"):
            host, _, path = rest[2:].partition("/")
            path = "/" + path
            if host and host.lower() != "localhost":
                return LocalPath("//" + host.lower(), _split(unquote(path)), True)
        else:
            path = rest
        path = unquote(path)
        if re.match(r"^/[A-Za-z]:", path):
            path = path[1:]
        v = path
        if not _split(v):
            return None  # "file://" or "file:///" names no folder
    if _DRIVE.match(v):
        return LocalPath(v[0].upper() + ":", _split(v[2:]), True)
    if v.startswith(("\\\\", "//")):
        parts = _split(v)
        if not parts:
            return None
        return LocalPath("//" + parts[0].lower(), parts[1:], True)
    if v.startswith(("/", "\\")):
        return LocalPath("/", _split(v), "\\" in v)
    if _SCHEME.match(v):
        return None  # s3://, gs://, dbfs:, runs:/, models:/, mlflow-artifacts:/, http(s)://...
    return LocalPath("", _split(v), "\\" in v)


def portable_uri(rel: tuple[str, ...]) -> str:
    """The machine-independent form of a location inside the store."""
    return PORTABLE_SCHEME + "/" + "/".join(rel)


def safe_segments(rel: tuple[str, ...]) -> bool:
    """Segments that can only name something inside the store."""
    return bool(rel) and all(s not in ("", ".", "..") and not _DRIVE.match(s)
                             and ":" not in s and "/" not in s and "\\" not in s for s in rel)
