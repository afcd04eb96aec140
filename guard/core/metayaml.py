"""Reading and replacing meta.yaml files safely, byte-compatible with how MLflow writes them.

Reading refuses what MLflow never writes (not a regular file, over 1 MB, binary, not a
mapping, YAML anchors and aliases, deep nesting) so a hostile or broken file is reported, not
parsed into trouble; a FIFO or symlink is refused without being opened (core.safeio).
Writing goes to a temp file in the same folder (a name MLflow ignores), is fsynced, re-checks
that nobody changed the original meanwhile, and only then renames over it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from guard.core import safeio, safepath
from guard.core.layout import TEMP_PREFIX
from guard.core.safepath import Target

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


def replace_if_unchanged(path: Path | Target, new: bytes, expected: bytes,
                         limit: int | None = MAX_BYTES,
                         before_rename: Callable[[], None] | None = None) -> bool:
    """Atomically replace `path` with `new` unless its content is no longer `expected`
    (compared up to `limit` bytes; None: the whole file, for metrics files).

    `path` is a safepath.Target below the store (no folder below it may be a symlink: a
    copy or rewrite never lands outside), or a plain path (only its last component is
    checked). Returns False (and writes nothing) when another writer got there first or the
    file is no longer a regular file. `before_rename` runs once the new content is on disk
    and the original was found unchanged, just before the rename: a write-ahead journal
    line goes there (if it raises, nothing is renamed). A failed write leaves neither a temp
    file nor a partial file; its OSError names `path`.
    """
    target = path if isinstance(path, Target) else Target(Path(path).parent, (Path(path).name,))
    try:
        return safepath.write_atomic(target, new, mode=None, create=False, expected=expected,
                                     limit=limit, before_rename=before_rename)
    except (FileNotFoundError, safepath.Escape):
        raise
    except OSError as exc:  # full, read-only, no permission: name the file, not the temp
        if exc.filename is not None and not os.path.basename(
                os.fspath(exc.filename)).startswith(TEMP_PREFIX):
            raise  # the rename's or the journal's own error
        raise OSError(exc.errno, exc.strerror, str(target.path)) from exc
