"""The names sync clients give conflict copies of a file (pure: names in, no disk access).

When two machines change the same file within the sync delay, the sync client keeps one
version under the file's name and the other beside it under a conflict-copy name
(`meta_Andy-PC_Jan-03-0901-2013_Conflict_1.yaml`, `loss.sync-conflict-20240105-101500-ABCDEFG`,
...). A word of the store's vocabulary, like its layout: the watcher reports new copies, the
vault and the heartbeats skip them, sync.conflicts folds them back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SYNOLOGY, SYNCTHING, DROPBOX, NEXTCLOUD, ONEDRIVE = (
    "synology", "syncthing", "dropbox", "nextcloud", "onedrive")


@dataclass(frozen=True)
class ConflictName:
    original: str  # the file name the copy is a conflicting version of
    client: str  # synology | syncthing | dropbox | nextcloud | onedrive
    who: str | None = None  # the client / device / user / computer the name gives
    date: str | None = None  # the date (and time) part, as written
    counter: int | None = None  # Synology's `_<n>`, Dropbox's ` (<n>)`
    reason: str | None = None  # Synology: Conflict, CaseConflict, WhiteSpaceConflict, ...


# The extension is the last dot-part after the marker; a metrics file has none, so the whole
# name then is the stem. Stems are greedy: in a copy of a copy the last marker is the newest
# one, and what precedes it (an older copy's name) is this copy's original.
_EXT = r"(?P<ext>\.[^.]+)?"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_PATTERNS = (
    (SYNOLOGY, re.compile(
        rf"(?P<stem>.+)_(?P<who>[^_]+)_(?P<date>{_MONTH}-\d\d-\d{{4}}-\d{{4}})"
        rf"_(?P<reason>[^\W_]*Conflict)(?:_(?P<n>\d+))?{_EXT}")),
    (SYNCTHING, re.compile(
        rf"(?P<stem>.+)\.sync-conflict-(?P<date>\d{{8}}-\d{{6}})-(?P<who>[A-Za-z0-9-]+){_EXT}")),
    (DROPBOX, re.compile(
        r"(?P<stem>.+) \((?P<who>[^()]+)['\u2019]s conflicted copy (?P<date>\d{4}-\d\d-\d\d)"
        rf"(?: \((?P<n>\d+)\))?\)(?: \((?P<n2>\d+)\))?{_EXT}")),
    (NEXTCLOUD, re.compile(
        rf"(?P<stem>.+) \(conflicted copy (?P<date>\d{{4}}-\d\d-\d\d \d{{6}})\){_EXT}")),
)


def parse_conflict_name(name: str, hosts: frozenset[str] = frozenset()) -> ConflictName | None:
    """The conflict copy `name` is, or None when it is not one.

    OneDrive names a copy `<stem>-<COMPUTERNAME>.<ext>`, which any name with a dash also
    looks like: the metric key `val-loss` would read as a copy of `val` made on host `loss`.
    So a OneDrive copy is recognised only when its suffix is one of `hosts`, the computer
    names known to share the store (compared case-insensitively); with no hosts, never.
    The other clients' markers (a date plus a fixed word) do not occur in MLflow's names.
    `hosts` also settles a Synology client name containing '_', which is otherwise taken to
    be the last '_'-part before the date.
    """
    if "onflict" not in name and not (hosts and "-" in name):
        return None  # fast path: every pattern but OneDrive's has "Conflict"/"conflict" in it
    for client, pattern in _PATTERNS:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        groups = m.groupdict()
        stem, who, ext = groups["stem"], groups.get("who"), groups["ext"] or ""
        if client == SYNOLOGY and hosts:
            stem, who = _split_known(f"{stem}_{who}", "_", hosts) or (stem, who)
        n = groups.get("n") or groups.get("n2")
        return ConflictName(stem + ext, client, who, m["date"], int(n) if n else None,
                            groups.get("reason"))
    if hosts:
        dot = name.rfind(".")
        splits = [(name[:dot], name[dot:])] if dot > 0 else []
        for base, ext in splits + [(name, "")]:
            found = _split_known(base, "-", hosts)
            if found:
                return ConflictName(found[0] + ext, ONEDRIVE, found[1])
    return None


def _split_known(text: str, sep: str, hosts: frozenset[str]) -> tuple[str, str] | None:
    """`text` as `<stem><sep><host>` for the longest known host, keeping a non-empty stem."""
    folded = text.casefold()
    for host in sorted(hosts, key=len, reverse=True):
        tail = sep + host.casefold()
        if host and folded.endswith(tail) and len(text) > len(tail):
            return text[:-len(tail)], text[len(text) - len(host):]
    return None
