"""Append-only local journals (JSON lines) of everything the guard changed, for audit and undo.

Any name works: a file name that is not valid UTF-8 reaches the guard as a str with surrogate
escapes (os.listdir); such a string is written in a readable escaped form (`\\xff`) with its
exact bytes in `<field>_b64` beside it, so undo finds the same file. Appending never raises
UnicodeEncodeError.

Write-ahead: `append`/`append_many` return only once the lines are fsynced, so a writer that
journals its intent before the rename that carries it out leaves a line for every file it
changed, whenever it is killed. `intent` builds those lines (with the hashes of the file before
and after and its whole old text) and `judge` tells, from a file's current bytes, whether the
change was made, never made, or overtaken: enough for undo to put back every byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from guard.core.safeio import printable

# What `judge` finds a write-ahead intent's file to be now.
APPLIED = "applied"          # holds exactly the bytes the intent wrote: undo puts back the old
NOT_APPLIED = "not applied"  # holds exactly the old bytes: the rename never happened
CHANGED = "changed since"    # neither: written by someone else after (or instead of) us
GONE = "gone"


# ---- encoding (pure) -------------------------------------------------------------------------

def name_bytes(text: str) -> bytes | None:
    """The bytes a str from the file system stands for (None: no file name is spelled so)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(value: object) -> object:
    """A JSON value with every string made valid Unicode text (for nested values)."""
    if isinstance(value, str):
        return value if _encodable(value) else printable(value)
    if isinstance(value, dict):
        return {_clean(k) if isinstance(k, str) else k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def portable(record: dict) -> dict:
    """The record as it is written: each top-level string that is not valid Unicode text
    becomes its readable form plus `<field>_b64` (its exact bytes); nested ones readable."""
    out: dict = {}
    for key, value in record.items():
        key = key if _encodable(key) else printable(key)
        if isinstance(value, str) and not _encodable(value):
            raw = name_bytes(value)
            out[key] = printable(value)
            if raw is not None:
                out[f"{key}_b64"] = base64.b64encode(raw).decode("ascii")
        else:
            out[key] = _clean(value)
    return out


def encode_line(record: dict) -> bytes:
    """One journal line (with its newline) for a record; never raises for a string."""
    text = json.dumps(portable(record), sort_keys=True, ensure_ascii=False, default=str)
    return (text + "\n").encode("utf-8", "backslashreplace")


def text_field(record: dict, name: str) -> str | None:
    """A field as the writer had it: from `<name>_b64` when present (the exact name, as
    os.listdir spells it here), else the field itself; None when absent or not a string."""
    b64 = record.get(f"{name}_b64")
    if isinstance(b64, str) and b64:
        try:
            return os.fsdecode(base64.b64decode(b64, validate=True))
        except ValueError:
            pass
    value = record.get(name)
    return value if isinstance(value, str) else None


# ---- write-ahead intents (pure) --------------------------------------------------------------

def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def intent(common: dict, changes: list[dict], old: bytes, new: bytes) -> list[dict]:
    """The lines written before a file's `old` bytes are replaced by `new`: one per changed
    key (`common` plus the change), sharing a `txn` id and the hashes of both contents; the
    first carries the whole old content (`old_text`, or `old_b64` if it is not UTF-8)."""
    shared = {**common, "txn": uuid.uuid4().hex[:16], "before": digest(old), "after": digest(new)}
    lines = [{**shared, **change} for change in changes] or [dict(shared)]
    try:
        lines[0]["old_text"] = old.decode("utf-8")
    except UnicodeDecodeError:
        lines[0]["old_b64"] = base64.b64encode(old).decode("ascii")
    return lines


def old_content(lines: list[dict]) -> bytes | None:
    """The whole old content an intent recorded (None for lines written before intents)."""
    for line in lines:
        if isinstance(line.get("old_text"), str):
            try:
                return line["old_text"].encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return None
        if isinstance(line.get("old_b64"), str):
            try:
                return base64.b64decode(line["old_b64"], validate=True)
            except ValueError:
                return None
    return None


def judge(current: bytes | None, line: dict) -> str:
    """What became of an intent, from the file's bytes now (None: the file is gone)."""
    if current is None:
        return GONE
    now = digest(current)
    if now == line.get("after"):
        return APPLIED
    if now == line.get("before"):
        return NOT_APPLIED
    return CHANGED


def transactions(records: Iterable[dict]) -> list[list[dict]]:
    """Records grouped by write: consecutive lines sharing a `txn` id form one group; a line
    without one (the journals of earlier versions) is a group of its own."""
    groups: list[list[dict]] = []
    for rec in records:
        txn = rec.get("txn")
        if txn and groups and groups[-1][0].get("txn") == txn:
            groups[-1].append(rec)
        else:
            groups.append([rec])
    return groups


_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


# ---- the file --------------------------------------------------------------------------------

class Journal:
    """One journal file, created 0600 in a 0700 folder: it holds old file contents and names,
    the daemon's user's alone (the state folder is private, see guard.core.state)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, **record) -> None:
        """One record, on disk (fsynced) when this returns; OSError if it cannot be."""
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """Records written in one go and fsynced (a crash may tear the last line only)."""
        now = time.time()
        data = b"".join(encode_line({"time": now, **rec}) for rec in records)
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o600)
            try:
                if os.lseek(fd, 0, os.SEEK_END) > 0:
                    os.lseek(fd, -1, os.SEEK_END)
                    if os.read(fd, 1) != b"\n":
                        data = b"\n" + data  # end a line torn by a crash: it stays unread
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a new file's name durable too (not possible on every platform: skipped there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_journal(path: Path) -> Iterator[dict]:
    """Every well-formed record; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
