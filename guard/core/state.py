"""The local state folder: the only place besides the store the daemon writes to.

Layout: daemon.lock (one daemon per state folder), status.json (what `guardctl status` reads),
pids.json (the server tree, to end orphans after a crash), control.json (requests from
`guardctl stop|restart`), logs/ (rotating logs), journal/ (what the guard changed),
quarantine/, locks/ and vault/ (unless vault.path puts the vault elsewhere). JSON files are
replaced atomically so a reader never sees half a file.

The folder is private (POSIX): created 0700 with files 0600 whatever the umask, because the
daemon acts on what it reads there (control.json stops it, pids.json names processes to end).
An existing folder of the daemon's user with looser modes is tightened (and the log says so);
one owned by another user is refused. control.json and pids.json are obeyed only if they are
regular files of the daemon's user that nobody else may write. Windows has no POSIX owners
(no os.getuid): there the checks are skipped and the folder's ACLs are what they are.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from guard.core import safepath
from guard.core.layout import TEMP_PREFIX
from guard.core.logs import log_early
from guard.core.tempfiles import discard

log = logging.getLogger("guard.state")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
# The folders made private at start (vault/: the vault's default place).
PRIVATE_FOLDERS = ("logs", "journal", "quarantine", "locks", "vault")
# Their files tightened at start (not vault/ or quarantine/: their files are, or copy, store
# files; a hard link shares its mode with the store's file).
TIGHTENED_FILES = ("logs", "journal", "locks")


def daemon_uid() -> int | None:
    """The uid whose state folder this is; None on Windows, where the POSIX checks are off."""
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def file_problem(name: str, uid: int, mode: int, me: int) -> str | None:
    """Why a file the daemon acts on (control.json, pids.json) must not be trusted, or None
    (pure: its owner and mode from a stat, and the daemon's uid)."""
    if not stat.S_ISREG(mode):
        return f"{name} is not a regular file"
    if uid not in (me, 0):  # root may ask (`sudo guardctl stop`); it could anyway
        return f"{name} is owned by uid {uid}, not by the daemon's user (uid {me})"
    if mode & 0o022:
        return f"{name} is writable by group or others (mode {stat.S_IMODE(mode):04o})"
    return None


def folder_verdict(uid: int, mode: int, me: int) -> str:
    """'ok', 'tighten' (the daemon's own, with group/other bits) or 'refuse' (another user's,
    so someone else controls what the daemon reads) for the state folder (pure)."""
    if uid != me:
        return "refuse"
    return "tighten" if stat.S_IMODE(mode) & 0o077 else "ok"


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _tighten(path: Path, mode: int, me: int) -> bool:
    """chmod the daemon's own `path` (never through a symlink) to `mode` if it has more bits;
    True if it did."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode) or st.st_uid != me or not stat.S_IMODE(st.st_mode) & 0o077:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    return True


def write_json_atomic(path: Path, data: Any, owner: int | None = None) -> None:
    """Write via a temp file in the same folder and rename over the target, so a reader (or a
    sync client) never sees half a file. `owner`: the uid to give the file (root writing into
    another user's state folder)."""
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        # 0600 whatever the umask: what lands in the state folder is the daemon's alone
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     PRIVATE_FILE)
        with open(fd, "w", encoding="utf-8") as fh:
            # ASCII only: a non-UTF-8 file name (lone surrogates) becomes a \udcNN escape that
            # json.loads gives back as the same string, where UTF-8 output would raise
            json.dump(data, fh, indent=2, sort_keys=True, ensure_ascii=True)
            fh.flush()
            if owner is not None:
                os.fchown(fh.fileno(), owner, -1)
            os.fsync(fh.fileno())
        safepath.replace_path(tmp, path)  # Windows: retried while a reader holds it open
    except BaseException as exc:
        discard(tmp)  # a full or read-only disk leaves no temp file behind
        if isinstance(exc, OSError) and not isinstance(exc, safepath.HeldOpen) \
                and exc.errno is not None and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file
        raise


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or unreadable (e.g. mid-replace on Windows)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_trusted_json(path: Path) -> tuple[Any | None, str | None]:
    """(the file's JSON or None, why it is refused or None): a file the daemon acts on is read
    only if `file_problem` finds nothing (checked on the open file: no swap in between; no
    symlink followed). On Windows just `read_json`."""
    me = daemon_uid()
    if me is None:
        return read_json(path), None
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        return None, None
    except OSError:
        if os.path.islink(path):  # O_NOFOLLOW refused it
            return None, f"{path.name} is a symlink"
        return None, None
    with open(fd, encoding="utf-8") as fh:
        st = os.fstat(fh.fileno())
        problem = file_problem(path.name, st.st_uid, st.st_mode, me)
        if problem is not None:
            return None, problem
        try:
            return json.load(fh), None
        except (OSError, ValueError):
            return None, None


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    lock = property(lambda self: self.root / "daemon.lock")
    status = property(lambda self: self.root / "status.json")
    pids = property(lambda self: self.root / "pids.json")
    control = property(lambda self: self.root / "control.json")
    logs = property(lambda self: self.root / "logs")
    guard_log = property(lambda self: self.root / "logs" / "guard.log")
    server_log = property(lambda self: self.root / "logs" / "mlflow-server.log")
    journals = property(lambda self: self.root / "journal")
    rewrite_journal = property(lambda self: self.root / "journal" / "rewrites.jsonl")
    conflict_journal = property(lambda self: self.root / "journal" / "conflicts.jsonl")
    # the model versions this host's server created (guard.app), for telling renumberings
    registration_journal = property(lambda self: self.root / "journal" / "registrations.jsonl")
    quarantine = property(lambda self: self.root / "quarantine")
    vault_journal = property(lambda self: self.root / "journal" / "vault.jsonl")
    # the requests the guard's server refused (guard.app), for `guardctl status` and the
    # status page: MLflow's UI may show only "Something went wrong"; kept small (pruned)
    refusal_journal = property(lambda self: self.root / "journal" / "refusals.jsonl")

    locks = property(lambda self: self.root / "locks")

    def create(self) -> list[str]:
        """Make the folder (private, see the module docstring) or check and tighten it;
        returns what was tightened, which is also logged. OSError when it cannot be made or
        is another user's."""
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the state folder {self.root}: {exc}; "
                          "set state_dir to a writable local folder") from exc
        me = daemon_uid()
        if me is None:
            for name in PRIVATE_FOLDERS:
                (self.root / name).mkdir(exist_ok=True)
            return []
        st = os.stat(self.root)
        if folder_verdict(st.st_uid, st.st_mode, me) == "refuse":
            raise OSError(
                f"the state folder {self.root} belongs to {_owner_name(st.st_uid)}, not to the "
                f"daemon's user {_owner_name(me)}: its owner could stop the daemon or name "
                "processes for it to end. Use a state_dir of your own (a new folder is made "
                f"private), or, if that folder is meant for this user, `chown -R {me} "
                f"{self.root}`")
        notes = []
        try:
            if _tighten(self.root, PRIVATE_DIR, me):
                notes.append(f"the state folder {self.root} was open to other users (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); made it 0700")
            for name in PRIVATE_FOLDERS:
                folder = self.root / name
                folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
                if _tighten(folder, PRIVATE_DIR, me):
                    notes.append(f"made {folder} private (0700)")
            fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         PRIVATE_FILE)
            os.close(fd)
            files = [self.lock, self.status, self.pids, self.control]
            for name in TIGHTENED_FILES:
                try:
                    files += [p for p in (self.root / name).iterdir()]
                except OSError:
                    pass
            loose = [p for p in files if _tighten(p, PRIVATE_FILE, me)]
        except OSError as exc:
            raise OSError(f"cannot make the state folder {self.root} private: {exc}; "
                          "set state_dir to a local folder of the daemon's user") from exc
        if loose:
            notes.append(f"made {len(loose)} file(s) in the state folder private (0600): "
                         + ", ".join(str(p.relative_to(self.root)) for p in loose[:10]))
        for note in notes:
            log_early(log, logging.WARNING, note)
        return notes

    def request(self, command: str) -> str:
        """Leave a request for the running daemon (works the same on every platform)."""
        token = uuid.uuid4().hex
        write_json_atomic(self.control, {"command": command, "id": token, "at": time.time()},
                          owner=self.owner_for_requests())
        return token

    def owner_for_requests(self) -> int | None:
        """The uid a request must belong to for the daemon to read it: the folder's owner when
        root writes into another user's folder (a root-owned 0600 file would be unreadable to
        the daemon); None otherwise."""
        if daemon_uid() != 0:
            return None
        try:
            uid = os.stat(self.root).st_uid
        except OSError:
            return None
        return uid if uid != 0 else None

    def take_request(self) -> dict | None:
        """Read and remove a pending request, if any; one that is not the daemon's user's own
        (`file_problem`) is removed unread and logged, never obeyed."""
        data, problem = read_trusted_json(self.control)
        if problem is not None:
            log.error("refusing %s: %s; the request is not obeyed (only the daemon's user may "
                      "ask it to stop or restart; keep the state folder private, mode 0700)",
                      self.control, problem)
        elif data is None:
            return None
        try:
            self.control.unlink()
        except OSError:
            pass
        return data if isinstance(data, dict) and problem is None else None
