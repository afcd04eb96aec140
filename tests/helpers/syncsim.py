"""A small, deterministic stand-in for a file sync client (Synology Drive, Syncthing, ...).

The guard exists because several machines mount *the same* MLflow file store through a sync
client. Tests need that situation without a real client, so `Syncer` simulates one between N
local folders, each playing "the synced store as mounted on one machine" (host A, B, C).

What it mimics from a real client
---------------------------------
* **Polling with lag.** A background thread scans every folder every `interval` seconds
  (``os.walk``; per file it records ``(mtime_ns, size)`` plus inode/ctime, and a content hash
  only when those change). A change is replayed to the other folders only once it is at least
  `delay` seconds old, so other hosts see writes late - which is the whole point.
* **Content at replay time.** Like a real client uploading "whatever is there now", replay
  copies the *current* source content (which may be newer than the change that triggered it),
  through a temp file (``.syncsim-*``) in the destination folder and ``os.replace``, and gives
  the destination the source's mtime. Missing parent folders are created.
* **Deletions** of files are replayed as deletions; removed folders are removed on the other
  hosts once they are empty there. Empty folders are synced too.
* **Last synced state, no ping-pong.** A global "base" (content hash of the last version every
  host agreed on) and a per-folder record of what was last scanned/written are kept, so the
  Syncer's own writes are never seen as new local changes, and a file whose content equals what
  was last synced is not a change.
* **Conflicts.** If a file changed on two (or more) hosts since the last synced version and the
  contents differ, the version with the later mtime keeps the original name everywhere, and
  every other version is written next to it, everywhere, as a conflict copy named after the
  host that lost:
  Synology Drive  ``<stem>_<host>_<Mon-DD-HHMM-YYYY>_Conflict_<n>.<ext>``
  Syncthing       ``<stem>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<host>.<ext>``
  (no ``.<ext>`` for a name without extension, like MLflow metric files). Identical content
  written on both sides is not a conflict. Modify-versus-delete: the modification wins (the
  file comes back), and a folder removed on one host while another host put new files in it
  comes back too - nothing is ever lost.
* **Ignored names.** Its own temp files (``.syncsim-*``) and other programs' in-flight temp files
  (``.guard-tmp-*``) are never synced. Symlinks are neither followed nor synced, and nothing is
  written through a symlinked folder, so nothing is written outside the given folders.

What it does not do
-------------------
* No server, no network, no partial/chunked transfers, no rename detection (a rename is a
  deletion plus a creation), no permissions/xattrs beyond the mode bits, no case-folding, no
  clock skew between hosts (all hosts share this machine's clock, so "later mtime" is exact).
* Files are read into memory whole (fine for test stores).
* It is one process and one thread: replays are serialised, and changes on different paths
  are not ordered against each other beyond "oldest change first per cycle".
* A local write racing the replay's own ``os.replace`` within microseconds can still be lost
  (real clients have the same window); the Syncer re-checks the destination just before
  replacing and backs off if it changed, which narrows the window to a few syscalls.
* While `pause()`d it keeps indexing local changes (like a client that is offline) but
  exchanges nothing; on `resume()` everything old enough is replayed at once.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEMP_PREFIX = ".syncsim-"
FOREIGN_TEMP_PREFIXES = (".guard-tmp-",)
CONFLICT_STYLES = ("synology", "syncthing")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_BINARY", 0)


def ignored_name(name: str) -> bool:
    """True for names the Syncer never syncs (its own and other programs' temp files)."""
    return name.startswith(TEMP_PREFIX) or name.startswith(FOREIGN_TEMP_PREFIXES)


def _entries(root: str) -> Iterator[tuple[str, str, os.stat_result | None]]:
    """What a sync client syncs under `root`: real folders ("d", rel, None) and regular
    files ("f", rel, lstat), ignored names and symlinks left out; an entry that vanishes
    mid-walk is absent from this walk."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        reldir = os.path.relpath(dirpath, root)
        reldir = "" if reldir == os.curdir else reldir
        keep = []
        for d in dirnames:
            if ignored_name(d):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, d))
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                keep.append(d)
                yield "d", os.path.join(reldir, d), None
        dirnames[:] = keep
        for name in filenames:
            if ignored_name(name):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield "f", os.path.join(reldir, name), st


def _key(st: os.stat_result) -> tuple:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


@dataclass(frozen=True)
class _Entry:
    """What the Syncer last knew of one file in one folder."""
    key: tuple | None  # (mtime_ns, size, ino, ctime_ns); None = re-read on the next scan
    digest: str | None


@dataclass(frozen=True)
class _Version:
    """One consistent read of a file: content, its hash and the stat it was read under."""
    data: bytes | None
    digest: str
    key: tuple
    mtime_ns: int
    atime_ns: int
    mode: int

    @property
    def entry(self) -> _Entry:
        return _Entry(self.key, self.digest)


class _Other:
    """Marker: the path exists but is not a regular file (folder, symlink, fifo...)."""


OTHER = _Other()


class _Unstable(Exception):
    """The file kept changing while it was read."""


class _Race(Exception):
    """A destination changed locally between the decision and the write; retry next cycle."""


class _Unsafe(Exception):
    """A path component is a symlink or not a folder; refuse to write through it."""


class Syncer:
    """Simulated sync client between `folders` (one per host). See the module docstring.

    Public state: `replayed` (file writes done on a destination, conflict copies included),
    `deleted` (files and folders removed on a destination), `conflicts` (conflict copies
    created, once per losing version), `log` (list of ``(time.time(), action, src_host,
    relpath)``, action in copy/delete/mkdir/rmdir/conflict/skip/race/error), `errors`
    (unexpected exceptions of the background thread, as text).

    `volatile`: relpath prefixes ("a/b/") that are synced like the rest but that `settle()`
    neither waits for nor compares, for files rewritten faster than the sync delay.
    """

    def __init__(self, folders: list[Path], delay: float = 0.5, interval: float = 0.1,
                 conflict_style: str = "synology", host_names: list[str] | None = None,
                 volatile: tuple[str, ...] = ()):
        if len(folders) < 2:
            raise ValueError("a Syncer needs at least two folders")
        if conflict_style not in CONFLICT_STYLES:
            raise ValueError(f"conflict_style must be one of {CONFLICT_STYLES}")
        if host_names is None:
            host_names = [f"host{chr(ord('A') + i)}" for i in range(len(folders))]
        if len(host_names) != len(folders) or len(set(host_names)) != len(host_names):
            raise ValueError("host_names must be distinct, one per folder")
        if delay < 0 or interval <= 0:
            raise ValueError("delay must be >= 0 and interval > 0")
        self.roots = [os.path.abspath(os.fspath(f)) for f in folders]
        real = [os.path.realpath(r) for r in self.roots]
        for i, a in enumerate(real):
            for j, b in enumerate(real):
                if i != j and (a == b or a.startswith(b.rstrip(os.sep) + os.sep)):
                    raise ValueError(f"folders must not overlap: {self.roots[i]} / {self.roots[j]}")
        self.hosts = list(host_names)
        self.delay = float(delay)
        self.interval = float(interval)
        self.conflict_style = conflict_style
        # Path prefixes still synced but not waited for by settle(): files a program rewrites
        # every fraction of a second (the guards' heartbeats) would otherwise never look settled.
        self.volatile = tuple(volatile)

        self.replayed = 0
        self.deleted = 0
        self.conflicts = 0
        self.log: list[tuple[float, str, str, str]] = []
        self.errors: list[str] = []

        n = len(self.roots)
        self._known: list[dict[str, _Entry]] = [{} for _ in range(n)]
        self._known_dirs: list[set[str]] = [set() for _ in range(n)]
        self._base: dict[str, str] = {}          # relpath -> digest all hosts last agreed on
        self._base_dirs: set[str] = set()
        self._preserved: dict[str, set[str]] = {}  # relpath -> digests already kept as copies
        self._dirty: dict[tuple[str, str], float] = {}  # ("f"|"d", relpath) -> first seen
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._paused = False
        self._thread: threading.Thread | None = None
        self._generation = 0

    # ------------------------------------------------------------------ public API

    def start(self) -> Syncer:
        """Index every folder (what exists now is the starting point), then sync in background.

        Files that already differ between folders at start are reconciled like any change.
        """
        if self._thread is not None:
            raise RuntimeError("Syncer already started")
        for root in self.roots:
            os.makedirs(root, exist_ok=True)
        with self._lock:
            for i in range(len(self.roots)):
                self._scan(i)
            self._reconcile_initial()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="syncsim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (idempotent). Pending changes are not replayed."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    def __enter__(self) -> Syncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pause(self) -> None:
        """Simulate a sync outage: local changes are still indexed, nothing is exchanged."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def settle(self, timeout: float = 10.0) -> bool:
        """Block until every change made before this call has been replayed everywhere and
        all folders are identical (same files with the same content, same folders; ignored
        temp names and `volatile` paths aside). Returns True, or raises AssertionError
        describing what differs."""
        if self._thread is None:
            raise RuntimeError("Syncer is not running")
        deadline = time.monotonic() + timeout
        start_gen = self._generation
        while True:
            with self._lock:
                # Two completed cycles guarantee one full scan that started after this call.
                if self._generation >= start_gen + 2 and not self._pending():
                    if not self._differences():
                        return True
            if time.monotonic() >= deadline or self._thread is None:
                raise AssertionError(self._describe_unsettled(timeout))
            time.sleep(min(self.interval / 2, 0.05))

    def settled(self, timeout: float = 5.0) -> bool:
        """settle() for polling loops: False, not an error, while changes are in flight."""
        try:
            return self.settle(timeout)
        except AssertionError:
            return False

    def counters(self) -> tuple[int, int, int]:
        """(replayed, deleted, conflicts), handy to check that nothing moves."""
        return (self.replayed, self.deleted, self.conflicts)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with self._lock:
                    for i in range(len(self.roots)):
                        self._scan(i)
                    if not self._paused:
                        self._replay_ready()
            except Exception:  # a simulator bug: record it, keep going
                text = traceback.format_exc()
                self.errors.append(text)
                self._note("error", "", text.strip().splitlines()[-1])
            finally:
                self._generation += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _note(self, action: str, host: str, rel: str) -> None:
        self.log.append((time.time(), action, host, rel))

    # ------------------------------------------------------------------ reading

    def _parents_safe(self, root: str, rel: str) -> bool:
        cur = root
        for part in rel.split(os.sep)[:-1]:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except OSError:
                return False
            if not stat.S_ISDIR(st.st_mode):  # lstat: a symlink is never S_ISDIR
                return False
        return True

    def _read(self, i: int, rel: str, keep_data: bool) -> _Version | _Other | None:
        """Read one file consistently. None if absent, OTHER if not a regular file."""
        root = self.roots[i]
        path = os.path.join(root, rel)
        for _ in range(5):
            try:
                st0 = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISREG(st0.st_mode) or not self._parents_safe(root, rel):
                return OTHER
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished/replaced between lstat and open: look again
            except OSError:
                return OTHER  # e.g. ELOOP: became a symlink
            try:
                st1 = os.fstat(fd)
                if not stat.S_ISREG(st1.st_mode):
                    return OTHER
                h = hashlib.blake2b(digest_size=16)
                chunks = []
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    if keep_data:
                        chunks.append(chunk)
                st2 = os.fstat(fd)
            finally:
                os.close(fd)
            if _key(st1) == _key(st2):
                return _Version(b"".join(chunks) if keep_data else None, h.hexdigest(),
                                _key(st1), st1.st_mtime_ns, st1.st_atime_ns,
                                stat.S_IMODE(st1.st_mode))
            time.sleep(0.01)  # being written right now
        raise _Unstable(rel)

    # ------------------------------------------------------------------ scanning

    def _scan(self, i: int) -> None:
        """Index folder i and mark whatever changed since its last scan as dirty."""
        root = self.roots[i]
        old = self._known[i]
        files: dict[str, _Entry] = {}
        dirs: set[str] = set()
        for kind, rel, st in _entries(root):
            if kind == "d":
                dirs.add(rel)
                continue
            prev = old.get(rel)
            if prev is not None and prev.key == _key(st):
                files[rel] = prev
                continue
            try:
                version = self._read(i, rel, keep_data=False)
            except _Unstable:
                files[rel] = _Entry(None, None)  # changing: dirty now, re-read next scan
                continue
            if isinstance(version, _Version):
                files[rel] = version.entry
        now = time.monotonic()
        for rel, entry in files.items():
            prev = old.get(rel)
            if prev is None or prev.digest != entry.digest or entry.digest is None:
                self._dirty.setdefault(("f", rel), now)
        for rel in old.keys() - files.keys():
            self._dirty.setdefault(("f", rel), now)
        for rel in dirs ^ self._known_dirs[i]:
            self._dirty.setdefault(("d", rel), now)
        self._known[i] = files
        self._known_dirs[i] = dirs

    def _reconcile_initial(self) -> None:
        """Whatever is identical in every folder at start counts as already in sync."""
        first = self._known[0]
        for rel, entry in first.items():
            if entry.digest is not None and all(
                    k.get(rel, _Entry(None, None)).digest == entry.digest for k in self._known):
                self._base[rel] = entry.digest
                self._dirty.pop(("f", rel), None)
        for rel in self._known_dirs[0]:
            if all(rel in d for d in self._known_dirs):
                self._base_dirs.add(rel)
                self._dirty.pop(("d", rel), None)

    # ------------------------------------------------------------------ replaying

    def _replay_ready(self) -> None:
        now = time.monotonic()
        ready = sorted((t, kind, rel) for (kind, rel), t in self._dirty.items()
                       if now - t >= self.delay)
        if not ready:
            return
        depth = lambda rel: rel.count(os.sep)  # noqa: E731
        dir_rels = sorted({rel for _, kind, rel in ready if kind == "d"}, key=depth)
        file_rels = [rel for _, kind, rel in ready if kind == "f"]
        dir_deletions = []
        for rel in dir_rels:
            outcome = self._guarded(self._resolve_dir, rel)
            if outcome == "delete":
                dir_deletions.append(rel)
            elif outcome:
                self._dirty.pop(("d", rel), None)
        for rel in file_rels:
            try:
                done = self._resolve_file(rel)
            except _Unstable:
                done = False
            except _Race:
                self._note("race", "", rel)
                done = False
            except _Unsafe:
                self._note("skip", "", rel)
                done = True
            except OSError as exc:  # unexpected trouble on disk: report, retry next cycle
                self._note("error", "", f"{rel}: {exc}")
                done = False
            if done:
                self._dirty.pop(("f", rel), None)
        for rel in sorted(dir_deletions, key=depth, reverse=True):
            if self._guarded(self._resolve_dir_deletion, rel):
                self._dirty.pop(("d", rel), None)

    def _guarded(self, resolve, rel: str):
        try:
            return resolve(rel)
        except OSError as exc:  # unexpected trouble on disk: report, retry next cycle
            self._note("error", "", f"{rel}: {exc}")
            return False

    def _resolve_file(self, rel: str) -> bool:
        """Bring `rel` to one state in every folder. False = try again next cycle."""
        n = len(self.roots)
        cur: dict[int, _Version | None] = {}
        for i in range(n):
            v = self._read(i, rel, keep_data=True)
            if v is OTHER:
                self._note("skip", self.hosts[i], rel)  # file here, folder/symlink there
                return True
            cur[i] = v
        digests = {i: (v.digest if v else None) for i, v in cur.items()}
        base = self._base.get(rel)
        changed = [i for i in range(n) if digests[i] != base]
        for i, v in cur.items():  # what we decide on is what we know now
            if v is None:
                self._known[i].pop(rel, None)
            else:
                self._known[i][rel] = v.entry
        if not changed:
            return True
        present = [i for i in changed if cur[i] is not None]
        if not present:  # only deletions: delete wherever the file is still the base version
            src = self.hosts[changed[0]]
            for i in range(n):
                if cur[i] is not None:
                    self._delete_file(i, rel, cur[i], src)
            self._base.pop(rel, None)
            self._preserved.pop(rel, None)
            return True

        # One representative per distinct content: the holder with the latest mtime.
        reps: dict[str, int] = {}
        for i in present:
            d = digests[i]
            if d not in reps or cur[i].mtime_ns > cur[reps[d]].mtime_ns:
                reps[d] = i
        winner = max(reps.values(), key=lambda i: (cur[i].mtime_ns, -i))
        win = cur[winner]
        preserved = self._preserved.setdefault(rel, set())
        for d, i in sorted(reps.items(), key=lambda item: item[1]):
            if i == winner or d in preserved:
                continue
            cname = self._conflict_name(rel, self.hosts[i])
            for j in range(n):
                self._write_file(j, cname, cur[i], None, self.hosts[i])
            self._base[cname] = d
            preserved.add(d)
            self.conflicts += 1
            self._note("conflict", self.hosts[i], cname)
        for j in range(n):
            if digests[j] != win.digest:
                self._write_file(j, rel, win, cur[j], self.hosts[winner])
        self._base[rel] = win.digest
        self._preserved.pop(rel, None)
        return True

    def _conflict_name(self, rel: str, host: str) -> str:
        folder, name = os.path.split(rel)
        stem, ext = os.path.splitext(name)
        t = time.localtime()
        n = 1
        while True:
            if self.conflict_style == "synology":
                stamp = (f"{_MONTHS[t.tm_mon - 1]}-{t.tm_mday:02d}-"
                         f"{t.tm_hour:02d}{t.tm_min:02d}-{t.tm_year}")
                cname = f"{stem}_{host}_{stamp}_Conflict_{n}{ext}"
            else:
                stamp = time.strftime("%Y%m%d-%H%M%S", t)
                suffix = "" if n == 1 else f"-{n}"
                cname = f"{stem}.sync-conflict-{stamp}-{host}{suffix}{ext}"
            crel = os.path.join(folder, cname)
            taken = crel in self._base or any(
                crel in known for known in self._known) or any(
                os.path.lexists(os.path.join(root, crel)) for root in self.roots)
            if not taken:
                return crel
            n += 1

    def _ensure_parent(self, i: int, rel: str, src_host: str) -> None:
        """Create the missing parent folders of `rel` in folder i, never through a symlink."""
        cur = self.roots[i]
        sofar = ""
        for part in rel.split(os.sep)[:-1]:
            cur = os.path.join(cur, part)
            sofar = os.path.join(sofar, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                try:
                    os.mkdir(cur)
                except FileExistsError:  # the host made it just now
                    st = os.lstat(cur)
                    if not stat.S_ISDIR(st.st_mode):
                        raise _Unsafe(rel) from None
                    continue
                self._known_dirs[i].add(sofar)
                self._base_dirs.add(sofar)
                self._note("mkdir", src_host, sofar)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise _Unsafe(rel)

    def _check_unchanged(self, path: str, expected: _Version | None) -> None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if expected is None:
            if st is not None:
                raise _Race(path)
        elif st is None or not stat.S_ISREG(st.st_mode) or _key(st) != expected.key:
            raise _Race(path)

    def _write_file(self, i: int, rel: str, version: _Version, expected: _Version | None,
                    src_host: str) -> None:
        """Replace `rel` in folder i with `version`, if it is still `expected` there."""
        self._ensure_parent(i, rel, src_host)
        path = os.path.join(self.roots[i], rel)
        tmp = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_BINARY", 0), 0o600)
        try:
            try:
                view = memoryview(version.data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.chmod(tmp, version.mode)
            os.utime(tmp, ns=(version.atime_ns, version.mtime_ns))
            self._check_unchanged(path, expected)
            os.replace(tmp, path)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        st = os.lstat(path)
        self._known[i][rel] = _Entry(_key(st), version.digest)
        self.replayed += 1
        self._note("copy", src_host, rel)

    def _delete_file(self, i: int, rel: str, expected: _Version, src_host: str) -> None:
        path = os.path.join(self.roots[i], rel)
        if not self._parents_safe(self.roots[i], rel):
            raise _Unsafe(rel)
        self._check_unchanged(path, expected)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        self._known[i].pop(rel, None)
        self.deleted += 1
        self._note("delete", src_host, rel)

    def _dir_state(self, i: int, rel: str) -> bool | _Other:
        try:
            st = os.lstat(os.path.join(self.roots[i], rel))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISDIR(st.st_mode) or not self._parents_safe(self.roots[i], rel):
            return OTHER
        return True

    def _resolve_dir(self, rel: str) -> bool | str:
        """Creations are done at once; deletions are returned as "delete" to run after files."""
        states = [self._dir_state(i, rel) for i in range(len(self.roots))]
        if any(s is OTHER for s in states):
            self._note("skip", "", rel)
            return True
        base = rel in self._base_dirs
        changed = [i for i, s in enumerate(states) if s != base]
        if not changed:
            return True
        if base:
            return "delete"
        src = self.hosts[changed[0]]
        try:
            for i, present in enumerate(states):
                if not present:
                    self._mkdir(i, rel, src)
        except _Unsafe:
            self._note("skip", src, rel)
            return True
        self._base_dirs.add(rel)
        return True

    def _mkdir(self, i: int, rel: str, src_host: str) -> None:
        self._ensure_parent(i, rel, src_host)
        try:
            os.mkdir(os.path.join(self.roots[i], rel))
        except FileExistsError:
            if self._dir_state(i, rel) is not True:
                raise _Unsafe(rel) from None
        self._known_dirs[i].add(rel)
        self._note("mkdir", src_host, rel)

    def _resolve_dir_deletion(self, rel: str) -> bool:
        n = len(self.roots)
        states = [self._dir_state(i, rel) for i in range(n)]
        if any(s is OTHER for s in states):
            return True
        if all(states):  # came back meanwhile
            return True
        if not any(states):
            self._base_dirs.discard(rel)
            return True
        src = self.hosts[states.index(False)]
        contents = {}
        for i in range(n):
            if states[i]:
                try:
                    contents[i] = os.listdir(os.path.join(self.roots[i], rel))
                except OSError:
                    return False
        if any(not ignored_name(e) for names in contents.values() for e in names):
            # Another host put something in it: the deletion loses, the folder comes back.
            try:
                for i in range(n):
                    if not states[i]:
                        self._mkdir(i, rel, self.hosts[min(contents)])
            except _Unsafe:
                return True
            return True
        if any(contents.values()):
            return False  # only in-flight temp files inside: try again later
        for i in contents:
            try:
                os.rmdir(os.path.join(self.roots[i], rel))
            except FileNotFoundError:
                pass
            except OSError:
                return False  # something appeared meanwhile
            self._known_dirs[i].discard(rel)
            self.deleted += 1
            self._note("rmdir", src, rel)
        self._base_dirs.discard(rel)
        return True

    # ------------------------------------------------------------------ settle support

    def _is_volatile(self, rel: str) -> bool:
        return rel.replace(os.sep, "/").startswith(self.volatile) if self.volatile else False

    def _pending(self) -> list[tuple[str, str]]:
        return [key for key in self._dirty if not self._is_volatile(key[1])]

    def _tree(self, i: int) -> tuple[dict[str, str], set[str]]:
        root = self.roots[i]
        files: dict[str, str] = {}
        dirs: set[str] = set()
        for kind, rel, st in _entries(root):
            if kind == "d":
                dirs.add(rel)
                continue
            prev = self._known[i].get(rel)
            if prev is not None and prev.key == _key(st) and prev.digest:
                files[rel] = prev.digest
                continue
            try:
                v = self._read(i, rel, keep_data=False)
            except _Unstable:
                files[rel] = "<changing>"
                continue
            if isinstance(v, _Version):
                files[rel] = v.digest
        return files, dirs

    def _differences(self) -> list[str]:
        trees = [self._tree(i) for i in range(len(self.roots))]
        out = []
        all_files = set().union(*(t[0] for t in trees))
        for rel in sorted(all_files):
            if self._is_volatile(rel):
                continue
            seen = [t[0].get(rel) for t in trees]
            if len(set(seen)) > 1:
                desc = ", ".join(f"{h}={'absent' if d is None else d[:8]}"
                                 for h, d in zip(self.hosts, seen))
                out.append(f"file {rel!r}: {desc}")
        all_dirs = set().union(*(t[1] for t in trees))
        for rel in sorted(all_dirs):
            have = [h for h, t in zip(self.hosts, trees) if rel in t[1]]
            if len(have) != len(trees):
                out.append(f"folder {rel!r} only on {', '.join(have)}")
        return out

    def _describe_unsettled(self, timeout: float) -> str:
        with self._lock:
            lines = [f"Syncer did not settle within {timeout:.1f}s"
                     + (" (it is paused)" if self._paused else "")]
            now = time.monotonic()
            for (kind, rel), t in sorted(self._dirty.items(), key=lambda kv: kv[1])[:20]:
                lines.append(f"  pending {'file' if kind == 'f' else 'folder'} {rel!r} "
                             f"(changed {now - t:.2f}s ago)")
            diffs = self._differences()
            lines += [f"  {d}" for d in diffs[:30]]
            if len(diffs) > 30:
                lines.append(f"  ... and {len(diffs) - 30} more differences")
            if self.errors:
                lines.append(f"  background errors ({len(self.errors)}), last:\n{self.errors[-1]}")
        return "\n".join(lines)
