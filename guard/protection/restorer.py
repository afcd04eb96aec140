"""The daemon's vault part: keeps the vault current and puts back unsanctioned deletions.

Wiring only; the decisions are deletions.py's. The watcher's events say where to look (a
meta.yaml written: that unit's folder; something gone: its parent); a full pass every
vault.scan_interval catches the rest (and is all there is when the store is polled). A
disappearance is judged only after `grace` (locks.settle, the worst sync delay): a move synced
as delete-then-create, or a tombstone still on its way, has arrived by then. Nothing is judged
while the store is unusable or looks unmounted (every top-level folder gone at once): an
empty mount point is never filled from the vault.

A restore counts as "restored" only once MLflow's own store API opens what came back
(verify.py); otherwise it is "restore incomplete" (journal, status: DEGRADED) and checked again
every RECHECK seconds until MLflow opens it or it is gone again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guard.core.journal import Journal
from guard.core.layout import META, TAGS, Kind, describe
from guard.core.parts import Event, ThreadPart
from guard.core.records import to_json
from guard.core.store import inspect_store
from guard.core.watch import Change
from guard.protection import tombstones, verify
from guard.protection.deletions import (
    ALERT,
    FOLLOW,
    RESTORE,
    Rel,
    Unit,
    Verdict,
    judge,
    restore_wait,
    units_of,
)
from guard.protection.trash import prune_trash
from guard.protection.vault import Vault, VaultError, unprotected_fix
from guard.protection.verify import Probe

log = logging.getLogger("guard.restorer")
SAVE_EVERY = 30.0
RECENT = 10
RECHECK = 300.0  # seconds between checks of restores MLflow could not open
RESTORED, INCOMPLETE = "restored", "restore incomplete"  # journal and status actions
NO_ANSWER = ["the check gave no answer"]

# MLflow's answer for each restored unit: what it could not open (empty: it opens).
Verifier = Callable[[Path, Sequence[Probe]], list[list[str]]]


REFUSED = "refused"


@dataclass(frozen=True)
class VaultEvent:
    """A deletion the vault acted on: restored, or alerted about (also a journal line)."""

    action: str   # "restored", "restore incomplete", "alert" or "refused" (a symlinked folder)
    path: str     # what was gone, as `layout.describe` says it
    kind: str
    reason: str
    files: int    # files put back
    at: float


@dataclass(frozen=True)
class Unprotected:
    """Store files the vault could not keep, for one reason (vault.why_unprotected): how many,
    the first few, and what to do. A deletion of them cannot be undone."""

    reason: str = ""
    count: int = 0
    examples: tuple[str, ...] = ()
    fix: str = ""


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
    restored: int = 0         # restores MLflow opens
    followed: int = 0         # sanctioned or moved deletions followed since start
    alerts: int = 0
    recent: tuple[VaultEvent, ...] = ()
    last_pass: float | None = None
    too_large: int = 0
    error: str | None = None
    incomplete: tuple[VaultEvent, ...] = ()  # restored units MLflow cannot open (now)
    not_regular: int = 0      # symlinks, FIFOs, devices in the store: left alone, not kept
    pass_folders: int = 0     # folders the current full pass has looked at (the first build's
                              # progress in `guardctl status` and on the status page)
    unprotected: tuple[Unprotected, ...] = ()  # files it could not keep, by reason
    unprotected_more: bool = False  # more than the vault records (UNPROTECTED_MAX)


@dataclass(frozen=True)
class Restored:
    """A unit the vault put back, waiting for MLflow's word on it."""

    unit: Unit
    path: str
    kind: str
    reason: str   # why it was restored (the deletion's verdict)
    files: int


def unit_restored(verdict: Verdict, target: Rel) -> Unit | None:
    """The unit to open after restoring `target`: the deleted unit, or the live unit a file or
    folder was put back into (None: not part of any unit)."""
    if verdict.unit is not None:
        return verdict.unit
    units = units_of(target)
    return units[-1] if units else None


