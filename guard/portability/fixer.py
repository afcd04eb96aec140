"""Making the store portable: passes that rewrite machine-specific locations in meta.yaml.

`Fixer` checks files (a full pass, one file, or a moved-in folder) and keeps the figures that
`guardctl status` shows; `RewritePart` is the daemon's thread that runs it on watcher events,
on a polling fallback and on a periodic full pass; `undo` replays a journal backwards.

Convergence across machines: a path under this machine's own store root was written here and
is fixed at once; a foreign path (another machine's root) waits `foreign_delay` seconds, so the
writing machine's guard fixes it first and the fix arrives by sync. Either way the result is
the same bytes, so each file is normally rewritten once in total.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from guard.core import metayaml, safepath, tempfiles
from guard.core.journal import (
    APPLIED,
    NOT_APPLIED,
    Journal,
    intent,
    judge,
    old_content,
    read_journal,
    text_field,
    transactions,
)
from guard.core.layout import COORDINATION, META, Kind, classify_meta, walk
from guard.core.parts import Event, ThreadPart
from guard.core.paths import parse_local, safe_segments
from guard.core.records import OMIT_NONE
from guard.core.safeio import printable
from guard.core.safepath import Target
from guard.core.watch import EVENTS, Change
from guard.core.writefaults import hold_reason, retry_delay
from guard.portability.rewrite import apply, experiment_wait, in_flight, plan_file

log = logging.getLogger("guard.fixer")

CLEAN, REWRITTEN, PENDING, DEFERRED, MALFORMED, SKIPPED, GONE, BUSY, WOULD = (
    "clean", "rewritten", "pending", "deferred", "malformed", "skipped", "gone", "busy",
    "would rewrite")
DEFERRED_RECHECK = 30.0


@dataclass(frozen=True)
class Problem:
    """A meta.yaml the fixer cannot make portable, or cannot read."""

    file: str
    problem: str  # unportable, malformed, symlink, ...
    key: str | None = field(default=None, metadata=OMIT_NONE)  # the location key, if one
    value: str | None = field(default=None, metadata=OMIT_NONE)
    why: str = ""


@dataclass(frozen=True)
class LastRewrite:
    time: float
    file: str
    key: str
    new: str


@dataclass(frozen=True)
class FullPass:
    """One pass over every meta.yaml: when, how long, how many files, and what became of
    them (outcome -> count)."""

    at: float
    duration_s: float
    files: int
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RewriteFigures:
    """The fixer's figures; the rewrite part adds its error and pause (`guardctl status`'s
    "paths" lines and the "portability" section of the status)."""

    rewrites_total: int = 0
    rewrites_last_hour: int = 0
    rewritten_by_kind: dict[str, int] = field(default_factory=dict)
    last_rewrite: LastRewrite | None = None
    pending_foreign: int = 0     # foreign paths waiting for their own machine's guard
    deferred_in_flight: int = 0  # locations left alone while their run or model is running
    # of those, experiments that only wait out their quiet spell (no run in progress)
    deferred_quiet: int = 0
    unportable_count: int = 0
    problem_count: int = 0
    problems: tuple[Problem, ...] = ()  # the first 50
    last_full_pass: FullPass | None = None
    error: str | None = None
    paused: bool = False


def iter_meta_files(store: Path, problems: dict | None = None,
                    folder: Path | None = None) -> Iterator[Path]:
    """Candidate meta.yaml paths that hold locations, in the store or under one of its
    folders: those of layout.walk's folders (params/metrics/artifacts folders are never
    descended into; symlinks are noted in `problems`)."""
    rel = () if folder is None else Path(folder).relative_to(store).parts
    for path, entry in walk(Path(folder or store), rel, problems):
        if classify_meta(entry.rel + (META,)).has_locations:
            yield path / META


def quiet_waits(waits: Iterable[tuple[str, float | None]]) -> int:
    """How many deferred files only wait out an experiment's quiet spell: those with a time
    the wait ends (`_wait_reason`: work in flight has none, it ends when the work does)."""
    return sum(1 for _, until in waits if until is not None)


def stamp(st: os.stat_result) -> int:
    """A file's mtime and size as one int, exact (sizes below 2**64): equal stamps mean the
    file is as it was when last checked."""
    return (st.st_mtime_ns << 64) | st.st_size


class Fixer:
    def __init__(self, store: Path, journal: Journal | None, host_id: str,
                 foreign_delay: float = 0.0, dry_run: bool = False,
                 in_flight_grace: float = 72 * 3600.0, experiment_quiet: float = 600.0,
                 temp_folders: tuple[Path, ...] = ()) -> None:
        """`temp_folders`: where else the guard writes (the state folder), swept of its stale
        temp files by each full pass like the store's folders."""
        self.store = Path(os.path.abspath(store))
        self.store_real = os.path.realpath(self.store)
        self.own_root = parse_local(str(self.store))
        self.journal = journal
        self.host_id = host_id
        self.foreign_delay = foreign_delay
        self.dry_run = dry_run
        self.in_flight_grace_ms = int(in_flight_grace * 1000)
        self.experiment_quiet_ms = int(experiment_quiet * 1000)
        self.deferred: dict[str, tuple[str, float | None]] = {}  # key -> (why, until)
        # experiment folder -> run key -> the run's status and times, as last parsed: lets an
        # experiment's wait be decided without re-reading all its runs
        self.runs: dict[str, dict[str, dict]] = {}
        # each checked meta.yaml's stamp (mtime and size in one int: a tuple of two costs
        # 100 bytes more per file, 5 MB at 50,000 runs)
        self.cache: dict[str, int] = {}
        self.pending: dict[str, float] = {}
        self.problems: dict[str, list[dict]] = {}
        self.rewritten: Counter[str] = Counter()  # rewrites by kind of meta.yaml
        self.would: Counter[str] = Counter()
        self.recent: deque[float] = deque()
        self.total = 0
        self.last_rewrite: LastRewrite | None = None
        self.last_pass: FullPass | None = None
        self.lock = threading.RLock()
        self.temp_folders = tuple(Path(p) for p in temp_folders)
        self.swept = 0  # stale temp files removed so far
        self.progress: Callable[[], None] = lambda: None  # told of each file of a full pass

    # ---- single files --------------------------------------------------------------------
    def _rel(self, path: Path) -> tuple[str, ...] | None:
        """Store-relative parts of a path that really lies inside the store, else None."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(self.store).parts
        except ValueError:
            return None
        if not safe_segments(rel):
            return None
        real = os.path.realpath(path)
        if not real.startswith(self.store_real + os.sep):
            self.problems["/".join(rel)] = [{"problem": "symlink",
                                             "why": f"resolves outside the store to {real}"}]
            return None
        return rel

    def check(self, path: Path, now: float | None = None, force: bool = False,
              use_cache: bool = False) -> str:
        """Look at one meta.yaml and rewrite it if needed; returns the outcome."""
        now = time.time() if now is None else now
        rel = self._rel(path)
        if rel is None:
            return SKIPPED
        kind = classify_meta(rel)
        if not kind.has_locations:
            return SKIPPED
        key = "/".join(rel)
        with self.lock:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                self._forget(key)
                return GONE
            if use_cache and self.cache.get(key) == stamp(st):
                return CLEAN
            for _ in range(5):
                outcome = self._attempt(path, key, kind, now, force)
                if outcome != BUSY:
                    return outcome
            log.warning("%s kept changing under us; will look again", key)
            return BUSY

    def _attempt(self, path: Path, key: str, kind, now: float, force: bool) -> str:
        try:
            raw, doc = metayaml.read(path)
        except FileNotFoundError:
            self._forget(key)
            return GONE
        except metayaml.MetaError as exc:
            self.problems[key] = [{"problem": "malformed", "why": str(exc)}]
            self.cache.pop(key, None)
            return MALFORMED
        run_changed = kind.name == "run" and self._note_run(key, doc)
        plan = plan_file(kind, doc, self.own_root)
        if plan.findings:
            self.problems[key] = [{"problem": f.problem, "key": f.key, "value": str(f.value)[:500],
                                   "why": f.why} for f in plan.findings]
        else:
            self.problems.pop(key, None)
        if not plan.changes:
            self.pending.pop(key, None)
            self.deferred.pop(key, None)
            self._remember(path, key)
            if run_changed:
                self._recheck_experiment(key, now)
            return CLEAN
        wait = self._wait_reason(kind.name, doc, path, now)
        if wait:
            self.deferred[key] = wait
            return DEFERRED
        self.deferred.pop(key, None)
        if plan.foreign and not force and self.foreign_delay > 0:
            first = self.pending.setdefault(key, now)
            if now - first < self.foreign_delay:
                return PENDING
        if self.dry_run:
            self.would[plan.kind] += 1
            return WOULD
        new = metayaml.dump(apply(doc, plan.changes))
        journal = self.journal
        ahead = None if journal is None else (lambda: journal.append_many(intent(
            {"action": "rewrite", "host": self.host_id, "file": key, "kind": plan.kind},
            [{"key": c.key, "old": c.old, "new": c.new} for c in plan.changes], raw, new)))
        # write-ahead: the intent (with the whole old text) is on disk before the rename
        try:
            if not metayaml.replace_if_unchanged(Target(self.store, tuple(key.split("/"))),
                                                 new, raw, before_rename=ahead):
                return BUSY
        except FileNotFoundError:  # deleted or moved away meanwhile
            self._forget(key)
            return GONE
        except safepath.Escape as exc:  # a folder became a symlink since the check: not followed
            self.problems[key] = [{"problem": "symlink", "why": f"{exc}"}]
            return SKIPPED
        self.pending.pop(key, None)
        self._remember(path, key)
        self.rewritten[plan.kind] += 1
        self.total += 1
        self.recent.append(now)
        for change in plan.changes:
            self.last_rewrite = LastRewrite(now, key, change.key, change.new)
        log.info("rewrote %s: %s", key, ", ".join(f"{c.key} -> {c.new}" for c in plan.changes))
        if run_changed:
            self._recheck_experiment(key, now)
        return REWRITTEN

    def _wait_reason(self, kind: str, doc: dict, path: Path,
                     now: float) -> tuple[str, float | None] | None:
        """Why this file's locations must wait (work in flight) and until when, or None."""
        now_ms = int(now * 1000)
        if in_flight(kind, doc, now_ms, self.in_flight_grace_ms):
            return f"{kind.replace('_', ' ')} in progress", None
        if kind != "experiment":
            return None
        runs = list(self._runs_of(path.parent).values())
        wait = experiment_wait(doc, runs, now_ms, self.experiment_quiet_ms,
                               self.in_flight_grace_ms)
        return None if wait is None else (wait[0], None if wait[1] is None else wait[1] / 1000)

    @staticmethod
    def _exp_of(run_key: str) -> str:
        return run_key.rsplit("/", 2)[0]

    def _note_run(self, key: str, doc: dict) -> bool:
        """Record a run's state in its experiment's index; True if it is new or changed."""
        runs = self.runs.get(self._exp_of(key))
        if runs is None:
            return False
        state = {k: doc.get(k) for k in ("status", "start_time", "end_time")}
        changed = runs.get(key) != state
        runs[key] = state
        return changed

    def _runs_of(self, exp_dir: Path) -> dict[str, dict]:
        """The experiment's runs' states: read from disk once, then kept current by checks."""
        rel = exp_dir.relative_to(self.store).parts
        exp = "/".join(rel)
        if exp not in self.runs:
            runs: dict[str, dict] = {}
            for run, entry in walk(exp_dir, rel):
                if entry.kind is not Kind.RUN:
                    continue
                try:
                    doc = metayaml.read(run / META)[1]
                except (OSError, metayaml.MetaError):
                    continue
                runs[f"{exp}/{run.name}/{META}"] = {
                    k: doc.get(k) for k in ("status", "start_time", "end_time")}
            self.runs[exp] = runs
        return self.runs[exp]

    def _recheck_experiment(self, key: str, now: float) -> None:
        """A run that started or finished may change whether its experiment must wait."""
        exp_key = self._exp_of(key) + "/" + META
        if exp_key in self.deferred:
            self.check(self.store / exp_key, now)

    def recheck_deferred(self, now: float | None = None, all_: bool = True) -> None:
        """Look again at deferred files: all of them, or only those whose wait is over."""
        now = time.time() if now is None else now
        with self.lock:
            keys = [k for k, (_, until) in self.deferred.items()
                    if all_ or (until is not None and now >= until)]
        for key in keys:
            self.check(self.store / key, now)

    def _remember(self, path: Path, key: str) -> None:
        try:
            st = os.lstat(path)
            self.cache[key] = stamp(st)
        except OSError:
            self.cache.pop(key, None)

    def _forget(self, key: str) -> None:
        self.runs.get(self._exp_of(key), {}).pop(key, None)
        self.runs.pop(key.rsplit("/", 1)[0], None)
        self.cache.pop(key, None)
        self.pending.pop(key, None)
        self.deferred.pop(key, None)
        self.problems.pop(key, None)

    # ---- passes --------------------------------------------------------------------------
    def full_pass(self, force: bool = False, use_cache: bool = False) -> FullPass:
        """Check every meta.yaml in the store; returns the pass's figures."""
        start = time.perf_counter()
        outcomes: Counter = Counter()
        now = time.time()
        seen = set()
        links: dict[str, list[dict]] = {}
        sweep = not use_cache and not self.dry_run  # polling passes stay cheap
        if sweep:
            self._sweep(self.store / COORDINATION, now, recursive=True)
            for folder in self.temp_folders:
                self._sweep(folder, now)
        for folder, entry in walk(self.store, (), links):
            self.progress()
            if sweep:
                self._sweep(folder, now)
            if not classify_meta(entry.rel + (META,)).has_locations:
                continue
            path = folder / META
            outcome = self.check(path, now, force=force, use_cache=use_cache)
            if outcome != GONE:
                seen.add("/".join(Path(path).relative_to(self.store).parts))
            outcomes[outcome] += 1
        with self.lock:
            for key in {*self.cache, *self.problems} - seen - set(links):
                self._forget(key)  # the file is gone (deleted, moved to .trash, unlinked)
            self.problems.update(links)
            self.last_pass = FullPass(now, round(time.perf_counter() - start, 3),
                                      sum(v for k, v in outcomes.items() if k != GONE),
                                      dict(outcomes))
            return self.last_pass

    def _sweep(self, folder: Path, now: float, recursive: bool = False) -> None:
        """The guard's own temp files left by a write that was killed (tempfiles.sweep)."""
        removed = tempfiles.sweep(folder, now, recursive=recursive)
        for path in removed:
            log.info("removed a stale temp file of the guard: %s", printable(str(path)))
        self.swept += len(removed)

    def check_dir(self, folder: Path) -> None:
        """A folder that appeared in one move (sync, restore from .trash): check its files."""
        if self._rel(folder) is None:
            return
        for path in iter_meta_files(self.store, self.problems, Path(os.path.abspath(folder))):
            self.progress()
            self.check(path)

    def flush_pending(self, now: float | None = None) -> None:
        """Foreign changes whose grace period is over."""
        now = time.time() if now is None else now
        with self.lock:
            due = [k for k, first in self.pending.items() if now - first >= self.foreign_delay]
        for key in due:
            self.check(self.store / key, now)

    # ---- figures -------------------------------------------------------------------------
    def snapshot(self, now: float | None = None) -> RewriteFigures:
        """The figures, without the lock: a check holds it across store I/O (a file that
        blocks), and the daemon's loop must never wait for that to write its status. Each
        dict is copied in one step (atomic under the GIL); only this method drops old times
        from `recent`, the checks only append to it."""
        now = time.time() if now is None else now
        while self.recent and now - self.recent[0] > 3600:
            self.recent.popleft()
        problems = [Problem(file=k, **p) for k, ps in sorted(dict(self.problems).items())
                    for p in ps]
        deferred = dict(self.deferred)
        return RewriteFigures(
            rewrites_total=self.total,
            rewrites_last_hour=len(self.recent),
            rewritten_by_kind=dict(self.rewritten),
            last_rewrite=self.last_rewrite,
            pending_foreign=len(self.pending),
            deferred_in_flight=len(deferred),
            deferred_quiet=quiet_waits(deferred.values()),
            unportable_count=sum(1 for p in problems if p.problem == "unportable"),
            problem_count=len(problems),
            problems=tuple(problems[:50]),
            last_full_pass=self.last_pass,
        )


