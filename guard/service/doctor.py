"""`guardctl doctor`: can the guard run on this machine, and will it run well?

The setup problems of a synced store show up late and far from their cause: an unmounted drive
turns into a fresh store that syncs over the real one, a network filesystem hides other
machines' writes from file events, clocks that disagree shorten the cross-machine leases. The
doctor looks for them before `guardctl run`, and writes nothing.

The checks are pure functions over plain facts (the dataclasses below), each returning a
Finding; `gather` is the thin shell that collects the facts. The facts a test cannot change on
a shared machine (the inotify limit, the process list, the mounts) come from `Probes`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata, util
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from guard.core.config import Config, ConfigError, WatchMode, find_config_file
from guard.core.layout import TRASH
from guard.core.records import from_json
from guard.core.redact import redact
from guard.core.state import StateDir, read_json
from guard.core.store import SYNC_MARKERS, StoreState, inspect_store
from guard.core.watch import watched_folders
from guard.core.words import count
from guard.protection.restorer import Unprotected, VaultFigures
from guard.protection.trash import TRASH as VAULT_TRASH
from guard.service import exposure
from guard.service.exposure import ExposureFacts
from guard.supervision.processes import (
    LOCAL_FOLDERS,
    classify,
    orphans,
    recorded_refs,
    running_daemon_pid,
    served_store,
    server_line,
    server_trees,
    snapshot,
)
from guard.supervision.server import port_bindable
from guard.sync.peers import read_with_arrival
from guard.sync.quarantine import BEFORE as QUARANTINE_SUFFIX

OK, WARN, FAIL = "ok", "warn", "fail"
OFF = "off"  # the watch mode when path rewriting, the one user of file events, is off
LABELS = {OK: "ok", WARN: "WARN", FAIL: "FAIL"}

MLFLOW_RANGE = ((3, 0), (4,))  # pyproject: mlflow>=3.0,<4
APP_GROUP, APP_NAME, APP_VALUE = "mlflow.app", "guard", "guard.app:create_app"

# Executable names (lowercase, without .exe/.app) a sync client's processes start with.
SYNC_CLIENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Synology Drive", ("cloud-drive-", "synologydrive", "synology-drive", "synology drive")),
    ("Syncthing", ("syncthing",)),
    ("Dropbox", ("dropbox",)),
    ("OneDrive", ("onedrive",)),
    ("Nextcloud", ("nextcloud",)),
)

# Filesystems where file events do not report what other machines write: network shares,
# VM/WSL host shares, and FUSE mounts (a sync client's on-demand drive, sshfs, rclone...).
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afpfs", "afs", "webdav", "davfs",
    "9p", "v9fs", "drvfs", "virtiofs", "vboxsf", "vmhgfs", "prl_fs", "ceph", "glusterfs",
    "lustre", "gpfs", "ncpfs", "sshfs", "fuse",
})
LOCAL_FUSE = frozenset({"fuseblk", "fuse.ntfs-3g", "fuse.exfat", "fuse.lxcfs"})

# Windows: a path of more than MAX_PATH_CHARS characters fails unless long paths are enabled
# (Python is long-path aware since 3.6 once the machine allows them).
MAX_PATH_CHARS = 259  # MAX_PATH (260) less the terminating NUL
LONG_PATHS_KEY = r"SYSTEM\CurrentControlSet\Control\FileSystem"
LONG_PATHS_VALUE = "LongPathsEnabled"
LONG_PATHS_FIX = (
    'in an Administrator PowerShell: `New-ItemProperty -Path "HKLM:\\SYSTEM\\CurrentControlSet'
    '\\Control\\FileSystem" -Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force`, then '
    "sign out and in (and restart the guard); or move the store or state_dir to a shorter path")
LONG_PATH_SCAN = 100_000  # store entries the doctor looks at for the longest path, at most
# The folders the guard puts in front of a store-relative path outside the store: a batch of
# the vault's trash (protection/trash.py) or of the quarantine (sync/quarantine.py) is named
# YYYYmmdd-HHMMSS-xxxxxx; the quarantine may add ".before" to a file's name.
BATCH_NAME_CHARS = 22

WATCH_LIMIT_FILE = "/proc/sys/fs/inotify/max_user_watches"
WATCH_HEADROOM = 0.8  # above this share of the limit, other programs may run out of watches
SUGGESTED_WATCHES = 524288


@dataclass(frozen=True)
class Finding:
    name: str
    level: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return asdict(self)


# ---- facts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigFacts:
    file: str | None  # the config file used, None when there is none
    source: str  # why that file: --config, $MLFLOW_GUARD_CONFIG, user config...; or "none found"
    error: str | None = None  # the ConfigError text
    store: str | None = None
    daemon_pid: int | None = None  # the running daemon the store was taken from (no file names it)


@dataclass(frozen=True)
class StoreFacts:
    path: str
    state: str  # a StoreState value
    detail: str  # inspect_store's explanation
    writable: bool
    sync_folders: tuple[str, ...] = ()  # sync clients' folders in the store root (SYNC_MARKERS)
    child_store: str | None = None  # not a store, but this folder in it is one


@dataclass(frozen=True)
class Partition:
    mountpoint: str
    fstype: str
    device: str = ""
    opts: str = ""


@dataclass(frozen=True)
class MountFacts:
    path: str  # the store's real path
    mount: Partition | None  # the mount holding it, None when no mount entry matches
    watch_mode: str  # rewrite.watch, or "off" when rewriting (and so watching) is off


@dataclass(frozen=True)
class WatchFacts:
    folders: int  # store folders the guard would set an inotify watch on
    limit: int | None  # fs.inotify.max_user_watches, None when unreadable
    watch_mode: str


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str


@dataclass(frozen=True)
class Stray:
    """A hand-started MLflow server over the store, and the port it listens on."""
    pid: int
    user: str | None
    port: int | None
    store: str

    @property
    def line(self) -> str:
        return server_line(self.pid, self.user, self.port, self.store)


@dataclass(frozen=True)
class PortFacts:
    host: str
    port: int
    bindable: bool
    daemon_pid: int | None  # this guard's daemon, from its status file
    ours: tuple[Listener, ...] = ()  # this guard's server processes
    same_store: tuple[Stray, ...] = ()  # hand-started MLflow servers over the store
    foreign: tuple[Listener, ...] = ()  # anything else listening on the port
    orphans: tuple[Listener, ...] = ()  # this guard's server, left running by a dead daemon


@dataclass(frozen=True)
class MlflowFacts:
    version: str | None  # None: not installed
    importable: bool
    entry_points: tuple[str, ...]  # values registered as `guard` in the mlflow.app group


@dataclass(frozen=True)
class VolumeFacts:
    store_dev: int
    vault: str
    vault_dev: int | None  # st_dev of the vault's nearest existing folder, None if unknown
    vault_enabled: bool
    vault_from_state_dir: bool  # vault.path unset: the vault lives in state_dir


@dataclass(frozen=True)
class PeerClock:
    host_id: str
    ctime: float  # when the heartbeat file changed here, by our clock
    last_seen: float  # when the peer wrote it, by its clock


@dataclass(frozen=True)
class ClockFacts:
    peers: tuple[PeerClock, ...]
    now: float
    skew: float  # locks.skew
    stale_after: float  # peers.stale_after
    interval: float  # peers.heartbeat_interval


@dataclass(frozen=True)
class UnprotectedFacts:
    """What the running daemon's vault could not keep (its status file's vault section)."""
    daemon_pid: int
    groups: tuple[Unprotected, ...]
    more: bool = False  # more than the vault lists


@dataclass(frozen=True)
class LongPathFacts:
    """What decides whether Windows' 259-character path limit bites the guard."""
    platform: str  # sys.platform
    enabled: int | None  # LongPathsEnabled, None when unreadable (or not Windows)
    store: str  # the store's absolute path
    vault: str | None  # the vault's folder, None when the vault is off
    quarantine: str  # state_dir/quarantine
    longest: str = ""  # the longest store-relative path found (os.sep between names)
    longest_live: str = ""  # the longest not under .trash (MLflow may move it there)
    scanned: int = 0  # store entries looked at
    complete: bool = True  # False: the walk stopped at LONG_PATH_SCAN entries
    sep: str = os.sep