def confirm(reason: str, failures: Sequence[str]) -> tuple[str, str]:
    """The action and reason to record for a restore, given what MLflow could not open of it:
    "restored" only when nothing failed."""
    if not failures:
        return RESTORED, reason
    return INCOMPLETE, f"{reason}; MLflow cannot open it: {verify.summary(failures)}"


class RestoreService(ThreadPart):
    """The daemon's vault part: a full pass once the store is there, then the watcher's
    changes, a full pass every `scan_interval`, and the deletions judged once due."""

    name = "vault"
    consequence = "deletions are not restored until restart"
    wants = frozenset({Change.FILE, Change.DIR, Change.GONE})

    def __init__(self, vault: Vault, journal: Journal, host_id: str, policy: str,
                 grace: float, scan_interval: float, retention_s: float,
                 verifier: Verifier | None = None,
                 live_hosts: Callable[[], Sequence[str]] = lambda: ()) -> None:
        """live_hosts: the other hosts running a guard now (heartbeats), whose vaults restore
        the same deletions: this host takes its turn after them (deletions.restore_wait)."""
        super().__init__(wait=0.25, join_timeout=30.0)
        self.vault = vault
        vault.progress = self.progress  # a long pass is not stuck
        self.store = vault.store
        self.journal = journal
        self.host_id = host_id
        self.policy = policy
        self.grace = grace
        self.live_hosts = live_hosts
        self.scan_interval = scan_interval
        self.retention_s = retention_s
        self.pending: dict[Rel, float] = {}
        self.alerted: set[Rel] = set()
        self.refused: set[tuple[Rel, str]] = set()  # folders a restore refused, recorded once
        self.counts = {RESTORE: 0, FOLLOW: 0, ALERT: 0}
        self.recent: deque[VaultEvent] = deque(maxlen=RECENT)
        self.unmounted = False
        self.ready = False
        self.last_pass: float | None = None
        self.next_full = self.next_save = 0.0
        self.verifier: Verifier = verifier or self._check_in_child
        self.incomplete: dict[Rel, tuple[Restored, VaultEvent]] = {}
        self.incomplete_events: tuple[VaultEvent, ...] = ()  # what snapshot() shows of it
        self.next_recheck = 0.0

    def stop(self) -> None:
        super().stop()
        try:
            self.vault.close()
        except (OSError, sqlite3.Error, VaultError) as exc:
            log.warning("could not save the vault index: %s", exc)

    def snapshot(self) -> VaultFigures:
        return VaultFigures(
            policy=self.policy, mode=self.vault.mode, path=str(self.vault.root),
            ready=self.ready, paused=self.paused.is_set(), unmounted=self.unmounted,
            pending=len(self.pending), restored=self.counts[RESTORE],
            followed=self.counts[FOLLOW], alerts=self.counts[ALERT], recent=tuple(self.recent),
            last_pass=self.last_pass, too_large=self.vault.too_large, error=self.error,
            incomplete=self.incomplete_events, not_regular=self.vault.not_regular,
            pass_folders=self.vault.pass_folders,
            unprotected=tuple(Unprotected(why, n, tuple(shown), unprotected_fix(why))
                              for why, n, shown in self.vault.unprotected_summary()),
            unprotected_more=self.vault.unprotected_more)

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
        if self.incomplete and now >= self.next_recheck:
            self._recheck()
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
        known = self.vault.top_names()
        return bool(known) and not any(os.path.lexists(self.store / n) for n in known)

    def _judge_due(self) -> None:
        now = time.monotonic()
        wait = restore_wait(self.host_id, self.live_hosts(), self.grace)
        due = sorted((rel for rel, seen in self.pending.items() if now - seen >= wait),
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

        restored: list[Restored] = []
        try:
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
                done = self._act(verdict, target)
                if done is not None:
                    restored.append(done)
        finally:  # what was put back is checked and recorded, even if a later one failed
            self._confirm(restored)

    def _act(self, verdict: Verdict, target: Rel) -> Restored | None:
        what = "/".join(target)
        kind = verdict.unit.kind if verdict.unit is not None else "files"
        if verdict.action == FOLLOW:
            self.vault.forget(target)
            self.counts[FOLLOW] += 1
            log.info("vault: %s gone, %s", what, verdict.reason)
            return None
        if verdict.action == ALERT:
            if target in self.alerted:
                return None
            self.alerted.add(target)
            self.counts[ALERT] += 1
            log.error("vault: %s %s (policy alert: not restored; the vault keeps it)", what,
                      verdict.reason)
            self._record("alert", what, kind, verdict.reason, 0)
            return None
        count = self.vault.restore(target)
        log.warning("vault: %s %s; restored %d files", what, verdict.reason, count)
        for rel, why in self.vault.refused.items():
            if (rel, why) not in self.refused:
                self.refused.add((rel, why))
                self._record(REFUSED, "/".join(rel), kind, f"not restored there: it {why}; "
                             "a restore never writes through it", 0)
        unit = unit_restored(verdict, target)
        if unit is None:  # judge() restores only within units; nothing to open otherwise
            self.counts[RESTORE] += 1
            self._record(RESTORED, what, kind, verdict.reason, count)
            return None
        return Restored(unit, what, kind, verdict.reason, count)

    # ---- MLflow's word on what came back ----------------------------------------------------
    def _probes(self, unit: Unit) -> list[Probe]:
        return verify.probes_for(unit, [(rel, key is not None)
                                        for rel, key in self.vault.entries_under(unit.rel)])

    def _check_in_child(self, store: Path, probes: Sequence[Probe]) -> list[list[str]]:
        return verify.check(store, probes, cwd=self.vault.root, progress=self.progress,
                            stopping=lambda: self.stopping)

    def _confirm(self, restored: list[Restored], again: bool = False) -> None:
        """Open each restored unit through MLflow; record "restored" only for those it opens.
        `again`: a recheck, which records only a unit MLflow opens now (no repeated alerts)."""
        if not restored:
            return
        probes = [self._probes(r.unit) for r in restored]
        answers = iter(self.verifier(self.store, [p for each in probes for p in each]))
        for done, asked in zip(restored, probes):
            said = [next(answers, NO_ANSWER) for _ in asked]
            failures = verify.failures_of(done.unit, asked, said)
            action, reason = confirm(done.reason, failures)
            if action == RESTORED:
                self.counts[RESTORE] += 1
                self.incomplete.pop(done.unit.rel, None)
                self._record(action, done.path, done.kind, reason, done.files)
            elif not again:
                log.error("vault: %s %s: %s", INCOMPLETE, done.path, reason)
                self.incomplete[done.unit.rel] = (
                    done, self._record(action, done.path, done.kind, reason, done.files))
        self._show_incomplete()
        self.next_recheck = time.monotonic() + RECHECK

    def _recheck(self) -> None:
        """Ask MLflow again about restores it could not open: one it opens now is restored;
        one whose unit is gone again is dropped (the vault judges that disappearance anew)."""
        for rel, (done, _) in list(self.incomplete.items()):
            if not os.path.lexists(self.store.joinpath(*done.unit.meta)):
                self.incomplete.pop(rel)
        self._confirm([done for done, _ in self.incomplete.values()], again=True)
        self._show_incomplete()
        self.next_recheck = time.monotonic() + RECHECK

    def _show_incomplete(self) -> None:
        """What snapshot() shows, replaced whole (the daemon's loop reads it meanwhile)."""
        self.incomplete_events = tuple(event for _, event in self.incomplete.values())

    def _record(self, action: str, what: str, kind: str, reason: str, files: int
                ) -> VaultEvent:
        entry = VaultEvent(action, what, kind, reason, files, time.time())
        self.journal.append(**to_json(entry))
        self.recent.append(entry)
        return entry
