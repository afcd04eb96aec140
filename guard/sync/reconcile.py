"""Sync clients' conflict copies in the store: found, resolved by what the file means, moved
to the quarantine; two model versions that got one number on two machines are both kept.

The decisions are conflicts.py's (pure). This shell walks the store, reads both sides,
writes what the decision asks for, moves every copy into the quarantine (never deleting it)
and writes one journal line per copy. A resolution pass runs under the cross-machine
"conflicts" lock, so two hosts never resolve the same copy at once, and after taking it looks
again: a copy another host already resolved has synced away meanwhile.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guard.core import metayaml, safeio, safepath
from guard.core.conflictnames import ConflictName, parse_conflict_name
from guard.core.journal import Journal, read_journal
from guard.core.layout import (
    META,
    REGISTRY,
    TAGS,
    TEMP_PREFIX,
    Kind,
    describe,
    version_folder,
    version_number,
)
from guard.core.parts import Event, ThreadPart
from guard.core.safepath import Target
from guard.core.watch import Change
from guard.sync import conflicts
from guard.sync.experiment_names import find_same_names
from guard.sync.experiments import SameName
from guard.sync.leases import resource_name
from guard.sync.locks import HostLock, LockSettings, LockTimeout
from guard.sync.quarantine import Quarantine

log = logging.getLogger("guard.reconcile")
RENUMBERED_TAG = "mlflow-guard.renumbered_from"
RENUMBERED_HOST_TAG = "mlflow-guard.renumbered_host"  # where the moved version was registered
NOTICED = "renumbered"  # a journal record's action: this host's registration got a new number
# Both sides of a conflict are read whole (a metric file can be long); past this a copy is
# left for a person rather than held in memory twice over.
MAX_READ = 256 * 1024 * 1024


@dataclass(frozen=True)
class Copy:
    path: Path       # the conflict copy
    original: Path   # the file it is a copy of (may be missing)
    rel: tuple[str, ...]  # the original's path in the store, as segments
    name: ConflictName
    unsafe: str | None = None  # why it is left alone: it or its original is not a regular file


def _not_regular(path: Path) -> str | None:
    """What `path` is when it is there and not a regular file (lstat: nothing is opened)."""
    try:
        return safeio.kind_of(os.lstat(path).st_mode)
    except OSError:
        return None


def unsafe_reason(copy_kind: str | None, original_kind: str | None) -> str | None:
    """Why a conflict copy is left alone, from what lstat says the copy and its original are
    (None: regular or missing); None when it can be resolved (pure)."""
    if copy_kind is not None:
        return f"the copy is a {copy_kind}, not a regular file; left alone, never followed"
    if original_kind is not None:
        return f"its original is a {original_kind}, not a regular file; left alone"
    return None


def _skip_dir(rel: tuple[str, ...], name: str) -> bool:
    """Folders that never hold store metadata: the guard's own area and artifacts (user
    files, which MLflow never parses; a copy there is the user's business)."""
    if name.startswith(TEMP_PREFIX):
        return True
    return describe(rel + (name,)).kind in (Kind.COORDINATION, Kind.ARTIFACT)


def find_copies(store: Path, hosts: Iterable[str] = ()) -> list[Copy]:
    """Every conflict copy of a store file, in a stable order."""
    store = Path(store)
    known = frozenset(hosts)
    found = []
    for folder, dirs, files in os.walk(store):
        rel_dir = tuple(Path(os.path.relpath(folder, store)).parts) if folder != str(store) \
            else ()
        dirs[:] = sorted(d for d in dirs if not _skip_dir(rel_dir, d))
        for fname in sorted(files):
            if fname.startswith(TEMP_PREFIX):
                continue
            parsed = parse_conflict_name(fname, known)
            if parsed is None:
                continue
            path, original = Path(folder) / fname, Path(folder) / parsed.original
            found.append(Copy(path, original, rel_dir + (parsed.original,), parsed,
                              unsafe_reason(_not_regular(path), _not_regular(original))))
    return found