@dataclass(frozen=True)
class AddressFacts:
    """How MLflow clients on this machine reach the guard's server."""
    platform: str  # sys.platform
    host: str  # server.host, what the server binds
    tracking_uri: str | None  # MLFLOW_TRACKING_URI here, None when unset
    port: int  # server.port


@dataclass(frozen=True)
class Facts:
    config: ConfigFacts
    mlflow: MlflowFacts
    sync_clients: tuple[str, ...]
    linux: bool = True
    store: StoreFacts | None = None
    port: PortFacts | None = None
    mount: MountFacts | None = None
    watches: WatchFacts | None = None
    volume: VolumeFacts | None = None
    clocks: ClockFacts | None = None
    exposure: ExposureFacts | None = None
    unprotected: UnprotectedFacts | None = None
    long_paths: LongPathFacts | None = None
    address: AddressFacts | None = None


# ---- pure checks ----------------------------------------------------------------------------

def check_config(f: ConfigFacts) -> Finding:
    if f.error:
        return Finding("config", FAIL, f.error,
                       "correct the file or path the message names (config.example.yaml "
                       "shows every key); `guardctl config` shows the result once it loads")
    where = f"{f.file} ({f.source})" if f.file else "no config file found, defaults and flags"
    if not f.store:
        fix = ("set `store:` to the synced mlruns folder in the config file (or pass --store "
               "PATH)") if f.file else (
               "name the synced mlruns folder once: `guardctl config --save --store PATH` "
               "writes the user config file (or pass --store PATH)")
        return Finding("config", FAIL, f"{where}: no store configured", fix)
    if f.daemon_pid is not None:
        return Finding("config", WARN,
                       f"no config file names the store: {f.store} is the running daemon's "
                       f"(pid {f.daemon_pid}, from its --store); once it stops, guardctl and "
                       "the next `guardctl run` without --store will not know the store",
                       "make it permanent: `guardctl config --save` writes it to the user "
                       "config file")
    return Finding("config", OK, f"{where}; store {f.store}")


