"""The daemon's vault part: keeps the vault current and puts back unsanctioned deletions.

Wiring only; the decisions are deletions.py's. The watcher's events say where to look (a
meta.yaml written: that unit's folder; something gone: its parent); a full pass every
vault.scan_interval catches the rest (and is all there is when the store is polled). A
disappearance is judged only after `grace` (locks.settle, the worst sync delay): a move synced
as delete-then-create, or a tombstone still on its way, has arrived by then. Nothing is judged
while the store is unusable or looks unmounted (every top-level folder gone at once): an
empty mount point is never filled from the vault.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guard.core.journal import Journal
from guard.core.layout import META, TAGS, Kind, describe
from guard.core.parts import Event, ThreadPart
from guard.core.records import to_json
from guard.core.store import inspect_store
from guard.core.watch import Change
from guard.protection import tombstones
from guard.protection.deletions import ALERT, FOLLOW, RESTORE, Rel, judge
from guard.protection.trash import prune_trash
from guard.protection.vault import Vault

log = logging.getLogger("guard.restorer")
SAVE_EVERY = 30.0
RECENT = 10


@dataclass(frozen=True)
class VaultEvent:
    """A deletion the vault acted on: restored, or alerted about (also a journal line)."""

    action: str   # "restored" or "alert"
    path: str     # what was gone, as `layout.describe` says it
    kind: str
    reason: str
    files: int    # files put back
    at: float


@dataclass(frozen=True)
class VaultFigures:
    """The vault part's figures (the "vault" section of the status)."""

    enabled: Literal[True] = True  # the tag that tells it from a part switched off
    policy: str = ""
    mode: str = ""
    path: str = ""
    ready: bool = False       # the first full pass is done
    paused: bool = False
    unmounted: bool = False   # the store looks unmounted: nothing is judged
    pending: int = 0          # disappearances waiting for their grace period
    restored: int = 0
    followed: int = 0         # sanctioned or moved deletions followed since start
    alerts: int = 0
    recent: tuple[VaultEvent, ...] = ()
    last_pass: float | None = None
    too_large: int = 0
    error: str | None = None


