"""The vault: a local, unsynced second name for every file of the store, to put deletions back.

Layout under the vault folder (vault.path, default state_dir/vault, never inside the store):
    objects/<bucket>/<key>   one hard link per store file (key: its inode number, in hex), or,
                             where hard links are impossible, a copy (key: c<serial>)
    index.json.gz            the store's folders as nested objects (an empty folder too),
                             each kept file in its folder -> its key
    trash/<batch>/<path>     what was removed on purpose (guardctl gc, a registry deletion),
                             kept gc.retention_days; RECORD.json says why
A hard link costs one directory entry, not a copy of the data, and it follows in-place writes
(metric appends); a file MLflow replaces by rename gets a new inode, which the vault links
again. Objects are named by inode rather than mirroring the store's folders because the
store's 60,000 folders would cost more than every link together (4 KB per folder on ext4).
The index keeps folders as well as files because MLflow needs them: a run folder without its
empty `params/` or `artifacts/` is "not found". A restore recreates the unit's folders, then
links its files back. (Every index ever written held folders this way: no conversion.)
The daemon is the only writer of the index; `guardctl gc` and the server only add to trash/.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, overload

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
# A kept file in the index: its inode (link mode: the object is a hard link to it), or
# [id, size, mtime_ns] (copy mode). An index of the other mode is rebuilt on load.
Key = int | list[int]
INDEX_VERSION = 1


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


class Vault:
    def __init__(self, root: Path, store: Path, copy_max_bytes: int) -> None:
        self.root, self.store = Path(root), Path(store)
        self.copy_max_bytes = copy_max_bytes
        self.objects = self.root / "objects"
        self.index_path = self.root / "index.json.gz"
        self.mode = LINK
        self.tree: dict = {}
        self.next_id = 1
        self.dirty = False
        self.garbage = 1  # objects no entry names any more (replaced, forgotten); 1: check once
        self.large: set[Rel] = set()  # artifacts not copied (copy mode, above copy_max_bytes)
        # what is neither a folder nor a regular file (symlink, FIFO, socket, device): never
        # followed, opened, kept or deleted; reported once (found by the last full pass)
        self.special: dict[Rel, str] = {}
        self._told: set[tuple[Rel, str]] = set()
        # folders the last restore refused (a symlink, or not a folder): why, in words
        self.refused: dict[Rel, str] = {}
        self.progress: Callable[[], None] = lambda: None  # told of each folder of a pass
        self._lock = FileLock(str(self.root / "vault.lock"), timeout=0, mode=0o600)

    # ---- opening and saving ----------------------------------------------------------
    def open(self) -> None:
        """Take the vault (one daemon per vault), load the index, pick links or copies."""
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
            self._load()
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        self.save(force=True)
        self._lock.release()

    def _links_work(self) -> bool:
        """Whether a store file can be hard-linked into the vault (same volume, a filesystem
        with links); probed on a real store file, since the two may sit on different mounts."""
        probe = next(self._any_store_file(), None)
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

    def _load(self) -> None:
        try:
            with gzip.open(self.index_path, "rt", encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError, EOFError) as exc:
            log.warning("vault index %s unreadable (%s); rebuilding it from the store",
                        self.index_path, exc)
            return
        if doc.get("version") != INDEX_VERSION or doc.get("mode") != self.mode:
            log.info("vault index is for mode %s; rebuilding for %s", doc.get("mode"), self.mode)
            self.garbage = 1
            return
        if doc.get("store") != str(self.store):
            # Another store (or this one mounted elsewhere): its files must never be "restored"
            # into this store. Start over; the old objects go at the next collect().
            log.warning("vault %s held store %s, not %s; starting a new index", self.root,
                        doc.get("store"), self.store)
            self.garbage = 1
            return
        self.tree = doc.get("tree") or {}
        self.next_id = int(doc.get("next_id") or 1)

    def save(self, force: bool = False) -> None:
        if not (self.dirty or force):
            return
        doc = {"version": INDEX_VERSION, "mode": self.mode, "store": str(self.store),
               "next_id": self.next_id, "tree": self.tree}
        data = gzip.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"),
                             compresslevel=6)
        safepath.write_atomic(Target(self.root, (self.index_path.name,)), data, mode=0o600)
        self.dirty = False

    # ---- keeping the store's files ---------------------------------------------------
    @overload
    def _node(self, rel: Rel, create: Literal[True]) -> dict: ...
    @overload
    def _node(self, rel: Rel, create: bool = False) -> dict | None: ...

    def _node(self, rel: Rel, create: bool = False) -> dict | None:
        node = self.tree
        for part in rel:
            child = node.get(part)
            if not isinstance(child, dict):
                if not create:
                    return None
                child = node[part] = {}
            node = child
        return node

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
        node = self._node(rel, create=True)
        missing: list[Rel] = []
        self._sync_dir(self.store.joinpath(*rel), rel, node, recursive, missing)
        return missing

    def _sync_dir(self, path: Path, rel: Rel, node: dict, recursive: bool,
                  missing: list[Rel]) -> None:
        self.progress()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            missing.append(rel)
            return
        except OSError as exc:
            log.warning("vault: cannot list %s: %s", path, exc)
            return
        seen = set()
        for entry in entries:
            name = entry.name
            if skipped(rel, name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    seen.add(name)
                    child = node.get(name)
                    if not isinstance(child, dict):
                        child = node[name] = {}
                        self.dirty = True
                        self._sync_dir(Path(entry.path), rel + (name,), child, True, missing)
                    elif recursive:
                        self._sync_dir(Path(entry.path), rel + (name,), child, True, missing)
                elif entry.is_file(follow_symlinks=False):
                    seen.add(name)
                    self._keep(entry, rel + (name,), node)
                else:  # there, so not a deletion; but nothing the vault keeps or follows
                    seen.add(name)
                    self._not_regular(rel + (name,), entry)
            except OSError as exc:  # vanished between listing and linking: the next pass sees
                log.debug("vault: %s: %s", entry.path, exc)
        missing.extend(rel + (name,) for name in node if name not in seen)

    def _not_regular(self, rel: Rel, entry: os.DirEntry) -> None:
        kind = safeio.kind_of(entry.stat(follow_symlinks=False).st_mode) or "special file"
        self.special[rel] = kind
        if (rel, kind) not in self._told:
            self._told.add((rel, kind))
            log.warning("vault: %s is a %s, not a regular file: not kept, never followed",
                        safeio.printable("/".join(rel)), kind)

    def _keep(self, entry: os.DirEntry, rel: Rel, node: dict) -> None:
        name = rel[-1]
        current = node.get(name)
        if self.mode == LINK:
            ino = entry.inode()
            if current == ino:
                return
            self._link(Target(self.store, rel), ino)
            node[name] = ino
            self.garbage += current is not None
        else:
            st = entry.stat(follow_symlinks=False)
            if isinstance(current, list) and current[1:] == [st.st_size, st.st_mtime_ns]:
                return
            if is_artifact(rel) and st.st_size > self.copy_max_bytes:
                self.large.add(rel)
                return
            key = [self.next_id, st.st_size, st.st_mtime_ns]
            self.next_id += 1
            self._copy(Target(self.store, rel), self._object_target(key))
            node[name] = key
            self.garbage += current is not None
        self.dirty = True

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
        before what it holds."""
        parent = self._node(rel[:-1]) if rel else self.tree
        if parent is None:
            return
        top = parent.get(rel[-1]) if rel else parent
        if top is None:
            return
        stack: list[tuple[Rel, dict | Key]] = [(rel, top)]
        while stack:
            here, value = stack.pop()
            if isinstance(value, dict):
                yield here, None
                stack.extend((here + (k,), v) for k, v in value.items())
            else:
                yield here, value

    def files_under(self, rel: Rel) -> Iterator[tuple[Rel, Key]]:
        """(path, key) of every kept file at or below `rel`."""
        for path, key in self.entries_under(rel):
            if key is not None:
                yield path, key

    def knows(self, rel: Rel) -> bool:
        """Whether the vault holds `rel`: a file, or a folder (an empty one too)."""
        return bool(rel) and next(self.entries_under(rel), None) is not None

    def created(self, unit: Unit) -> int | None:
        """The creation time in the vault's copy of a unit's meta.yaml (tombstones name it)."""
        found = dict(self.files_under(unit.meta))
        key = found.get(unit.meta)
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
        """Drop `rel` from the index (its objects go at the next collect())."""
        parent = self._node(rel[:-1])
        if parent is not None and parent.pop(rel[-1], None) is not None:
            self.dirty = True
            self.garbage += 1

    def collect(self) -> int:
        """Remove objects no index entry names (old versions of replaced files, forgotten
        ones); returns how many. A no-op when nothing was replaced or forgotten."""
        if not self.garbage:
            return 0
        self.garbage = 0
        names = set()
        for _, key in self.files_under(()):
            names.add(self._object(key).name)
        removed = 0
        try:
            buckets = [e.name for e in os.scandir(self.objects)
                       if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for bucket in buckets:
            self.progress()
            try:
                found = safepath.entries(Target(self.root, ("objects", bucket)))
            except OSError:
                continue
            for name, _ in found:
                if name not in names:
                    try:
                        safepath.unlink(Target(self.root, ("objects", bucket, name)))
                        removed += 1
                    except OSError:
                        pass
        return removed

    def stats(self) -> dict:
        files = sum(1 for _ in self.files_under(()))
        return {"path": str(self.root), "mode": self.mode, "files": files,
                "too_large": len(self.large)}

    @property
    def too_large(self) -> int:
        return len(self.large)

    @property
    def not_regular(self) -> int:
        """Symlinks, FIFOs, sockets and devices in the store (the vault leaves them alone)."""
        return len(self.special)


def _dev_ino(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def unit_of_meta(rel: Rel) -> Rel:
    """The folder to keep when its meta.yaml changed: the unit folder itself."""
    return rel[:-1] if rel and rel[-1] == META else rel