def check_store(f: StoreFacts) -> Finding:
    state = StoreState(f.state)
    if state in (StoreState.MISSING, StoreState.EMPTY):
        what = "does not exist" if state is StoreState.MISSING else "is an empty folder"
        return Finding(
            "store", FAIL,
            f"{f.path} {what}: that is what an unmounted or not yet synced drive looks like "
            "(the filesystem, watch, vault and clock checks need it and were skipped)",
            "mount the drive or start the sync client and let it finish; for a brand-new store "
            f"run `guardctl init --store {f.path}`; or start with `guardctl run "
            "--wait-for-store` to wait for the store to appear")
    if state is not StoreState.OK:
        fix = (f"point `store:` (or --store) at {f.child_store}" if f.child_store else
               "point `store:` (or --store) at the synced mlruns folder")
        return Finding("store", FAIL, f.detail, fix)
    if not f.writable:
        return Finding("store", FAIL, f"{f.path} is an MLflow file store, but this user cannot "
                                      "write to it",
                       "run the guard as the user who owns the synced folder, or give this "
                       "user write permission")
    return Finding("store", OK, f"{f.path} is an MLflow file store, writable")


# How to keep each sync client's folder out of the store root (check_sync_folders).
_SYNC_FOLDER_FIXES = (
    (".stfolder", "Syncthing: or set the folder's Marker Name (Advanced) to `.trash`, MLflow's "
                  "own trash folder, and delete .stfolder"),
    (".stversions", "Syncthing: keep file versions outside the store (versioning `fsPath`) "
                    "and delete .stversions"),
    ("@eaDir", "Synology: @eaDir is the NAS's indexing; leave the folder out of indexing, or "
               "share it only through Synology Drive"),
    ("#recycle", "Synology: turn off the recycle bin of that shared folder"),
)


def check_sync_folders(names: Sequence[str]) -> Finding:
    """Sync clients' folders in the store root: fine for the guard's server (its MLflow skips
    them, core/mlflowpatch.py), fatal for MLflow opening the folder directly."""
    shown = ", ".join(names)
    fixes = "; ".join(fix for name, fix in _SYNC_FOLDER_FIXES if name in names)
    return Finding(
        "sync folders", WARN,
        f"the store root holds {shown}: the guard's server skips them, but MLflow opening the "
        "folder directly (a file:// tracking URI, a bare `mlflow server`) fails on them with "
        f"\"Invalid experiment ID: '{names[0]}'\"",
        "share the folder above mlruns rather than mlruns itself, so the sync client's folders "
        "sit beside the store" + (f"; {fixes}" if fixes else ""))


def root_sync_folders(store: Path) -> tuple[str, ...]:
    """The sync clients' folders (SYNC_MARKERS) at the store root, sorted."""
    try:
        with os.scandir(store) as it:
            return tuple(sorted(e.name for e in it if e.name in SYNC_MARKERS
                                and e.is_dir(follow_symlinks=False)))
    except OSError:
        return ()


