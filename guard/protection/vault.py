"""The vault: a local, unsynced second name for every file of the store, to put deletions back.

Layout under the vault folder (vault.path, default state_dir/vault, never inside the store):
    objects/<bucket>/<key>   one hard link per store file (key: its inode number, in hex), or,
                             where hard links are impossible, a copy (key: c<serial>)
    index.sqlite             the index (SQLite, WAL journal, mode 0600): one row per kept
                             folder (an empty one too) and file, as (parent folder's id, name)
                             -> the folder's own id, or the file's key
    trash/<batch>/<path>     what was removed on purpose (guardctl gc, a registry deletion),
                             kept gc.retention_days; RECORD.json says why
A hard link costs one directory entry, not a copy of the data, and it follows in-place writes
(metric appends); a file MLflow replaces by rename gets a new inode, which the vault links
again. Objects are named by inode rather than mirroring the store's folders because the
store's 60,000 folders would cost more than every link together (4 KB per folder on ext4).
The index keeps folders as well as files because MLflow needs them: a run folder without its
empty `params/` or `artifacts/` is "not found". A restore recreates the unit's folders, then
links its files back.

The index is on disk, not in memory, so what the vault holds does not grow with the store
(an in-memory tree cost about 310 bytes per store file). A pass compares each folder's
listing with that folder's rows and writes only the differences, in one transaction per
SAVE_BATCH changes or per save(). Rows name their parent folder by id, so a folder's rows
are one range of the primary key and a unit's subtree is a walk down from its folder. Names
are stored as UTF-8 bytes with surrogates passed through, so any name os.scandir gives back
(undecodable bytes too) round-trips. An index.json.gz of an older version (the whole tree as
nested objects) is read once into the database and set aside as index.json.gz.migrated; a
database SQLite cannot read is set aside (index.sqlite.unreadable-<time>) and rebuilt from
the store, with a warning. The daemon is the only writer of the index; `guardctl gc` and the
server only add to trash/.

A store file the vault cannot keep is recorded in `unprotected` with why (why_unprotected):
an online-only placeholder of a sync client (Windows' cloud files: found from the folder
listing's attributes before any attempt, never read, since reading downloads it), a file on
another volume (a mount inside the store), or the error of the link or copy. Each is logged
once and shown by the status with what to do, until it is kept or gone.
"""

from __future__ import annotations

import errno
import gzip
import itertools
import json
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from filelock import FileLock, Timeout

from guard.core import safeio, safepath
from guard.core.conflictnames import parse_conflict_name
from guard.core.layout import COORDINATION, META, TEMP_PREFIX, Kind, describe
from guard.core.metayaml import read_doc
from guard.core.safepath import Target
from guard.core.store import SYNC_MARKERS, mkdirs_in_store
from guard.protection.deletions import Rel, Unit
from guard.protection.trash import created_of, link_or_copy

log = logging.getLogger("guard.vault")
LINK, COPY = "link", "copy"
# A kept file: its inode (link mode: the object is a hard link to it), or [id, size, mtime_ns]
# (copy mode). An index of the other mode is rebuilt on open.
Key = int | list[int]
INDEX_VERSION = 2  # 1: index.json.gz
INDEX_NAME = "index.sqlite"
LEGACY_NAME = "index.json.gz"
SAVE_BATCH = 10_000  # changes per transaction at most: a build commits as it goes
TOP = 0  # the id of the store's own folder
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own files beside the database

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    parent INTEGER NOT NULL,  -- the id of the folder it is in (0: the store itself)
    name BLOB NOT NULL,       -- UTF-8, surrogates passed through (_enc)
    folder INTEGER,           -- a folder: its own id (key NULL)
    key INTEGER,              -- a file: inode (link mode, signed 64 bits) or copy serial
    size INTEGER,             -- copy mode: the size and mtime_ns of what was copied
    mtime INTEGER,
    PRIMARY KEY (parent, name)) WITHOUT ROWID;