class RewritePart(ThreadPart):
    """The daemon's rewrite part: a full pass at start, then the watcher's changes, a polling
    pass while the watcher cannot deliver events, and a periodic full pass.

    A write the disk refuses (full, over quota, read-only, no permission; in the store or the
    journal's state folder) holds the part instead of ending it: `held` says why and what to
    do, the file stays as it was, and every 10-60 s a probe write in the same folder checks
    whether the condition cleared; once it has, `held` clears and a full pass catches up."""

    name = "rewrite"
    consequence = "rewrites stopped until restart"
    wants = frozenset({Change.FILE, Change.DIR})

    def __init__(self, fixer: Fixer, watch_mode: Callable[[], str], poll_interval: float,
                 full_pass_interval: float) -> None:
        super().__init__(wait=0.2)
        self.fixer = fixer
        self.fixer.progress = self.progress
        self.watch_mode = watch_mode  # the watcher part's mode now: events, or polling
        self.poll_interval = poll_interval
        self.full_pass_interval = full_pass_interval
        self.next_full = self.next_poll = self.next_deferred = 0.0
        self.refused = 0            # refused attempts in a row while held
        self.retry_at = 0.0         # monotonic: when a held part probes again
        self.probe_in: Path | None = None  # the folder whose write was refused

    def snapshot(self) -> RewriteFigures:
        return replace(self.fixer.snapshot(), error=self.error, paused=self.paused.is_set())

    def begin(self) -> None:
        now = time.monotonic()
        self.next_poll = now + self.poll_interval
        self.next_deferred = now + DEFERRED_RECHECK
        if self.held is None:
            self._guarded(now, self._full_pass)
        else:
            self.next_full = now  # held before a restart: the probe decides

    def _full_pass(self, now: float) -> None:
        self.next_full = now  # due again if this pass is refused midway
        self.fixer.full_pass()
        self.next_full = now + self.full_pass_interval

    def handle(self, event: Event | None, now: float) -> None:
        if self.held is not None:
            if now < self.retry_at or not self._probe(now):
                return  # events meanwhile are dropped: the pass on resuming finds them
        self._guarded(now, lambda t: self._round(event, t))

    def _round(self, event: Event | None, now: float) -> None:
        if event is not None:
            kind, path = event
            if kind == Change.FILE:
                self.fixer.check(path)
            elif kind == Change.DIR:
                self.fixer.check_dir(path)
        if now >= self.next_full:
            self._full_pass(now)
        elif self.watch_mode() != EVENTS and now >= self.next_poll:
            self.fixer.full_pass(use_cache=True)
            self.next_poll = now + self.poll_interval
        if self.fixer.pending:
            self.fixer.flush_pending()
        if self.fixer.deferred:
            self.fixer.recheck_deferred(all_=now >= self.next_deferred)
            if now >= self.next_deferred:
                self.next_deferred = now + DEFERRED_RECHECK

    # ---- writes the disk refuses -----------------------------------------------------------
    def _guarded(self, now: float, work: Callable[[float], None]) -> None:
        """Do `work`; a refused write holds the part (any other error ends the thread)."""
        try:
            work(now)
        except OSError as exc:
            journal = self.fixer.journal
            in_state = (journal is not None and exc.filename is not None
                        and Path(str(exc.filename)) == journal.path)
            reason = hold_reason(exc, "state folder" if in_state else "store")
            if reason is None:
                raise
            self._hold(printable(reason), exc, now)

    def _hold(self, reason: str, exc: OSError, now: float) -> None:
        self.refused += 1
        self.retry_at = now + retry_delay(self.refused)
        target = Path(str(exc.filename)) if exc.filename else self.fixer.store / META
        self.probe_in = target.parent
        self.next_full = now  # catch up at once when resuming
        if reason != self.held:
            log.warning("rewriting held: %s", reason)
        self.held = reason

    def _probe(self, now: float) -> bool:
        """Whether a write in the refused folder works again (a small temp file, fsynced and
        removed); if so the part resumes."""
        folder = self.probe_in or self.fixer.store
        if not folder.is_dir():
            folder = self.fixer.store
        try:
            probe_write(folder)
        except OSError as exc:
            reason = hold_reason(exc, "store")
            self.refused += 1
            self.retry_at = now + retry_delay(self.refused)
            if reason is not None and self.held is not None and reason != self.held:
                self.held = printable(reason)
            return False
        log.info("rewriting resumes: %s accepts writes again", printable(str(folder)))
        self.held = None
        self.refused = 0
        self.probe_in = None
        return True