def _exe_name(text: str) -> str:
    base = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in (".exe", ".app"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def sync_clients_seen(procs: Iterable[tuple[str, Sequence[str]]]) -> tuple[str, ...]:
    """The sync clients among (process name, command line) pairs, matched on the executable's
    name only (so `vim dropbox.txt` is not Dropbox)."""
    seen = set()
    for name, cmdline in procs:
        names = {_exe_name(name)} | ({_exe_name(cmdline[0])} if cmdline else set())
        for client, prefixes in SYNC_CLIENTS:
            if any(n.startswith(p) for n in names if n for p in prefixes):
                seen.add(client)
    return tuple(sorted(seen))


def check_sync_client(seen: Sequence[str]) -> Finding:
    if seen:
        return Finding("sync client", OK, f"{', '.join(seen)} running")
    looked = ", ".join(client for client, _ in SYNC_CLIENTS)
    return Finding("sync client", WARN,
                   f"no sync client process seen (looked for {looked}); that is fine when "
                   "the store is a NAS share mounted on every machine",
                   "if the store is a synced folder, start its sync client: the store only "
                   "stays shared while it runs")


def mount_of(path: str, partitions: Sequence[Partition]) -> Partition | None:
    """The mount holding `path` (a real path): the longest mountpoint that is a prefix of it;
    of equal ones the last listed, which is the one mounted on top."""
    best: Partition | None = None
    for part in partitions:
        mp = part.mountpoint
        sep = "\\" if "\\" in mp else "/"
        if path == mp or path.startswith(mp.rstrip(sep) + sep):
            if best is None or len(mp) >= len(best.mountpoint):
                best = part
    return best


def is_network_fs(fstype: str, opts: str = "") -> bool:
    """Whether file events on this filesystem miss other machines' writes."""
    kind = fstype.lower()
    if "remote" in opts.lower().split(","):  # Windows: a mapped network drive
        return True
    if kind in LOCAL_FUSE:
        return False
    return kind in NETWORK_FS or kind.startswith("fuse.")


def check_filesystem(f: MountFacts) -> Finding:
    if f.mount is None:
        return Finding("filesystem", WARN,
                       f"cannot tell which filesystem holds {f.path} (no mount entry matches)",
                       "if the store is on a network share, set `rewrite.watch: polling`")
    where = f"{f.path} is on {f.mount.fstype or 'an unknown filesystem'} ({f.mount.mountpoint})"
    if not is_network_fs(f.mount.fstype, f.mount.opts):
        return Finding("filesystem", OK, f"{where}, a local filesystem")
    if f.watch_mode == WatchMode.POLLING:
        return Finding("filesystem", OK, f"{where}, a network filesystem; rewrite.watch is "
                                         "polling, as it should be there")
    if f.watch_mode == OFF:
        return Finding("filesystem", OK, f"{where}, a network filesystem; no file events are "
                                         "used (rewrite.enabled: false)")
    return Finding(
        "filesystem", WARN,
        f"{where}, a network filesystem: file events (inotify) do not report other machines' "
        "writes there, so the guard would see synced changes only in its full passes",
        "set `rewrite.watch: polling` in the config file")


def suggested_watches(folders: int) -> int:
    need = SUGGESTED_WATCHES
    while need < 2 * folders:
        need *= 2
    return need


def check_watches(f: WatchFacts) -> Finding:
    if f.watch_mode == WatchMode.POLLING:
        return Finding("inotify watches", OK, "not used (rewrite.watch: polling)")
    if f.watch_mode == OFF:
        return Finding("inotify watches", OK, "not used (rewrite.enabled: false)")
    if f.limit is None:
        return Finding("inotify watches", OK,
                       f"{count(f.folders, 'store folder')} to watch; the limit is unknown "
                       f"({WATCH_LIMIT_FILE} is unreadable)")
    n = suggested_watches(f.folders)
    fix = (f"sudo sysctl fs.inotify.max_user_watches={n}; to keep it after a reboot: "
           f"echo fs.inotify.max_user_watches={n} | sudo tee /etc/sysctl.d/90-mlflow-guard.conf")
    counts = f"the guard would watch {count(f.folders, 'store folder')}, the limit " \
             f"(fs.inotify.max_user_watches) is {f.limit}"
    if f.folders > f.limit:
        return Finding("inotify watches", WARN,
                       f"{counts}: it falls back to polling", fix)
    if f.folders > WATCH_HEADROOM * f.limit:
        return Finding("inotify watches", WARN,
                       f"{counts}: more than {WATCH_HEADROOM:.0%} of it, and other programs "
                       "(editors, IDEs, sync clients) need watches too", fix)
    return Finding("inotify watches", OK,
                   f"{count(f.folders, 'store folder')} to watch, limit {f.limit}")


def _named(listeners: Sequence[Listener]) -> str:
    return "; ".join(f"pid {p.pid} ({p.command[:160] or 'command not visible'})"
                     for p in listeners)


def check_port(f: PortFacts) -> Finding:
    where = f"{f.host}:{f.port}"
    fix = "stop that process, or choose another port (server.port in the config, or --port)"
    if f.foreign:
        return Finding("port", FAIL, f"{where} is taken by {_named(f.foreign)}, which is not "
                                     "an MLflow server over this store", fix)
    on_port = [s for s in f.same_store if s.port == f.port]
    if on_port and f.daemon_pid is None:
        return Finding("port", WARN,
                       f"{where} is held by a hand-started MLflow server over this store "
                       f"({on_port[0].line}); the guard ends it when it starts",
                       "let `guardctl run` end it, or stop it yourself")
    if on_port:
        return Finding("port", FAIL,
                       f"{where} is held by a hand-started MLflow server over this store "
                       f"({on_port[0].line}), so the running guard's server cannot listen there",
                       f"stop it (`kill {on_port[0].pid}`); the guard then starts its server")
    if f.orphans and f.daemon_pid is None:
        return Finding("port", WARN,
                       f"the server of a dead guard daemon is still running (orphan): "
                       f"{_named(f.orphans)}",
                       "`guardctl stop` ends it (and `guardctl run` replaces it)")
    mine = f.daemon_pid is not None or bool(f.ours)
    daemon = f" (daemon pid {f.daemon_pid})" if f.daemon_pid else ""
    if not f.bindable:
        if mine:
            return Finding("port", OK, f"{where} is in use by this guard's own server{daemon}")
        return Finding("port", FAIL, f"{where} is in use by a process this user cannot see", fix)
    if mine:
        return Finding("port", OK, f"{where} is free; this guard is running{daemon} and its "
                                   "server is not listening yet")
    return Finding("port", OK, f"{where} is free")


def check_strays(f: PortFacts) -> Finding:
    """Hand-started MLflow servers over the store, one line each: two servers over one store
    serve stale views of each other's writes. The guard ends them only when it starts, so the
    advice depends on whether it runs."""
    if not f.same_store:
        return Finding("strays", OK, "no hand-started MLflow server over this store")
    head = f"{count(len(f.same_store), 'hand-started MLflow server')} over this store:"
    detail = head + "".join(f"\n        {s.line}" for s in f.same_store)
    pids = " ".join(str(s.pid) for s in f.same_store)
    if f.daemon_pid is not None:
        fix = (f"stop {'it' if len(f.same_store) == 1 else 'them'} (`kill {pids}`) and point "
               f"{'its' if len(f.same_store) == 1 else 'their'} users at the guard's server on "
               f"port {f.port}; the running guard (pid {f.daemon_pid}) ends such servers only "
               "when it starts")
    else:
        fix = (f"`guardctl run` ends {'it' if len(f.same_store) == 1 else 'them'} when it "
               f"starts; or stop {'it' if len(f.same_store) == 1 else 'them'} yourself "
               f"(`kill {pids}`)")
    return Finding("strays", WARN, detail, fix)


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(x) for x in match.group(1).split(".")) if match else ()


