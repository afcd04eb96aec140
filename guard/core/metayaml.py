"""Reading and replacing meta.yaml files safely, byte-compatible with how MLflow writes them.

Reading refuses what MLflow never writes (not a regular file, over 1 MB, binary, not a
mapping, YAML anchors and aliases, deep nesting) so a hostile or broken file is reported, not
parsed into trouble; a FIFO or symlink is refused without being opened (core.safeio).
Writing goes to a temp file in the same folder (a name MLflow ignores), is fsynced, re-checks
that nobody changed the original meanwhile, and only then renames over it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from guard.core import safeio
from guard.core.layout import TEMP_PREFIX
from guard.core.tempfiles import discard

# libyaml's C classes when PyYAML was built with it (much faster), else the pure-Python ones
Dumper: type[yaml.CSafeDumper | yaml.SafeDumper]
Loader: type[yaml.CSafeLoader | yaml.SafeLoader]
try:
    from yaml import CSafeDumper as Dumper
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as Dumper
    from yaml import SafeLoader as Loader

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32  # MLflow's meta.yaml files are 2-3 levels deep


class MetaError(Exception):
    """A meta.yaml the guard will not touch, with the reason."""


def parse(raw: bytes) -> dict:
    """Parse meta.yaml bytes into a mapping, or raise MetaError saying why not."""
    if len(raw) > MAX_BYTES:
        raise MetaError(f"larger than {MAX_BYTES // 1024} KiB")
    if not raw.strip():
        raise MetaError("empty")
    if b"\x00" in raw:
        raise MetaError("binary content")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MetaError("not UTF-8 text") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _flow_depth(text) > MAX_DEPTH:
        raise MetaError(f"nested deeper than {MAX_DEPTH} levels")  # libyaml can overflow the stack
    if "&" in text or "*" in text:
        try:
            for token in yaml.scan(text, Loader=yaml.SafeLoader):
                if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                    raise MetaError("uses YAML anchors/aliases, which MLflow never writes")
        except yaml.YAMLError as exc:
            raise MetaError(f"not valid YAML: {_brief(exc)}") from None
    try:
        doc = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        raise MetaError(f"not valid YAML: {_brief(exc)}") from None
    except RecursionError:
        raise MetaError(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(doc, dict):
        raise MetaError(f"not a mapping but {type(doc).__name__}")
    if _depth(doc) > MAX_DEPTH:
        raise MetaError(f"nested deeper than {MAX_DEPTH} levels")
    return doc


def _flow_depth(text: str) -> int:
    """Deepest [ / { nesting, counted without regard to quoting (an upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _depth(doc: object) -> int:
    """Nesting depth of parsed data, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def _brief(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or exc.__class__.__name__
    return f"{problem} at line {mark.line + 1}" if mark else str(problem)


def dump(doc: dict) -> bytes:
    """Serialize exactly as MLflow's write_yaml does."""
    text = yaml.dump(doc, default_flow_style=False, allow_unicode=True, sort_keys=True,
                     Dumper=Dumper)
    return text.encode("utf-8")


def read(path: Path) -> tuple[bytes, dict]:
    """The raw bytes and parsed mapping of a meta.yaml (MetaError when it is not usable)."""
    try:
        raw = safeio.read_bytes(path, MAX_BYTES)  # a FIFO or symlink is refused, unopened
    except safeio.TooLarge:
        raise MetaError(f"larger than {MAX_BYTES // 1024} KiB") from None
    except safeio.NotARegularFile as exc:
        raise MetaError(exc.reason) from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise MetaError(f"unreadable: {exc.strerror or exc}") from None
    return raw, parse(raw)


def read_doc(path: Path) -> dict:
    """The parsed mapping of a meta.yaml, or {} when it is missing or not usable (for readers
    that only look: the vault, the collector, the server's sanctions)."""
    try:
        return read(Path(path))[1]
    except (OSError, MetaError):
        return {}


def replace_if_unchanged(path: Path, new: bytes, expected: bytes,
                         limit: int | None = MAX_BYTES,
                         before_rename: Callable[[], None] | None = None) -> bool:
    """Atomically replace `path` with `new` unless its content is no longer `expected`
    (compared up to `limit` bytes; None: the whole file, for metrics files).

    Returns False (and writes nothing) when another writer got there first. `before_rename`
    runs once the new content is on disk and the original was found unchanged, just before
    the rename: a write-ahead journal line goes there (if it raises, nothing is renamed).
    A failed write leaves neither a temp file nor a partial file; its OSError names `path`.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        try:
            mode = path.stat().st_mode
            with open(tmp, "xb") as fh:
                fh.write(new)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode & 0o7777)
        except FileNotFoundError:
            raise
        except OSError as exc:  # full, read-only, no permission: name the file, not the temp
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        try:
            with safeio.open_regular(path) as (fh, _):  # never blocks on a swapped-in FIFO
                if fh.read(-1 if limit is None else limit + 1) != expected:
                    return False
        except safeio.NotARegularFile:
            return False
        if before_rename is not None:
            before_rename()
        _replace_with_retry(tmp, path)
        return True
    finally:
        if os.path.lexists(tmp):
            discard(tmp)


def _replace_with_retry(src: Path, dst: Path, attempts: int = 20) -> None:
    """os.replace, retried briefly: on Windows a sync client or scanner may hold the target."""
    for attempt in range(attempts):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == attempts - 1:
                raise
            time.sleep(min(0.5, 0.02 * 2 ** attempt))