PROBE_BYTES = 4096  # about a meta.yaml: a disk with room for this has room for a rewrite


def probe_write(folder: Path) -> None:
    """Write, fsync and remove a small temp file in `folder` (OSError if the disk refuses);
    nothing is left behind either way."""
    tmp = Target(Path(folder), (f"{tempfiles.TEMP_PREFIX}probe-{os.getpid()}",))
    try:
        safepath.write_new(tmp, b"\0" * PROBE_BYTES, create=False)
    finally:
        tempfiles.discard(tmp.path)


def undo(store: Path, journal_path: Path, out: Journal | None, dry_run: bool = False) -> dict:
    """Put back what a journal recorded, newest first (with `dry_run`, only count what would be
    put back). A file still holding exactly what a rewrite wrote gets its old bytes back, every
    one; a file whose rewrite never happened (killed before the rename) is left as is; a file
    changed since gets the old value back in each key that still holds the new one."""
    store = Path(os.path.abspath(store))
    store_real = os.path.realpath(store)
    records = [r for r in read_journal(journal_path) if r.get("action") == "rewrite"]
    done = skipped = 0
    for group in reversed(transactions(records)):
        file = text_field(group[0], "file") or ""
        rel = tuple(file.split("/"))
        path = store.joinpath(*rel)
        if not safe_segments(rel) or not os.path.realpath(path).startswith(store_real + os.sep):
            skipped += len(group)
            continue
        try:
            raw, doc = metayaml.read(path)
        except (FileNotFoundError, metayaml.MetaError):
            skipped += len(group)
            continue
        new, restored = _undone(raw, doc, group)
        skipped += len(group) - len(restored)
        if new is None:
            continue
        if dry_run:
            done += len(restored)
        elif metayaml.replace_if_unchanged(Target(store, rel), new, raw):
            done += len(restored)
            if out is not None:
                out.append_many([{"action": "undo", "file": file, "key": rec["key"],
                                  "old": rec["new"], "new": rec["old"]} for rec in restored])
        else:
            skipped += len(restored)
    return {"undone": done, "skipped": skipped}


def _undone(raw: bytes, doc: dict, group: list[dict]) -> tuple[bytes | None, list[dict]]:
    """What undoing one write makes of a file (pure): its new bytes (None: nothing to do) and
    the journal lines put back. A line without `key`/`old`/`new` is never put back."""
    lines = [r for r in group if {"key", "old", "new"} <= r.keys()]
    verdict = judge(raw, group[0]) if "after" in group[0] else None
    if verdict == NOT_APPLIED:
        return None, []
    old = old_content(group)
    if verdict == APPLIED and old is not None:
        return old, lines
    restored = [r for r in lines if doc.get(r["key"]) == r["new"]]
    if not restored:
        return None, []
    for rec in restored:
        doc[rec["key"]] = rec["old"]
    return metayaml.dump(doc), restored