def mlflow_supported(version: str) -> bool:
    """Whether `version` is in the supported range (>=3.0,<4)."""
    release = _release(version)
    low, high = MLFLOW_RANGE
    return bool(release) and low <= release < high


def check_mlflow(f: MlflowFacts) -> Finding:
    reinstall = "reinstall mlflow-sync-guard (pip install .), which installs a supported mlflow"
    if f.version is None or not f.importable:
        return Finding("mlflow", FAIL, "mlflow is not installed in this Python environment",
                       reinstall)
    if not mlflow_supported(f.version):
        return Finding("mlflow", FAIL,
                       f"mlflow {f.version} is outside the supported range >=3.0,<4",
                       'pip install "mlflow>=3.0,<4"')
    if APP_VALUE not in f.entry_points:
        found = f" (registered: {', '.join(f.entry_points)})" if f.entry_points else ""
        return Finding("mlflow", FAIL,
                       f"mlflow {f.version}, but the `{APP_NAME}` app is not registered in the "
                       f"{APP_GROUP} entry points{found}: `mlflow server --app-name guard` "
                       "cannot start", "reinstall mlflow-sync-guard (pip install .)")
    return Finding("mlflow", OK, f"mlflow {f.version}, the guard app is registered")


def check_volume(f: VolumeFacts) -> Finding:
    if not f.vault_enabled:
        return Finding("vault volume", OK, "vault off (vault.enabled: false)")
    if f.vault_dev is None:
        return Finding("vault volume", WARN, f"cannot look at the vault folder {f.vault}",
                       "set vault.path to a local folder on the store's volume")
    if f.vault_dev == f.store_dev:
        return Finding("vault volume", OK,
                       f"vault {f.vault} is on the store's volume: it can hard-link files")
    setting = "vault.path (or state_dir)" if f.vault_from_state_dir else "vault.path"
    return Finding("vault volume", WARN,
                   f"vault {f.vault} is on another volume than the store: hard links are "
                   "impossible, so the vault copies every file (slower, more disk)",
                   f"set {setting} to a folder on the same volume as the store, outside it")


def clock_problems(f: ClockFacts) -> list[str]:
    """What the heartbeats say about other hosts' clocks. ctime - last_seen is the sync lag
    plus the skew: far below zero, the peer's clock is ahead; far above the lag a recent
    heartbeat can have, it is behind (or the sync is very slow)."""
    out = []
    for p in sorted(f.peers, key=lambda p: p.host_id):
        d = p.ctime - p.last_seen
        if d < -f.skew:
            out.append(f"{p.host_id}'s clock is ahead of ours by at least {-d:.1f} s")
        elif f.now - p.ctime <= 2 * f.interval and d > f.skew + f.stale_after:
            out.append(f"{p.host_id}'s clock is behind ours by up to {d:.1f} s (or the sync "
                       "is that slow)")
    return out


def check_clocks(f: ClockFacts) -> Finding:
    if not f.peers:
        return Finding("clocks", OK, "no other machines seen yet")
    problems = clock_problems(f)
    if not problems:
        hosts = ", ".join(sorted(p.host_id for p in f.peers))
        return Finding("clocks", OK, f"heartbeats of {hosts} agree with our clock")
    return Finding("clocks", WARN,
                   "; ".join(problems) + f": the cross-machine leases assume clocks agree "
                   f"within locks.skew ({f.skew:g} s)",
                   "turn on network time sync on every machine: `sudo timedatectl set-ntp "
                   "true` (Linux), 'Set time automatically' (Windows, macOS)")


def check_exposure(f: ExposureFacts) -> Finding:
    """Who can reach the server: a bind beyond loopback without authentication fails."""
    level, detail, fix = exposure.verdict(f)
    return Finding("exposure", level, detail, fix)


def check_unprotected(f: UnprotectedFacts) -> Finding:
    """The store files the running daemon's vault could not keep, by reason, each with what
    to do: deleting them cannot be undone (a warning: the guard itself runs)."""
    total = sum(g.count for g in f.groups)
    if not total and not f.more:
        return Finding("unprotected files", OK,
                       f"the running daemon (pid {f.daemon_pid}) keeps every store file in its "
                       "vault")
    lines = []
    for g in f.groups:
        more = g.count - len(g.examples)
        lines.append(f"\n        {count(g.count, 'file')} ({g.reason}): {', '.join(g.examples)}"
                     + (f" and {more} more" if more > 0 else ""))
    detail = (f"the running daemon (pid {f.daemon_pid}) could not keep "
              f"{'more than ' if f.more else ''}{count(total, 'store file')} in its vault: "
              "deleting them cannot be undone (the guard's log names each)" + "".join(lines))
    fixes = list(dict.fromkeys(g.fix for g in f.groups if g.fix))
    return Finding("unprotected files", WARN, detail,
                   "; ".join(fixes) or "see the guard's log for each file")


