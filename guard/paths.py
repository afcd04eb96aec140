"""Path and URI canonicalization (pure functions: no disk access)."""

from __future__ import annotations

import ntpath
import os
import posixpath
import sys
from urllib.parse import unquote, urlsplit


def uri_to_local_path(value: str, cwd: str | None = None) -> str | None:
    """The local folder a store URI or path names, or None if it is not local (sqlite, s3...).

    Relative paths resolve against `cwd` (the process's working folder), as MLflow does.
    """
    value = value.strip()
    if not value:
        return None
    if value.lower().startswith("file:"):
        parts = urlsplit(value)
        path = unquote(parts.path)
        if parts.netloc and parts.netloc.lower() != "localhost":
            return "//" + parts.netloc + path
        if len(path) >= 3 and path[0] == "/" and path[2] == ":":
            path = path[1:]  # file:///C:/x
        if not path:
            return None
        if not os.path.isabs(path):  # file:mlruns is relative to the process's folder
            if cwd is None:
                return None
            path = os.path.join(cwd, path)
        return os.path.normpath(path)
    if ntpath.splitdrive(value)[0] and sys.platform == "win32":
        return os.path.normpath(value)
    if "://" in value or (":" in value and not value.startswith(("/", "."))
                          and not ntpath.splitdrive(value)[0]):
        return None
    if not os.path.isabs(value):
        if cwd is None:
            return None
        value = os.path.join(cwd, value)
    return os.path.normpath(value)


def same_folder(a: str, b: str) -> bool:
    """True when two local paths name the same folder (symlinks followed, case per platform)."""
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    if sys.platform == "win32":
        return ntpath.normcase(ra) == ntpath.normcase(rb)
    return posixpath.normpath(ra) == posixpath.normpath(rb)