class RestoreService(ThreadPart):
    """The daemon's vault part: a full pass once the store is there, then the watcher's
    changes, a full pass every `scan_interval`, and the deletions judged once due."""

    name = "vault"
    consequence = "deletions are not restored until restart"
    wants = frozenset({Change.FILE, Change.DIR, Change.GONE})

    def __init__(self, vault: Vault, journal: Journal, host_id: str, policy: str,
                 grace: float, scan_interval: float, retention_s: float) -> None:
        super().__init__(wait=0.25, join_timeout=30.0)
        self.vault = vault
        self.store = vault.store
        self.journal = journal
        self.host_id = host_id
        self.policy = policy
        self.grace = grace
        self.scan_interval = scan_interval
        self.retention_s = retention_s
        self.pending: dict[Rel, float] = {}
        self.alerted: set[Rel] = set()
        self.counts = {RESTORE: 0, FOLLOW: 0, ALERT: 0}
        self.recent: deque[VaultEvent] = deque(maxlen=RECENT)
        self.unmounted = False
        self.ready = False
        self.last_pass: float | None = None
        self.next_full = self.next_save = 0.0

    def stop(self) -> None:
        super().stop()
        try:
            self.vault.close()
        except OSError as exc:
            log.warning("could not save the vault index: %s", exc)

    def snapshot(self) -> VaultFigures:
        return VaultFigures(
            policy=self.policy, mode=self.vault.mode, path=str(self.vault.root),
            ready=self.ready, paused=self.paused.is_set(), unmounted=self.unmounted,
            pending=len(self.pending), restored=self.counts[RESTORE],
            followed=self.counts[FOLLOW], alerts=self.counts[ALERT], recent=tuple(self.recent),
            last_pass=self.last_pass, too_large=self.vault.too_large, error=self.error)

    # ---- the part's rounds ---------------------------------------------------------------
    def begin(self) -> None:
        while self.paused.is_set():  # a store that is not there is never scanned
            if self.sleep(0.5):
                return
        self._full_pass()
        self.ready = True
        self.next_full = time.monotonic() + self.scan_interval
        self.next_save = time.monotonic() + SAVE_EVERY

    def handle(self, event: Event | None, now: float) -> None:
        if event is not None:
            self._look(*event)
        if now >= self.next_full:
            self._full_pass()
            self.next_full = now + self.scan_interval
        if self.pending:
            self._judge_due()
        if now >= self.next_save:
            self.vault.save()
            self.next_save = now + SAVE_EVERY

    def _rel(self, path: Path) -> Rel | None:
        try:
            rel = Path(os.path.relpath(path, self.store)).parts
        except ValueError:
            return None
        return None if rel and rel[0] == os.pardir else tuple(p for p in rel if p != ".")

    def _look(self, kind: str, path: Path) -> None:
        rel = self._rel(path)
        if rel is None:
            return
        if kind == "file" and rel and rel[-1] == META:
            folder = rel[:-1]
            shallow = describe(rel).kind is Kind.EXPERIMENT  # an experiment's meta.yaml
            self._note(self.vault.sync(folder, recursive=not shallow))
            if shallow:  # an experiment: its own files and tags, not every run below it
                self._note(self.vault.sync(folder + (TAGS,)))
        elif kind == "dir":
            self._note(self.vault.sync(rel))
        elif kind == "gone" and rel:
            self._note(self.vault.sync(rel[:-1], recursive=False))

    def _note(self, missing: list[Rel]) -> None:
        now = time.monotonic()
        for rel in missing:
            self.pending.setdefault(rel, now)

    def _full_pass(self) -> None:
        if not inspect_store(self.store).ok:
            return
        started = time.monotonic()
        self._note(self.vault.sync(()))
        self.vault.collect()
        removed = prune_trash(self.vault.root, self.retention_s)
        if removed:
            self.journal.append(action="trash_pruned", batches=removed)
        tombstones.prune(self.store, self.host_id, self.retention_s)
        self.vault.save()
        self.last_pass = time.time()
        log.debug("vault pass in %.2fs", time.monotonic() - started)

    def _looks_unmounted(self) -> bool:
        """Every top-level entry the vault knows is gone at once: a drive, not a deletion."""
        known = [name for name in self.vault.tree]
        return bool(known) and not any(os.path.lexists(self.store / n) for n in known)

    def _judge_due(self) -> None:
        now = time.monotonic()
        due = sorted((rel for rel, seen in self.pending.items() if now - seen >= self.grace),
                     key=len)
        if not due:
            return
        check = inspect_store(self.store)
        self.unmounted = not check.ok or self._looks_unmounted()
        if self.unmounted:
            log.warning("store looks unmounted or emptied as a whole; restoring nothing (%s)",
                        check.detail if not check.ok else "every top-level folder is gone")
            return
        stones = tombstones.read_all(self.store)

        def exists(rel: Rel) -> bool:
            return os.path.lexists(self.store.joinpath(*rel))

        for rel in due:
            if rel not in self.pending:
                continue  # handled with the unit that contained it
            if exists(rel) or not self.vault.knows(rel):
                self.pending.pop(rel)
                continue
            verdict = judge(rel, exists, stones, self.vault.created, self.policy)
            target = verdict.unit.rel if verdict.unit is not None else rel
            for other in [r for r in self.pending if r[:len(target)] == target]:
                self.pending.pop(other)
            self._act(verdict, target)

    def _act(self, verdict, target: Rel) -> None:
        what = "/".join(target)
        kind = verdict.unit.kind if verdict.unit is not None else "files"
        if verdict.action == FOLLOW:
            self.vault.forget(target)
            self.counts[FOLLOW] += 1
            log.info("vault: %s gone, %s", what, verdict.reason)
            return
        if verdict.action == ALERT:
            if target in self.alerted:
                return
            self.alerted.add(target)
            self.counts[ALERT] += 1
            log.error("vault: %s %s (policy alert: not restored; the vault keeps it)", what,
                      verdict.reason)
            self._record("alert", what, kind, verdict.reason, 0)
            return
        count = self.vault.restore(target)
        self.counts[RESTORE] += 1
        log.warning("vault: %s %s; restored %d files", what, verdict.reason, count)
        self._record("restored", what, kind, verdict.reason, count)

    def _record(self, action: str, what: str, kind: str, reason: str, files: int) -> None:
        entry = VaultEvent(action, what, kind, reason, files, time.time())
        self.journal.append(**to_json(entry))
        self.recent.append(entry)