def _path_chars(text: str) -> int:
    """A path's length as Windows counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def longest_paths(f: LongPathFacts) -> list[tuple[int, str]]:
    """(characters, where) of the longest path written in each place a store-relative path
    lands (pure): the store; its .trash, where MLflow moves a deleted experiment; the vault's
    trash (guardctl gc, registry deletions); the quarantine (conflict copies)."""
    sep = f.sep
    batch = "x" * BATCH_NAME_CHARS
    out = [(_path_chars(f.store + sep + f.longest), "in the store"),
           (_path_chars(f.store + sep + TRASH + sep + f.longest_live),
            "in the store's .trash, where MLflow moves a deleted experiment"),
           (_path_chars(f.quarantine + sep + batch + sep + f.longest + QUARANTINE_SUFFIX),
            "in the quarantine, where conflict copies go")]
    if f.vault is not None:
        out.append((_path_chars(f.vault + sep + VAULT_TRASH + sep + batch + sep + f.longest),
                    "in the vault's trash, where guardctl gc and registry deletions put what "
                    "they remove"))
    return out


def check_long_paths(f: LongPathFacts) -> Finding:
    """Windows without LongPathsEnabled fails on a path over 259 characters: the guard adds
    folders in front of store paths (trash, quarantine), so a path MLflow could write may be
    one the guard cannot keep."""
    if f.platform != "win32":
        return Finding("long paths", OK, "no path length limit here (not Windows)")
    if f.enabled == 1:
        return Finding("long paths", OK, f"{LONG_PATHS_VALUE} is 1: paths over "
                                         f"{MAX_PATH_CHARS} characters work")
    chars, where = max(longest_paths(f))
    seen = "" if f.complete else f" (of the first {f.scanned} store entries)"
    state = ("unreadable" if f.enabled is None else f"{f.enabled}")
    if chars > MAX_PATH_CHARS:
        return Finding(
            "long paths", WARN,
            f"the longest path the guard may write is {chars} characters ({where}; the "
            f"longest store path{seen} is {f.longest or 'none'}), over Windows' "
            f"{MAX_PATH_CHARS}-character limit, and long paths are off "
            f"(HKLM\\{LONG_PATHS_KEY}\\{LONG_PATHS_VALUE} is {state}): writing it fails",
            LONG_PATHS_FIX)
    return Finding("long paths", OK,
                   f"the longest path the guard may write is {chars} characters ({where})"
                   f"{seen}, {MAX_PATH_CHARS - chars} under Windows' {MAX_PATH_CHARS}-character "
                   f"limit ({LONG_PATHS_VALUE} is {state})")


def _ipv4_local(host: str) -> bool:
    """Whether the server binds an IPv4 loopback or any-address only (::1 is not served)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return addr.version == 4 and (addr.is_loopback or addr.is_unspecified)


def check_address(f: AddressFacts) -> Finding:
    """MLflow clients that name `localhost` try ::1 first; the server binds IPv4 only, and on
    Windows each refused IPv6 connect costs about 2 s per new connection."""
    good = f"http://127.0.0.1:{f.port}"
    uri = (f.tracking_uri or "").strip()
    if not uri:
        return Finding("address", OK,
                       "MLFLOW_TRACKING_URI is not set here; point MLflow clients at the "
                       f"guard's server with MLFLOW_TRACKING_URI={good} (127.0.0.1, not "
                       "localhost)")
    shown = redact(uri)
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname or "", parts.port  # hostname is lowercased
    except ValueError:
        return Finding("address", OK, f"MLFLOW_TRACKING_URI is {shown}: not an address of "
                                      f"this guard's server ({good})")
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    if port != f.port or host not in ("localhost", "127.0.0.1"):
        return Finding("address", OK, f"MLFLOW_TRACKING_URI is {shown}: not this guard's "
                                      f"server ({good})")
    if host == "127.0.0.1":
        return Finding("address", OK, f"MLFLOW_TRACKING_URI is {shown}: clients reach the "
                                      "server by IPv4 directly")
    if not _ipv4_local(f.host):
        return Finding("address", OK, f"MLFLOW_TRACKING_URI is {shown}; the server binds "
                                      f"{f.host}, which localhost reaches")
    fix = (f"set MLFLOW_TRACKING_URI={good} (PowerShell: `setx MLFLOW_TRACKING_URI {good}`, "
           "then open a new terminal)")
    if f.platform == "win32":
        return Finding("address", WARN,
                       f"MLFLOW_TRACKING_URI is {shown}: MLflow clients on Windows try "
                       f"localhost's IPv6 address ::1 first, but the server binds {f.host} "
                       "(IPv4) only, so every new connection waits about 2 s for the refused "
                       "attempt", fix)
    return Finding("address", OK,
                   f"MLFLOW_TRACKING_URI is {shown}; the server binds {f.host} (IPv4) only, so "
                   f"clients may try ::1 first (refused at once here, about 2 s per connection "
                   f"on Windows): MLFLOW_TRACKING_URI={good} avoids it")