def _read(target: Target) -> tuple[bytes, float] | None:
    """Content and mtime of a regular file below the store, or None when it is gone. A FIFO,
    symlink or device is never opened (safeio.NotARegularFile), a symlinked folder never
    walked through (safepath.Escape), nor is more than MAX_READ read (TooLarge)."""
    try:
        with safepath.open_file(target) as (fh, st):
            if st.st_size > MAX_READ:
                raise safeio.TooLarge(target.path, st.st_size, MAX_READ)
            data = safeio.read_bounded(fh, MAX_READ + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if len(data) > MAX_READ:
        raise safeio.TooLarge(target.path, len(data), MAX_READ)
    return data, st.st_mtime


class Reconciler:
    """Resolves the conflict copies of one store; one instance per daemon."""

    def __init__(self, store: Path, quarantine_root: Path, journal: Journal,
                 host_id: str = "", registrations: Path | None = None) -> None:
        self.store = Path(store)
        self.quarantine_root = quarantine_root
        self.journal = journal
        self.host_id = host_id
        self.registrations = registrations  # this host's server's registration journal
        self.renumbered: list[conflicts.Renumbered] = []  # in the store, by the last look
        self._noticed: set[tuple[str, int, int]] | None = None
        self.resolved = 0
        self.reported = 0
        self.left_alone: dict[Path, str] = {}  # copies not resolved: why (found by the last pass)
        self._told: set[tuple[Path, str]] = set()  # each logged once

    def own_registrations(self) -> list[dict]:
        """The model versions this host's server created (journalled by guard.app)."""
        return read_records(self.registrations) if self.registrations is not None else []

    def notice_renumbered(self) -> list[dict]:
        """Look at the renumbered versions in the store (for the status), and journal each of
        this host's registrations whose version now has another number, once: which number
        its client was given, which it has now. Returns the records written."""
        found = renumbered_versions(self.store)
        self.renumbered = [r for r, _ in found]
        own = self.own_registrations()
        if not own or not found:
            return []
        if self._noticed is None:
            self._noticed = {(str(r.get("model")), r["given"], r["now"])
                             for r in read_records(self.journal.path)
                             if r.get("action") == NOTICED and "given" in r and "now" in r}
        records = []
        for model, given, now in conflicts.moved_registrations(own, [doc for _, doc in found]):
            if (model, given, now) in self._noticed:
                continue
            record: dict = {
                "original": f"{REGISTRY}/{model}/{version_folder(now)}", "copy": None,
                "client": None, "who": self.host_id, "kind": conflicts.MODEL_VERSION_META,
                "action": NOTICED, "model": model, "given": given, "now": now,
                "report": (f"This machine's client registered model {model!r} and was given "
                           f"version {given}; it is now version {now}: another machine "
                           f"registered version {given} at the same time, and the guard "
                           f"moved this one to the next free number. Use version {now}."),
                "needs_attention": True, "quarantined": [], "time": time.time()}
            self.journal.append(**record)
            self._noticed.add((model, given, now))
            self.reported += 1
            log.warning("model %r: this machine's client was given version %d, it is now "
                        "version %d (renumbered)", model, given, now)
            records.append(record)
        return records

    def leave_alone(self, copies: Iterable[Copy]) -> None:
        """Note the copies the guard will not touch (`unsafe`), logging each once."""
        self.left_alone = {c.path: c.unsafe for c in copies if c.unsafe}
        for path, why in self.left_alone.items():
            self._tell(path, why)

    def _tell(self, path: Path, why: str) -> None:
        if (path, why) not in self._told:
            self._told.add((path, why))
            log.warning("conflict copy %s: %s",
                        safeio.printable(os.path.relpath(path, self.store)), why)

    def resolve_all(self, copies: list[Copy],
                    model_lock: Callable[[str], AbstractContextManager] | None = None,
                    ) -> list[dict]:
        """Resolve each copy; returns the journal records written. `model_lock(name)` gives
        the lock a renumbering must hold (the one model registration takes)."""
        quarantine = Quarantine(self.quarantine_root, self.store, max_bytes=MAX_READ)
        records = []
        for copy in copies:
            if copy.unsafe:
                continue
            try:
                record = self._resolve(copy, quarantine, model_lock)
            except safeio.UnsafeFile as exc:  # swapped since the scan, or too large
                self.left_alone[copy.path] = exc.reason
                self._tell(copy.path, exc.reason)
                continue
            except safepath.Escape as exc:  # a folder of it is a symlink (swapped since)
                where = safeio.printable(os.path.relpath(exc.path, self.store))
                why = f"{where} {exc.reason}; left alone, never followed"
                self.left_alone[copy.path] = why
                self._tell(copy.path, why)
                continue
            except OSError as exc:
                log.warning("could not resolve %s: %s (will retry)", copy.path, exc)
                continue
            if record is None:
                continue
            self.journal.append(**record)
            self.resolved += 1
            self.reported += bool(record["needs_attention"])
            log.log(logging.WARNING if record["needs_attention"] else logging.INFO,
                    "conflict copy %s: %s", record["copy"], record["report"])
            records.append(record)
        return records

    def _record(self, copy: Copy, kind: str, action: str, report: str, attention: bool,
                quarantined: list[str], **extra) -> dict:
        return {"original": "/".join(copy.rel), "copy": os.path.relpath(copy.path, self.store),
                "client": copy.name.client, "who": copy.name.who, "kind": kind,
                "action": action, "report": report, "needs_attention": attention,
                "quarantined": quarantined, "time": time.time(), **extra}

    def _resolve(self, copy: Copy, quarantine: Quarantine,
                 model_lock: Callable[[str], AbstractContextManager] | None) -> dict | None:
        copy_at = safepath.target_of(self.store, copy.path)
        original_at = Target(self.store, copy.rel)
        theirs = _read(copy_at)
        if theirs is None:
            return None  # resolved elsewhere meanwhile
        kind = conflicts.kind_of(copy.rel)
        ours = _read(original_at)
        if ours is None:
            # the original is gone (deleted on one side, changed on the other): the copy is
            # the only version left, so it becomes the original again
            safepath.replace_file(copy_at, original_at)
            return self._record(copy, kind, "restored", "The original was missing; the copy "
                                "took its place.", False, [])
        res = conflicts.resolve(kind, ours[0], theirs[0], ours[1], theirs[1])
        kept: list[str] = []
        extra: dict = {}
        if res.action == conflicts.RENUMBER:
            if model_lock is None:
                return None
            with model_lock(copy.rel[1]):
                renumbered = self._renumber(copy, res, ours[0], theirs[0], quarantine, kept)
                if renumbered is None:
                    return None
                extra = renumbered
        elif res.rewrites_original:
            # a merge carries the merged bytes; otherwise the copy is taken
            new = res.merged if res.merged is not None else theirs[0]
            kept.append(quarantine.keep_bytes(copy.original, ours[0]))
            if not metayaml.replace_if_unchanged(original_at, new, ours[0], limit=None):
                return None  # written meanwhile: look again next pass
        kept.append(quarantine.move(copy.path))
        attention = res.conflict or res.action == conflicts.NEEDS_PERSON
        return self._record(copy, kind, res.action, res.report, attention, kept, **extra)

    def _renumber(self, copy: Copy, res: conflicts.Resolution, ours: bytes, theirs: bytes,
                  quarantine: Quarantine, kept: list[str]) -> dict | None:
        """Two versions got number N: the later one (res.renumber) moves to the next free
        number, tagged with where it came from; the other keeps N."""
        version_dir = copy.original.parent
        entry = describe(copy.rel)
        old = version_number(version_dir.name)
        if old is None or not entry.meta or entry.kind is not Kind.MODEL_VERSION:
            return None
        moving, staying = (theirs, ours) if res.renumber == "copy" else (ours, theirs)
        doc = metayaml.parse(moving)
        host = conflicts.original_host(doc, res.renumber == "copy", copy.name.who,
                                       self.own_registrations(), self.host_id)
        model_dir = Target(self.store, copy.rel[:-2])
        while True:
            taken = [n for d, _ in safepath.entries(model_dir)
                     if (n := version_number(d)) is not None]
            new = max(taken) + 1
            target = model_dir.child(version_folder(new))
            try:
                safepath.mkdir_new(target)
                break
            except FileExistsError:
                continue
        doc["version"] = new
        safepath.mkdir_new(target.child(TAGS))
        safepath.write_new(target.child(TAGS, RENUMBERED_TAG), (
            f"version {old}: registered on two machines at once; conflict copy "
            f"{copy.path.name}").encode(), create=False)
        if host is not None:
            safepath.write_new(target.child(TAGS, RENUMBERED_HOST_TAG), host.encode(),
                               create=False)
        safepath.write_atomic(target.child(META), metayaml.dump(doc), create=False)
        if res.renumber == "original":
            kept.append(quarantine.keep_bytes(copy.original, ours))
            if not metayaml.replace_if_unchanged(Target(self.store, copy.rel), staying, ours):
                raise OSError(f"{copy.original} changed while renumbering; {target.name} "
                              "holds its earlier content")
        return {"new_version": new, "old_version": old, "model": copy.rel[1], "host": host}


def _text(target: Target) -> str | None:
    got = _read(target)
    return None if got is None else got[0].decode("utf-8", "replace")


def renumbered_versions(store: Path) -> list[tuple[conflicts.Renumbered, dict]]:
    """Every model version in the store carrying the guard's renumbered tag: what its tags
    say, and its meta.yaml mapping ({} when unusable). A model or version folder that is not
    a plain folder, or a tag that is not a regular file, is skipped."""
    registry = Target(Path(store), (REGISTRY,))
    found = []
    try:
        models = safepath.entries(registry)
    except (OSError, safepath.Escape):
        return []
    for name, st in models:
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            versions = safepath.entries(registry.child(name))
        except (OSError, safepath.Escape):
            continue
        for vname, vst in versions:
            number = version_number(vname)
            if number is None or not stat.S_ISDIR(vst.st_mode):
                continue
            at = registry.child(name, vname)
            try:
                tag = _text(at.child(TAGS, RENUMBERED_TAG))
                if tag is None:
                    continue
                host = _text(at.child(TAGS, RENUMBERED_HOST_TAG))
                meta = _read(at.child(META))
            except (OSError, safeio.UnsafeFile, safepath.Escape):
                continue
            try:
                doc = metayaml.parse(meta[0]) if meta is not None else {}
            except metayaml.MetaError:
                doc = {}
            found.append((conflicts.renumbered(name, number, tag, host), doc))
    return found


def read_records(path: Path) -> list[dict]:
    """The conflict journal, oldest first (empty when there is none yet)."""
    try:
        return list(read_journal(path))
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class ConflictFigures:
    """The conflicts part's figures (the "conflicts" section of the status)."""

    enabled: Literal[True] = True  # the tag that tells it from a part switched off
    waiting: int = 0          # copies found by the last scan and not resolved yet
    last_scan: float | None = None
    resolved: int = 0         # since the daemon started
    needs_attention: int = 0  # resolved, but worth a look (`guardctl conflicts`)
    error: str | None = None
    paused: bool = False
    left_alone: int = 0       # copies not touched: not regular files (FIFO, symlink...), too large
    renumbered: tuple[conflicts.Renumbered, ...] = ()  # model versions moved to a new number
    same_names: tuple[SameName, ...] = ()  # active experiments sharing a name


class ConflictService(ThreadPart):
    """The daemon's conflicts part: a scan of the store at start, every `interval`, and as
    soon as the watcher sees a copy appear; copies found -> take the cross-machine "conflicts"
    lock, scan again, resolve. (On Linux the watcher covers only folders that can hold a
    meta.yaml, so copies of metrics, params and tags wait for the interval there.) A failed
    pass is the part's `error` until a pass succeeds."""

    name = "conflicts"
    consequence = "conflict copies are not resolved until restart"
    wants = frozenset({Change.COPY})

    def __init__(self, reconciler: Reconciler, settings: LockSettings, interval: float,
                 hosts: Callable[[], Iterable[str]]) -> None:
        super().__init__(wait=interval)
        self.reconciler, self.settings, self.interval = reconciler, settings, interval
        self.hosts = hosts
        self.waiting = 0
        self.last_scan: float | None = None
        self.same_names: list[SameName] = []

    def snapshot(self) -> ConflictFigures:
        return ConflictFigures(True, self.waiting, self.last_scan, self.reconciler.resolved,
                               self.reconciler.reported, self.error, self.paused.is_set(),
                               len(self.reconciler.left_alone),
                               tuple(self.reconciler.renumbered), tuple(self.same_names))

    def model_lock(self, name: str) -> HostLock:
        return HostLock(self.settings, resource_name("model", name))

    def run_once(self) -> list[dict]:
        """One pass; the cross-machine lock is taken only when there are copies to resolve
        (a FIFO or symlink copy is reported, never resolved, so it never holds the lock)."""
        store = self.reconciler.store
        copies = self._scan(store)
        self.waiting, self.last_scan = len(copies), time.time()
        if not copies:
            self._look()
            return []
        with HostLock(self.settings, "conflicts"):
            copies = self._scan(store)
            records = self.reconciler.resolve_all(copies, self.model_lock)
        left = self.reconciler.left_alone
        self.waiting = sum(c.path not in left and os.path.lexists(c.path) for c in copies)
        self._look()
        return records

    def _look(self) -> None:
        """After each pass: renumbered versions (and this host's among them), and experiment
        names held twice, for the status."""
        self.reconciler.notice_renumbered()
        self.same_names = find_same_names(self.reconciler.store)

    def _scan(self, store: Path) -> list[Copy]:
        """The copies to resolve; the others are noted as left alone."""
        found = find_copies(store, self.hosts())
        self.reconciler.leave_alone(found)
        return [c for c in found if not c.unsafe]

    def begin(self) -> None:
        if not self.paused.is_set():
            self._pass()

    def handle(self, event: Event | None, now: float) -> None:
        """Woken by a copy (scan now, once for all the copies waiting) or by the interval."""
        for _kind, path in ([event] if event is not None else []) + self.drain():
            log.debug("conflict copy appeared: %s", path)
        self._pass()

    def _pass(self) -> None:
        try:
            self.run_once()
            self.error = None
        except LockTimeout as exc:
            self.error = f"waiting for the conflicts lock: {exc}"
            log.warning("%s", self.error)
        except Exception as exc:  # noqa: BLE001 - report, never take the daemon down
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("conflict pass failed")