"""
# name, folder, key, size, mtime of one row
Row = tuple[bytes, int | None, int | None, int | None, int | None]
_WRAP = 1 << 64


class VaultError(Exception):
    """The vault cannot be used; worded for the person who has to fix it."""


# In-flight temp files of the guard, Syncthing and the test sync client, and sync clients'
# own folders: they are renamed or removed by their writer, which is not a deletion.
TEMP_NAMES = (TEMP_PREFIX, ".syncthing.", "~syncthing~", ".syncsim-")


def skipped(rel_dir: Rel, name: str) -> bool:
    """Names the vault never keeps: the guard's own area, temp files, sync clients' folders,
    conflict copies (reconcile.py quarantines those)."""
    if not rel_dir and name == COORDINATION:
        return True
    if name.startswith(TEMP_NAMES) or name in SYNC_MARKERS:
        return True
    return "onflict" in name and parse_conflict_name(name) is not None


def is_artifact(rel: Rel) -> bool:
    """Files under an artifacts folder of a run, logged model or trace (user data of any
    size)."""
    entry = describe(rel)
    return entry.kind is Kind.ARTIFACT and bool(entry.key)


def _enc(name: str) -> bytes:
    """A name as stored: lossless for any str os.scandir returns (undecodable bytes come
    back as lone surrogates, which strict UTF-8, and so sqlite3's TEXT, refuses)."""
    return name.encode("utf-8", "surrogatepass")


def _dec(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def _to_db(n: int) -> int:
    """An inode as SQLite's signed 64-bit INTEGER (some filesystems use all 64 bits)."""
    return n - _WRAP if n >= 1 << 63 else n


def _from_db(n: int) -> int:
    return n + _WRAP if n < 0 else n


def _key_of(row: Row) -> Key | None:
    """The key of a row: None for a folder, the inode, or the copy's [id, size, mtime]."""
    _, _, key, size, mtime = row
    if key is None:
        return None
    if size is None:
        return _from_db(key)
    return [_from_db(key), size, mtime or 0]


# ---- files the vault cannot keep ---------------------------------------------------------------
# Windows' attributes of a cloud file whose data is not on this machine (an online-only
# placeholder of Synology Drive On-demand Sync, OneDrive...): the cloud filter refuses a hard
# link to it, and reading or copying it would download it. Found from the folder listing,
# before any attempt.
FILE_ATTRIBUTE_OFFLINE = 0x1000
FILE_ATTRIBUTE_RECALL_ON_OPEN = 0x40000
FILE_ATTRIBUTE_RECALL_ON_DATA_ACCESS = 0x400000
PLACEHOLDER_ATTRIBUTES = (FILE_ATTRIBUTE_OFFLINE | FILE_ATTRIBUTE_RECALL_ON_OPEN
                          | FILE_ATTRIBUTE_RECALL_ON_DATA_ACCESS)
# The cloud filter's own errors (winerror.h, ERROR_CLOUD_FILE_*): 358 SYNC_ROOT_METADATA_CORRUPT,
# 362 PROVIDER_NOT_RUNNING, 363-366 METADATA_CORRUPT .. PROPERTY_BLOB_CHECKSUM_MISMATCH, 374
# TOO_MANY_PROPERTY_BLOBS, 375 PROPERTY_VERSION_NOT_SUPPORTED, 377-383 NOT_IN_SYNC ..
# VALIDATION_FAILED, 386-398 AUTHENTICATION_FAILED .. (389 UNSUCCESSFUL, 396
# INCOMPATIBLE_HARDLINKS) .. REQUEST_CANCELED, 404 PROVIDER_TERMINATED, 426 REQUEST_TIMEOUT.
# Not the whole range: 359-361, 367-373 (376 NOT_A_CLOUD_FILE), 384-385 and 399-403 are others.
CLOUD_FILE_WINERRORS = frozenset({358, *range(362, 367), 374, 375, *range(377, 384),
                                  *range(386, 399), 404, 426})
ERROR_NOT_SAME_DEVICE = 17  # Windows' EXDEV (Python maps it to errno.EXDEV too)
PLACEHOLDER, OTHER_VOLUME = "online-only placeholder", "on another volume"
UNPROTECTED_MAX = 1000  # files the record names at most (each is also logged once)
PROBES = 100  # store files looked at for one that is not a placeholder (Vault._links_work)
_HAS_ATTRIBUTES = sys.platform == "win32"


def file_attributes(entry: os.DirEntry[str] | Path) -> int:
    """Windows' attributes of a store file (0 elsewhere: no placeholders there), from the
    folder listing (or lstat), never by opening the file. Tests replace it
    (monkeypatch `vault.file_attributes`)."""
    if not _HAS_ATTRIBUTES:
        return 0
    return getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)


def is_placeholder(attributes: int) -> bool:
    """Whether the file's data lives only in the cloud (pure): never read, copied or linked."""
    return bool(attributes & PLACEHOLDER_ATTRIBUTES)


def _error_words(exc: OSError) -> str:
    """An error in words, without the path (the record names the file)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    winerror = getattr(exc, "winerror", None)
    code = f"winerror {winerror}" if winerror else errno.errorcode.get(exc.errno or 0, "")
    return f"{text} ({code})" if code else text


def why_unprotected(attributes: int, exc: OSError | None = None,
                    verb: str = "linked") -> str | None:
    """Why a store file has no second name in the vault, from its attributes and the error
    keeping it raised (pure): "online-only placeholder", "on another volume" (a mount inside
    the store), or "could not be <verb>: <error>". None: nothing is wrong, or the file
    vanished (FileNotFoundError), which the next pass sees as a deletion, not as a file left
    unprotected."""
    if is_placeholder(attributes):
        return PLACEHOLDER
    if exc is None or isinstance(exc, FileNotFoundError):
        return None
    winerror = getattr(exc, "winerror", None)
    if winerror in CLOUD_FILE_WINERRORS:
        return PLACEHOLDER
    if exc.errno == errno.EXDEV or winerror == ERROR_NOT_SAME_DEVICE:
        return OTHER_VOLUME
    return f"could not be {verb}: {_error_words(exc)}"


def unprotected_fix(reason: str) -> str:
    """What to do about files the vault could not keep for `reason` (pure)."""
    if reason == PLACEHOLDER:
        return ("make the store folder 'Always available on this device' (pinned) in Synology "
                "Drive, or 'Always keep on this device' in Windows Explorer: the vault keeps "
                "each file once its data is on this machine, never downloading it itself")
    if reason == OTHER_VOLUME:
        return ("keep the store on one volume: a hard link cannot cross volumes, so move what "
                "is mounted inside the store into it")
    return "the guard's log names each file; the vault tries again at every pass"


def unprotected_groups(record: Mapping[Rel, str],
                       examples: int = 3) -> list[tuple[str, int, list[str]]]:
    """The record as (reason, how many files, the first few of them), the most common
    reason first (pure): the status shows each reason once, with what to do."""
    groups: dict[str, list[Rel]] = {}
    for rel, reason in record.items():
        groups.setdefault(reason, []).append(rel)
    return [(reason, len(rels), ["/".join(r) for r in rels[:examples]])
            for reason, rels in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))]


class Vault:
    def __init__(self, root: Path, store: Path, copy_max_bytes: int) -> None:
        self.root, self.store = Path(root), Path(store)
        self.copy_max_bytes = copy_max_bytes
        self.objects = self.root / "objects"
        self.index_path = self.root / INDEX_NAME
        self.legacy_path = self.root / LEGACY_NAME
        self.mode = LINK
        self.next_id = 1      # copy mode: the next copy's serial
        self.next_folder = 1  # the next folder's id
        self.dirty = False    # changes not committed yet
        self.changes = 0
        self.garbage = 1  # objects no entry names any more (replaced, forgotten); 1: check once
        self.large: set[Rel] = set()  # artifacts not copied (copy mode, above copy_max_bytes)
        # what is neither a folder nor a regular file (symlink, FIFO, socket, device): never
        # followed, opened, kept or deleted; reported once (found by the last full pass)
        self.special: dict[Rel, str] = {}
        self._told: set[tuple[Rel, str]] = set()
        # folders the last restore refused (a symlink, or not a folder): why, in words
        self.refused: dict[Rel, str] = {}
        # store files the vault could not keep (a placeholder, another volume, an error): why,
        # in words; at most UNPROTECTED_MAX (unprotected_more: others were not recorded);
        # dropped once kept or gone. The same names by folder, to find the gone ones.
        self.unprotected: dict[Rel, str] = {}
        self.unprotected_more = False
        self._unprotected_in: dict[Rel, set[str]] = {}
        self._told_more = False
        self.progress: Callable[[], None] = lambda: None  # told of each folder of a pass
        self.pass_folders = 0  # folders the current (or last) full pass has looked at
        self._lock = FileLock(str(self.root / "vault.lock"), timeout=0, mode=0o600)
        # The daemon opens the vault in its main thread, uses it in the vault part's thread
        # (a new one after a restart) and closes it from the main thread: one connection,
        # every use under this lock.
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._db_id: tuple[int, int] | None = None  # (dev, ino) of the file opened

    # ---- opening and saving ----------------------------------------------------------
    def open(self) -> None:
        """Take the vault (one daemon per vault), open the index, pick links or copies."""
        try:
            # the vault holds every byte of the store: private, like the state folder
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.objects.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise VaultError(f"cannot create the vault {self.root}: {exc}; set vault.path to "
                             "a writable local folder") from exc
        try:
            self._lock.acquire()
        except Timeout:
            raise VaultError(f"the vault {self.root} is in use by another guard daemon; give "
                             "each daemon its own vault.path") from None
        try:
            self.mode = LINK if self._links_work() else COPY
            self._open_index()
        except BaseException:
            self._disconnect()
            self._lock.release()
            raise

    def close(self) -> None:
        try:
            self.save(force=True)
        finally:
            self._disconnect()
            self._lock.release()

    def _links_work(self) -> bool:
        """Whether a store file can be hard-linked into the vault (same volume, a filesystem
        with links); probed on a real store file, since the two may sit on different mounts.
        Never on an online-only placeholder: the cloud filter refuses that link whatever the
        volume (of the first PROBES files, the first that is not one)."""
        probe = next((t for t in itertools.islice(self._any_store_file(), PROBES)
                      if not is_placeholder(file_attributes(t.path))), None)
        if probe is None:
            return os.stat(self.root).st_dev == os.stat(self.store).st_dev
        target = Target(self.root, ("objects", f"{TEMP_PREFIX}probe-{uuid.uuid4().hex[:8]}"))
        try:
            safepath.link(probe, target, create=False)
        except OSError:
            return False
        safepath.unlink(target)
        return True

    def _any_store_file(self) -> Iterator[Target]:
        """Regular files of the store (never one behind a symlink)."""
        top = Target(self.store, ())
        for rel, kind in safepath.walk_files(top):
            if kind is None and rel[0] != COORDINATION:
                yield top.child(*rel)

    def _open_index(self) -> None:
        """Open (or create) the database; one SQLite cannot read is set aside and rebuilt;
        one of another mode, version or store is emptied; an old index.json.gz is moved in."""
        try:
            meta = self._connect()
        except (sqlite3.DatabaseError, safeio.NotARegularFile) as exc:
            self._disconnect()
            aside = self._set_aside("unreadable")
            log.warning("vault index %s is unreadable (%s); set aside as %s, rebuilding it "
                        "from the store", self.index_path, exc, aside)
            meta = self._connect()
        if not meta:  # a new database
            self._start_over()
            self._migrate()
            return
        if meta.get("version") != INDEX_VERSION or meta.get("mode") != self.mode:
            log.info("vault index is for mode %s; rebuilding for %s", meta.get("mode"),
                     self.mode)
            self._start_over()
        elif meta.get("store") != str(self.store):
            # Another store (or this one mounted elsewhere): its files must never be "restored"
            # into this store. Start over; the old objects go at the next collect().
            log.warning("vault %s held store %s, not %s; starting a new index", self.root,
                        meta.get("store"), self.store)
            self._start_over()
        else:
            self.next_id = int(meta.get("next_id") or 1)
            self.next_folder = int(meta.get("next_folder") or 1)
        if self.legacy_path.exists():  # left by a migration cut short: the database has it
            safepath.replace_path(self.legacy_path, self.root / (LEGACY_NAME + ".migrated"))

    def _connect(self) -> dict:
        """Connect to index.sqlite (created 0600, never through a symlink) and check it;
        returns its meta table (empty: a new database). sqlite3.DatabaseError: unreadable."""
        target = Target(self.root, (INDEX_NAME,))
        if not os.path.lexists(self.index_path):
            safepath.write_new(target, b"", mode=0o600, create=False, sync=False)
        st = safepath.lstat_regular(target)  # NotARegularFile: a symlink or FIFO put there
        db = sqlite3.connect(self.index_path, isolation_level=None, check_same_thread=False)
        with self._db_lock:
            self._db, self._db_id = db, (st.st_dev, st.st_ino)
            # WAL: a crash (of the daemon or the machine) loses at most the last
            # transactions, never the database; SQLite gives its -wal and -shm files the
            # database's mode
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_size_limit=4194304")
            found = db.execute("PRAGMA quick_check").fetchall()
            if found != [("ok",)]:
                raise sqlite3.DatabaseError("; ".join(str(r[0]) for r in found[:3]))
            db.executescript(SCHEMA)
            return dict(db.execute("SELECT name, value FROM meta").fetchall())

    def _disconnect(self) -> None:
        with self._db_lock:
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error as exc:
                    log.warning("vault index %s: %s", self.index_path, exc)
                self._db = None

    def _set_aside(self, why: str, side_files: bool = True) -> Path:
        """Move the database (and SQLite's side files, which would be read into a new one)
        out of the way: the guard never deletes, its own files included."""
        aside = self.root / f"{INDEX_NAME}.{why}-{time.strftime('%Y%m%d-%H%M%S')}"
        for suffix in ("", *SIDE_FILES) if side_files else ("",):
            try:
                safepath.replace_path(self.root / (INDEX_NAME + suffix),
                                      aside.with_name(aside.name + suffix))
            except FileNotFoundError:
                pass
        return aside

    def _start_over(self) -> None:
        """An empty index for this store and mode (the old objects go at the next collect)."""
        self.next_id = self.next_folder = 1
        self.garbage = 1
        self._write("DELETE FROM entries")
        self.save(force=True)

    def _migrate(self) -> None:
        """Read an index.json.gz of an older version once into the database, then set it
        aside (index.json.gz.migrated)."""
        try:
            with gzip.open(self.legacy_path, "rt", encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError, EOFError) as exc:
            log.warning("vault index %s unreadable (%s); rebuilding it from the store",
                        self.legacy_path, exc)
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        if doc and (doc.get("version") != 1 or doc.get("mode") != self.mode
                    or doc.get("store") != str(self.store)):
            log.info("vault index %s is for mode %s of store %s; rebuilding", self.legacy_path,
                     doc.get("mode"), doc.get("store"))
        elif isinstance(doc.get("tree"), dict):
            self.next_id = int(doc.get("next_id") or 1)
            self._import(TOP, doc["tree"])
            log.info("vault index %s moved into %s", self.legacy_path, self.index_path)
        self.save(force=True)
        safepath.replace_path(self.legacy_path, self.root / (LEGACY_NAME + ".migrated"))

    def _import(self, parent: int, node: dict) -> None:
        stack = [(parent, node)]
        while stack:
            fid, here = stack.pop()
            for name, value in here.items():
                if isinstance(value, dict):
                    child = self._new_folder()
                    self._put(fid, _enc(name), folder=child)
                    stack.append((child, value))
                elif isinstance(value, int):
                    self._put(fid, _enc(name), key=value)
                elif isinstance(value, list) and len(value) == 3:
                    self._put(fid, _enc(name), key=int(value[0]), size=int(value[1]),
                              mtime=int(value[2]))

    def save(self, force: bool = False) -> None:
        """Commit what changed (with the counters); `force`: even when nothing did."""
        if not (self.dirty or force) or self._db is None:
            return
        with self._db_lock:
            self._check_file()
            db = self._conn()
            if not db.in_transaction:
                db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("version", INDEX_VERSION), ("mode", self.mode), ("store", str(self.store)),
                ("next_id", self.next_id), ("next_folder", self.next_folder)])
            db.execute("COMMIT")
        self.dirty = False
        self.changes = 0

    def _check_file(self) -> None:
        """The database file is still the one opened: one removed (or replaced by a file)
        while the daemon runs is written again from the open connection, which still holds
        it all; a folder put in its place is an error to fix."""
        try:
            st: os.stat_result | None = os.lstat(self.index_path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self._db_id:
            return
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "the vault index is a folder now; move it "
                                    "away", str(self.index_path))
        db = self._conn()
        if db.in_transaction:
            db.execute("COMMIT")
        tmp = self.root / f"{TEMP_PREFIX}{INDEX_NAME}-{uuid.uuid4().hex[:8]}"
        safepath.write_new(Target(self.root, (tmp.name,)), b"", mode=0o600, create=False,
                           sync=False)
        copy = sqlite3.connect(tmp)
        try:
            db.backup(copy)
        finally:
            copy.close()
        if st is not None:
            aside = self._set_aside("replaced", side_files=False)  # those are ours
        self._disconnect()  # its -wal and -shm go with it
        safepath.replace_path(tmp, self.index_path)
        log.warning("vault index %s was %s while the daemon ran; written again%s",
                    self.index_path, "removed" if st is None else "replaced",
                    "" if st is None else f" (what was there: {aside})")
        self._connect()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise VaultError(f"the vault {self.root} is not open")
        return self._db

    def _write(self, sql: str, params: tuple = ()) -> None:
        """One change, in the open transaction (begun here); committed every SAVE_BATCH
        changes and at save()."""
        with self._db_lock:
            db = self._conn()
            if not db.in_transaction:
                db.execute("BEGIN")
            db.execute(sql, params)
        self.dirty = True
        self.changes += 1
        if self.changes >= SAVE_BATCH:
            self.save()

    def _put(self, parent: int, name: bytes, folder: int | None = None, key: int | None = None,
             size: int | None = None, mtime: int | None = None) -> None:
        self._write("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                    (parent, name, folder, None if key is None else _to_db(key), size, mtime))

    def _new_folder(self) -> int:
        fid = self.next_folder
        self.next_folder += 1
        return fid

    def _drop_below(self, fid: int) -> None:
        """Remove every row below the folder `fid` (not its own row)."""
        self._write("WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT e.folder FROM "
                    "entries e JOIN sub ON e.parent = sub.id WHERE e.folder IS NOT NULL) "
                    "DELETE FROM entries WHERE parent IN sub", (fid,))

    def _replaced(self, row: Row | None) -> None:
        """`row` gave way to another entry of the same name: its object (and, for a folder,
        everything below it) is garbage now."""
        if row is None:
            return
        self.garbage += 1
        if row[1] is not None:
            self._drop_below(row[1])

    # ---- reading the index ---------------------------------------------------------------
    def _row(self, parent: int, name: str) -> Row | None:
        with self._db_lock:
            return self._conn().execute(
                "SELECT name, folder, key, size, mtime FROM entries WHERE parent = ? AND "
                "name = ?", (parent, _enc(name))).fetchone()

    def _rows(self, parent: int) -> list[Row]:
        with self._db_lock:
            return self._conn().execute(
                "SELECT name, folder, key, size, mtime FROM entries WHERE parent = ?",
                (parent,)).fetchall()

    def _folder_id(self, rel: Rel, create: bool = False) -> int | None:
        """The id of the folder `rel` in the index (None: not a folder there); `create`:
        add the folders missing on the way (a file in the way gives way)."""
        fid = TOP
        for part in rel:
            row = self._row(fid, part)
            if row is None or row[1] is None:
                if not create:
                    return None
                child = self._new_folder()
                self._put(fid, _enc(part), folder=child)
                self._replaced(row)
                fid = child
            else:
                fid = row[1]
        return fid

    def _lookup(self, rel: Rel) -> Row | None:
        if not rel:
            return None
        parent = self._folder_id(rel[:-1])
        return None if parent is None else self._row(parent, rel[-1])

    def top_names(self) -> list[str]:
        """The names the index holds at the top of the store."""
        return [_dec(row[0]) for row in self._rows(TOP)]

    # ---- keeping the store's files ---------------------------------------------------
    def _object(self, key: Key) -> Path:
        return self._object_target(key).path

    def _object_target(self, key: Key) -> Target:
        """Where the object of `key` lives, below the vault root (objects/<bucket>/<name>)."""
        if isinstance(key, list):
            return Target(self.root, ("objects", f"{key[0] & 0xff:02x}", f"c{key[0]:x}"))
        return Target(self.root, ("objects", f"{key & 0xff:02x}", f"{key:x}"))

    def sync(self, rel: Rel = (), recursive: bool = True) -> list[Rel]:
        """Keep every file under store/`rel` (new or replaced ones get a new link or copy);
        return the paths the vault knows there that are gone from the store."""
        if not self.store.joinpath(*rel).is_dir():  # gone already: no empty entries for it
            return [rel] if rel and self.knows(rel) else []
        if not rel:
            self.large.clear()
            self.special.clear()
            self.unprotected_more = False  # the pass finds them again while the record is full
            self.pass_folders = 0
        missing: list[Rel] = []
        fid = self._folder_id(rel, create=True)
        assert fid is not None
        self._sync_dir(str(self.store.joinpath(*rel)), rel, fid, recursive, missing)
        return missing

    def _sync_dir(self, path: str, rel: Rel, fid: int, recursive: bool,
                  missing: list[Rel]) -> None:
        """One folder: its listing against its rows; only the differences are written."""
        self.progress()
        self.pass_folders += 1
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            missing.append(rel)
            self._gone_below(rel)
            return
        except OSError as exc:
            log.warning("vault: cannot list %s: %s", path, exc)
            return
        known = {bytes(row[0]): row for row in self._rows(fid)}
        seen = set()
        for entry in entries:
            name = entry.name
            if skipped(rel, name):
                continue
            raw = _enc(name)
            seen.add(raw)
            row = known.get(raw)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if row is None or row[1] is None:
                        child = self._new_folder()
                        self._put(fid, raw, folder=child)
                        self._replaced(row)
                        self._sync_dir(entry.path, rel + (name,), child, True, missing)
                    elif recursive:
                        self._sync_dir(entry.path, rel + (name,), row[1], True, missing)
                elif entry.is_file(follow_symlinks=False):
                    self._keep(entry, rel + (name,), fid, raw, row)
                else:  # there, so not a deletion; but nothing the vault keeps or follows
                    self._not_regular(rel + (name,), entry)
            except OSError as exc:  # vanished between listing and linking: the next pass sees
                log.debug("vault: %s: %s", entry.path, exc)
        gone = [rel + (_dec(raw),) for raw in known if raw not in seen]
        missing.extend(gone)
        if self._unprotected_in:  # files it could not keep that are gone now
            for name in [n for n in self._unprotected_in.get(rel, ()) if _enc(n) not in seen]:
                self._protected(rel + (name,))
            for lost in gone:
                self._gone_below(lost)

    def _not_regular(self, rel: Rel, entry: os.DirEntry) -> None:
        kind = safeio.kind_of(entry.stat(follow_symlinks=False).st_mode) or "special file"
        self.special[rel] = kind
        if (rel, kind) not in self._told:
            self._told.add((rel, kind))
            log.warning("vault: %s is a %s, not a regular file: not kept, never followed",
                        safeio.printable("/".join(rel)), kind)

    def _keep(self, entry: os.DirEntry, rel: Rel, fid: int, raw: bytes,
              row: Row | None) -> None:
        """Link (or copy) a new or replaced store file; one it cannot keep is recorded in
        `unprotected` (an online-only placeholder before any attempt: never read)."""
        if self.mode == LINK:
            ino = entry.inode()
            if row is not None and row[2] == _to_db(ino) and row[3] is None:
                return  # known, and the same file
            if not self._attempt(entry, rel, LINK,
                                 lambda: self._link(Target(self.store, rel), ino)):
                return
            self._put(fid, raw, key=ino)
        else:
            st = entry.stat(follow_symlinks=False)
            current = None if row is None else _key_of(row)
            if isinstance(current, list) and current[1:] == [st.st_size, st.st_mtime_ns]:
                return
            if is_artifact(rel) and st.st_size > self.copy_max_bytes:
                self.large.add(rel)
                return
            key = [self.next_id, st.st_size, st.st_mtime_ns]
            self.next_id += 1
            if not self._attempt(entry, rel, COPY, lambda: self._copy(
                    Target(self.store, rel), self._object_target(key))):
                return
            self._put(fid, raw, key=key[0], size=key[1], mtime=key[2])
        self._replaced(row)
        if self.unprotected:
            self._protected(rel)

    def _attempt(self, entry: os.DirEntry, rel: Rel, mode: str,
                 keep: Callable[[], None]) -> bool:
        """Run `keep` (the link or copy of one file) unless the file is an online-only
        placeholder; True when it is kept. A file it cannot keep is recorded (why_unprotected)
        and False returned; one that vanished is not recorded: its FileNotFoundError goes up,
        as do a symlink or FIFO swapped in and a symlinked folder (the next pass says what)."""
        attributes = file_attributes(entry)
        if is_placeholder(attributes):
            self._unprotect(rel, why_unprotected(attributes))
            return False
        try:
            keep()
        except (FileNotFoundError, safeio.UnsafeFile, safepath.Escape):
            self._protected(rel)
            raise
        except OSError as exc:
            self._unprotect(rel, why_unprotected(attributes, exc,
                                                 "linked" if mode == LINK else "copied"))
            return False
        return True

    def _unprotect(self, rel: Rel, reason: str | None) -> None:
        """Record a store file the vault could not keep (a WARNING once per file); past
        UNPROTECTED_MAX files only `unprotected_more` is set (and said once)."""
        if reason is None:
            self._protected(rel)
            return
        if self.unprotected.get(rel) == reason:
            return
        if rel not in self.unprotected and len(self.unprotected) >= UNPROTECTED_MAX:
            self.unprotected_more = True
            if not self._told_more:
                self._told_more = True
                log.warning("vault: more than %d store files could not be kept; the others "
                            "are not listed", UNPROTECTED_MAX)
            return
        self.unprotected[rel] = reason
        self._unprotected_in.setdefault(rel[:-1], set()).add(rel[-1])
        log.warning("vault: %s is not kept (%s): deleting it cannot be undone; %s",
                    safeio.printable("/".join(rel)), reason, unprotected_fix(reason))

    def _protected(self, rel: Rel) -> None:
        """`rel` is kept now, or gone: no longer unprotected."""
        if self.unprotected.pop(rel, None) is None:
            return
        names = self._unprotected_in.get(rel[:-1])
        if names is not None:
            names.discard(rel[-1])
            if not names:
                del self._unprotected_in[rel[:-1]]

    def _gone_below(self, rel: Rel) -> None:
        """The folder `rel` is gone: nothing below it is unprotected any more."""
        n = len(rel)
        for folder in [f for f in self._unprotected_in if len(f) >= n and f[:n] == rel]:
            for name in list(self._unprotected_in.get(folder, ())):
                self._protected(folder + (name,))

    def unprotected_summary(self, examples: int = 3) -> list[tuple[str, int, list[str]]]:
        """(reason, how many, a few paths) of the files the vault could not keep; safe to
        call from another thread than the vault's (the record is copied first)."""
        return unprotected_groups(dict(self.unprotected), examples)

    def _link(self, src: Target, ino: int) -> None:
        """Hard-link the store file `src` as the object of `ino` (never a symlink or what is
        behind a symlinked folder: safepath refuses both)."""
        obj = self._object_target(ino)
        try:
            safepath.link(src, obj)
        except FileExistsError:
            there = safepath.lstat(obj)
            if (there.st_dev, there.st_ino) == _dev_ino(safepath.lstat(src)):
                return
            tmp = obj.parent.child(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}")  # stale: replace
            safepath.link(src, tmp)
            safepath.replace(tmp, obj)

    @staticmethod
    def _copy(src: Target, obj: Target) -> None:
        tmp = obj.parent.child(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}")
        safepath.copy_new(src, tmp)  # a FIFO or symlink swapped in is refused, not read
        safepath.replace(tmp, obj)

    # ---- what is known, and putting it back ------------------------------------------
    def entries_under(self, rel: Rel) -> Iterator[tuple[Rel, Key | None]]:
        """(path, key) of every kept folder (key None) and file at or below `rel`, each folder
        before what it holds. Read one folder at a time: no cursor stays open in between."""
        if rel:
            row = self._lookup(rel)
            if row is None:
                return
            if row[1] is None:
                yield rel, _key_of(row)
                return
            top = row[1]
        else:
            top = TOP
        stack: list[tuple[Rel, int]] = [(rel, top)]
        while stack:
            here, fid = stack.pop()
            yield here, None
            for row in self._rows(fid):
                path = here + (_dec(row[0]),)
                if row[1] is not None:
                    stack.append((path, row[1]))
                else:
                    yield path, _key_of(row)

    def files_under(self, rel: Rel) -> Iterator[tuple[Rel, Key]]:
        """(path, key) of every kept file at or below `rel`."""
        for path, key in self.entries_under(rel):
            if key is not None:
                yield path, key

    def knows(self, rel: Rel) -> bool:
        """Whether the vault holds `rel`: a file, or a folder (an empty one too)."""
        return self._lookup(rel) is not None

    def created(self, unit: Unit) -> int | None:
        """The creation time in the vault's copy of a unit's meta.yaml (tombstones name it)."""
        row = self._lookup(unit.meta)
        key = None if row is None else _key_of(row)
        if key is None:
            return None
        return created_of(read_doc(self._object(key)))

    def restore(self, rel: Rel) -> int:
        """Put back every kept folder (empty ones too) and file at or below `rel` that is
        missing from the store; returns how many files. Never replaces what is there, never
        writes outside the store: a folder below the store that is a symlink (or a file where
        a folder was) is refused with what is below it (`refused`, logged once), the rest is
        put back."""
        count = 0
        self.refused = {}
        for path, key in list(self.entries_under(rel)):
            if not path or any(safepath.bad_name(p) for p in path):
                continue
            if any(path[:n] in self.refused for n in range(1, len(path) + 1)):
                continue
            dest = Target(self.store, path)
            try:
                if key is None:
                    if not safepath.exists(dest):
                        mkdirs_in_store(self.store, dest.path)
                    continue
                if safepath.exists(dest):
                    continue
                count += self._put_back(key, dest)
            except safepath.Escape as exc:
                self._refuse(exc)
        return count

    def _put_back(self, key: Key, dest: Target) -> int:
        """Link (or copy) one object back to `dest`; 1 when done."""
        obj = self._object_target(key)
        try:
            if isinstance(key, int):  # link mode
                safepath.link(obj, dest)
            else:
                tmp = dest.parent.child(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}")
                safepath.copy_new(obj, tmp, mtime_ns=key[2])
                try:
                    safepath.link(tmp, dest, create=False)
                finally:
                    safepath.unlink(tmp)
        except FileExistsError:
            return 0
        except FileNotFoundError:
            log.warning("vault has no object for %s; it cannot be restored",
                        safeio.printable("/".join(dest.rel)))
            return 0
        except safeio.NotARegularFile as exc:
            log.warning("vault object for %s is not a regular file (%s); not restored",
                        safeio.printable("/".join(dest.rel)), exc.kind)
            return 0
        return 1

    def _refuse(self, exc: safepath.Escape) -> None:
        rel = safepath.rel_of(self.store, exc.path)
        where = rel if rel else ("",)
        self.refused[where] = exc.reason
        if (where, exc.reason) not in self._told:
            self._told.add((where, exc.reason))
            log.error("vault: not restored below %s: it %s (outside the store is never "
                      "written)", safeio.printable("/".join(where)), exc.reason)

    def keep_in_trash(self, rel: Rel, batch: Path) -> int:
        """Give every kept folder and file at or below `rel` a name in a trash batch (before
        forgetting); returns how many files."""
        count = 0
        top = Target(Path(batch).parent.parent, (Path(batch).parent.name, Path(batch).name))
        for path, key in self.entries_under(rel):
            target = top.child(*path)
            try:
                if key is None:
                    safepath.mkdirs(target)
                    continue
                link_or_copy(self._object_target(key), target)
                count += 1
            except (FileNotFoundError, safeio.NotARegularFile):
                continue
        return count

    def forget(self, rel: Rel) -> None:
        """Drop `rel` (and all below it) from the index (its objects go at the next
        collect())."""
        if not rel:
            return
        with self._db_lock:
            parent = self._folder_id(rel[:-1])
            row = None if parent is None else self._row(parent, rel[-1])
            if parent is None or row is None:
                return
            self._replaced(row)
            self._write("DELETE FROM entries WHERE parent = ? AND name = ?",
                        (parent, _enc(rel[-1])))

    def collect(self) -> int:
        """Remove objects no index entry names (old versions of replaced files, forgotten
        ones); returns how many. A no-op when nothing was replaced or forgotten. The keys
        come sorted by bucket, so one bucket's names are in memory at a time."""
        if not self.garbage:
            return 0
        self.garbage = 0
        try:
            buckets = {e.name for e in os.scandir(self.objects)
                       if e.is_dir(follow_symlinks=False)}
        except OSError:
            return 0
        removed = 0
        with self._db_lock:
            rows = self._conn().execute(
                "SELECT key, size FROM entries WHERE key IS NOT NULL ORDER BY key & 255")
            groups = itertools.groupby(rows, key=lambda r: r[0] & 0xff)
            group = next(groups, None)
            for number in range(256):
                names: set[str] = set()
                if group is not None and group[0] == number:
                    names = {self._object_target(_from_db(k) if size is None
                                                 else [_from_db(k), size, 0]).rel[-1]
                             for k, size in group[1]}
                    group = next(groups, None)
                bucket = f"{number:02x}"
                if bucket in buckets:
                    buckets.discard(bucket)
                    removed += self._sweep(bucket, names)
        for bucket in buckets:  # not a bucket the vault makes: nothing in it is named
            removed += self._sweep(bucket, set())
        return removed

    def _sweep(self, bucket: str, names: set[str]) -> int:
        """Remove the objects of one bucket that are not in `names`."""
        self.progress()
        try:
            found = safepath.entries(Target(self.root, ("objects", bucket)))
        except OSError:
            return 0
        removed = 0
        for name, _ in found:
            if name not in names:
                try:
                    safepath.unlink(Target(self.root, ("objects", bucket, name)))
                    removed += 1
                except OSError:
                    pass
        return removed

    def stats(self) -> dict:
        with self._db_lock:
            files = self._conn().execute(
                "SELECT count(*) FROM entries WHERE key IS NOT NULL").fetchone()[0]
        return {"path": str(self.root), "mode": self.mode, "files": files,
                "too_large": len(self.large), "unprotected": len(self.unprotected),
                "unprotected_more": self.unprotected_more,
                "unprotected_examples": {"/".join(rel): why for rel, why
                                         in itertools.islice(dict(self.unprotected).items(), 3)}}

    @property
    def too_large(self) -> int:
        return len(self.large)

    @property
    def not_regular(self) -> int:
        """Symlinks, FIFOs, sockets and devices in the store (the vault leaves them alone)."""
        return len(self.special)


def index_holds(root: Path, rel: Rel) -> bool:
    """Whether the index saved in the vault folder `root` holds `rel` (a file or a folder):
    read-only, beside a daemon that has the vault open (tests, diagnostics)."""
    path = Path(root) / INDEX_NAME
    if not path.is_file() or not rel:
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        fid: int | None = TOP
        for part in rel:
            if fid is None:
                return False
            row = db.execute("SELECT folder FROM entries WHERE parent = ? AND name = ?",
                             (fid, _enc(part))).fetchone()
            if row is None:
                return False
            fid = row[0]
        return True
    except sqlite3.Error:
        return False
    finally:
        db.close()


def _dev_ino(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def unit_of_meta(rel: Rel) -> Rel:
    """The folder to keep when its meta.yaml changed: the unit folder itself."""
    return rel[:-1] if rel and rel[-1] == META else rel