def run_checks(facts: Facts) -> list[Finding]:
    """Every check whose facts were gathered, in the order they are shown."""
    out = [check_config(facts.config)]
    if facts.store is not None:
        out.append(check_store(facts.store))
        if facts.store.sync_folders:
            out.append(check_sync_folders(facts.store.sync_folders))
    out.append(check_sync_client(facts.sync_clients))
    if facts.mount is not None:
        out.append(check_filesystem(facts.mount))
    if facts.watches is not None and facts.linux:
        out.append(check_watches(facts.watches))
    if facts.port is not None:
        out.append(check_port(facts.port))
        out.append(check_strays(facts.port))
    if facts.exposure is not None:
        out.append(check_exposure(facts.exposure))
    out.append(check_mlflow(facts.mlflow))
    if facts.volume is not None:
        out.append(check_volume(facts.volume))
    if facts.unprotected is not None and (facts.unprotected.groups or facts.unprotected.more):
        out.append(check_unprotected(facts.unprotected))
    if facts.long_paths is not None:
        out.append(check_long_paths(facts.long_paths))
    if facts.address is not None:
        out.append(check_address(facts.address))
    if facts.clocks is not None:
        out.append(check_clocks(facts.clocks))
    return out


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when anything blocks running the guard, else 0 (warnings allowed)."""
    return 1 if any(f.level == FAIL for f in findings) else 0


def render(findings: Sequence[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{LABELS[f.level]:<6}{f.name}: {f.detail}")
        if f.fix and f.level != OK:
            lines.append(f"      fix: {f.fix}")
    fails = sum(f.level == FAIL for f in findings)
    warns = sum(f.level == WARN for f in findings)
    oks = len(findings) - fails - warns
    verdict = "the guard cannot run until the failures are fixed" if fails else \
        "nothing blocks running the guard"
    lines.append(f"{fails} failed, {count(warns, 'warning')}, {oks} ok: {verdict}")
    return "\n".join(lines)


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2)


# ---- the shell: facts from the real system --------------------------------------------------

def read_watch_limit() -> int | None:
    try:
        with open(WATCH_LIMIT_FILE, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def process_names() -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        out.append((proc.info.get("name") or "", tuple(proc.info.get("cmdline") or ())))
    return out


def disk_partitions() -> list[Partition]:
    return [Partition(p.mountpoint, p.fstype, p.device, p.opts)
            for p in psutil.disk_partitions(all=True)]


def read_long_paths_enabled() -> int | None:
    """HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem\\LongPathsEnabled; None when
    unreadable (absent, no access) or not on Windows."""
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, LONG_PATHS_KEY) as key:
            value, _kind = winreg.QueryValueEx(key, LONG_PATHS_VALUE)
    except OSError:
        return None
    return value if isinstance(value, int) else None


def longest_store_paths(store: Path, limit: int = LONG_PATH_SCAN) -> tuple[str, str, int, bool]:
    """The longest store-relative path, the longest not under .trash, how many entries were
    looked at, and whether that was all of them: a walk of at most `limit` entries, reading
    folder listings only (no file is opened, no symlink followed)."""
    longest = live = ""
    seen = 0
    stack: list[tuple[str, str]] = [(str(store), "")]
    while stack:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if seen >= limit:
                return longest, live, seen, False
            seen += 1
            sub = rel + os.sep + entry.name if rel else entry.name
            if len(sub) > len(longest):
                longest = sub
            if len(sub) > len(live) and not (sub + os.sep).startswith(TRASH + os.sep):
                live = sub
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, sub))
            except OSError:
                continue
    return longest, live, seen, True


def gather_long_paths(cfg: Config, probes: Probes) -> LongPathFacts:
    """The facts of the long paths check; the store walk and the registry only on Windows."""
    store = os.path.abspath(cfg.require_store())
    facts = LongPathFacts(probes.platform, None, store,
                          os.path.abspath(cfg.vault_root) if cfg.vault.enabled else None,
                          os.path.abspath(StateDir(cfg.state_dir).quarantine))
    if probes.platform != "win32":
        return facts
    enabled = probes.long_paths_enabled()
    if enabled == 1:
        return replace(facts, enabled=1)
    longest, live, seen, complete = longest_store_paths(Path(store))
    return replace(facts, enabled=enabled, longest=longest, longest_live=live, scanned=seen,
                   complete=complete)


def read_unprotected(state: StateDir, daemon_pid: int | None) -> UnprotectedFacts | None:
    """What the running daemon's status file says its vault could not keep; None when no
    daemon runs (a stopped one's file is stale) or its vault is off."""
    if daemon_pid is None:
        return None
    doc = read_json(state.status)
    vault = doc.get("vault") if isinstance(doc, dict) else None
    if not isinstance(vault, dict) or vault.get("enabled") is not True:
        return None
    figures = from_json(VaultFigures, vault)
    return UnprotectedFacts(daemon_pid, figures.unprotected, figures.unprotected_more)


@dataclass(frozen=True)
class Probes:
    """The facts a test on a shared machine cannot change, as replaceable callables."""

    watch_limit: Callable[[], int | None] = read_watch_limit
    processes: Callable[[], list[tuple[str, tuple[str, ...]]]] = process_names
    partitions: Callable[[], list[Partition]] = disk_partitions
    now: Callable[[], float] = time.time
    linux: bool = field(default_factory=lambda: sys.platform.startswith("linux"))
    platform: str = sys.platform
    long_paths_enabled: Callable[[], int | None] = read_long_paths_enabled


def config_facts(cfg: Config | None, error: str | None, explicit: str | None,
                 daemon_pid: int | None = None) -> ConfigFacts:
    """What the config check needs: the file used and why, or the error loading it, and the
    running daemon the store was taken from when no file or flag names it."""
    if cfg is None:
        return ConfigFacts(None, "", error or "configuration not loaded")
    source = "none found"
    if cfg.file is not None:
        try:
            found, why = find_config_file(explicit)
            source = why if found == cfg.file else "the running daemon's config file"
        except ConfigError:
            source = "found"
    return ConfigFacts(str(cfg.file) if cfg.file else None, source, None,
                       str(cfg.store) if cfg.store else None, daemon_pid)


def count_watch_folders(store: Path) -> int:
    """How many inotify watches the guard sets on this store."""
    return sum(1 for _ in watched_folders(store))


def _dev_of_nearest(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return os.stat(folder).st_dev
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None


def read_peer_clocks(store: Path, me: str) -> tuple[PeerClock, ...]:
    """(host, file ctime, last_seen) of every other host's heartbeat file."""
    return tuple(PeerClock(beat.host_id, arrived, beat.last_seen)
                 for beat, arrived in read_with_arrival(store) if beat.host_id != me)


def gather_mlflow() -> MlflowFacts:
    try:
        version: str | None = metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        version = None
    importable = util.find_spec("mlflow") is not None
    values = tuple(sorted({ep.value for ep in metadata.entry_points(group=APP_GROUP)
                           if ep.name == APP_NAME}))
    return MlflowFacts(version, importable, values)


def gather_port(cfg: Config) -> PortFacts:
    state = StateDir(cfg.state_dir)
    records = recorded_refs(state)
    procs = snapshot()
    store = str(cfg.require_store())
    census = classify(procs, store, cfg.server.port, str(cfg.state_dir), records)
    daemon_pid = running_daemon_pid(state)
    left = () if daemon_pid else orphans(procs, store, str(cfg.state_dir), records)

    def listeners(procs) -> tuple[Listener, ...]:
        return tuple(Listener(p.pid, p.command) for p in procs)

    strays = tuple(Stray(p.pid, p.username, port, served_store(p, LOCAL_FOLDERS) or store)
                   for p, port in server_trees(census.same_store))
    return PortFacts(cfg.server.host, cfg.server.port,
                     port_bindable(cfg.server.host, cfg.server.port),
                     daemon_pid, listeners(census.ours),
                     strays, listeners(census.foreign_on_port),
                     listeners(left))


def gather(cfg: Config | None, probes: Probes = Probes(),
           config: ConfigFacts | None = None) -> Facts:
    """Collect every fact the checks need, reading only: nothing is written anywhere."""
    config = config or config_facts(cfg, None, None)
    base = Facts(config=config, mlflow=gather_mlflow(),
                 sync_clients=sync_clients_seen(probes.processes()), linux=probes.linux)
    if cfg is None:
        return base
    if cfg.store is None:
        return base
    port = gather_port(cfg)
    servers = [p.pid for p in port.ours + port.orphans] + [s.pid for s in port.same_store]
    base = replace(base, exposure=ExposureFacts(cfg.server.host, cfg.server.expose,
                                                cfg.server.auth,
                                                exposure.gather_binds(servers)),
                   address=AddressFacts(probes.platform, cfg.server.host,
                                        os.environ.get("MLFLOW_TRACKING_URI"), cfg.server.port),
                   unprotected=read_unprotected(StateDir(cfg.state_dir), port.daemon_pid))
    store = cfg.store
    check = inspect_store(store)
    store_facts = StoreFacts(str(store), check.state.value, check.detail,
                             check.ok and os.access(store, os.W_OK),
                             root_sync_folders(store) if check.ok else (),
                             str(check.child_store) if check.child_store else None)
    if not check.ok:
        return replace(base, store=store_facts, port=port)
    real = os.path.realpath(store)
    parts = probes.partitions()
    if sys.platform == "win32":
        real = os.path.normcase(real)
        parts = [Partition(os.path.normcase(p.mountpoint), p.fstype, p.device, p.opts)
                 for p in parts]
    mode = cfg.rewrite.watch if cfg.rewrite.enabled else OFF
    volume = VolumeFacts(os.stat(store).st_dev, str(cfg.vault_root),
                         _dev_of_nearest(cfg.vault_root), cfg.vault.enabled,
                         cfg.vault.path is None)
    clocks = ClockFacts(read_peer_clocks(store, cfg.host_id), probes.now(), cfg.locks.skew,
                        cfg.peers.stale_after, cfg.peers.heartbeat_interval)
    watches = WatchFacts(count_watch_folders(store), probes.watch_limit(), mode) \
        if probes.linux else None
    mount = MountFacts(real, mount_of(real, parts), mode)
    return replace(base, store=store_facts, port=port, mount=mount, watches=watches,
                   volume=volume, clocks=clocks, long_paths=gather_long_paths(cfg, probes))
