"""Real Syncthing between local folders: the sync client the guard is written for, in tests.

`SyncthingLab` starts N (normally 2) real `syncthing` processes on this machine, one per
"host", each with its own home folder (config, keys, database), and shares one folder between
them, mounted at a different path on each host. Everything stays on loopback:

* GUI/REST on ``127.0.0.1:<free port>`` with a random API key; sync (BEP) on
  ``tcp://127.0.0.1:<free port>``; each device knows the others by ID *and* explicit address.
* Global and local discovery, relays, NAT traversal, usage and crash reporting, upgrades and
  the browser are off (``urAccepted -1``, ``STNOUPGRADE=1``, ``--no-restart`` so there is no
  monitor process: the pid we start is the whole of Syncthing).
* The shared folder uses the filesystem watcher with a short delay (``fsWatcherDelayS``, 1 s,
  the smallest Syncthing 1.19 takes: it is an integer there) and a short full rescan interval,
  so a change normally reaches the other host within a second or two.

The share is the folder *above* the store (``<host>/sync``, the store is ``<host>/sync/mlruns``)
so Syncthing's ``.stfolder`` marker never sits in the store root. Nothing is ignored (no
``.stignore``): the guard must cope with what Syncthing does out of the box. Syncthing's own
in-flight files are ``.syncthing.<name>.tmp`` (and ``~syncthing~<name>.tmp`` on Windows).

What Syncthing does that the simulator (tests/helpers/syncsim.py) only approximates: scans on
inotify events after ``fsWatcherDelayS`` (removals are held back longer, up to 6x the delay, to
catch renames, unless a rescan sees them first), exchanges indexes with version vectors, pulls
blocks, and on concurrent changes keeps the newer mtime under the original name and renames the
other to ``<stem>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<first 7 chars of the device ID><.ext>``.

Host offline: `pause(i)` pauses every remote device on host i (``POST /rest/system/pause``),
which closes its connections; both sides keep scanning their own changes and exchange them on
`resume(i)`.

Every process is started by this module, recorded by pid and ended by pid in `stop()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.daemons import end_started, free_port

FOLDER_ID = "lab"
SYNCTHING = shutil.which("syncthing")
WATCH_DELAY = 1      # fsWatcherDelayS: integer seconds in Syncthing 1.19; 1 is the minimum
RESCAN_INTERVAL = 5  # rescanIntervalS: a safety net besides the watcher (removals, missed events)
MARKER = ".stfolder"
TEMP_PREFIXES = (".syncthing.", "~syncthing~")


def available() -> bool:
    return SYNCTHING is not None


class SyncthingError(AssertionError):
    pass


@dataclass
class Instance:
    """One Syncthing process: one host's sync client."""

    name: str
    home: Path
    folder: Path
    gui_port: int
    listen_port: int
    api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    device_id: str = ""
    proc: subprocess.Popen | None = None

    @property
    def short_id(self) -> str:
        """What Syncthing puts in a conflict copy's name for changes made on this host."""
        return self.device_id.split("-")[0]

    @property
    def log(self) -> Path:
        return self.home / "syncthing.log"

    def rest(self, method: str, path: str, body: object = None, timeout: float = 10,
             **params: str) -> object:
        url = f"http://127.0.0.1:{self.gui_port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"X-API-Key": self.api_key,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text.strip() else None

    def get(self, path: str, **params: str) -> dict:
        out = self.rest("GET", path, **params)
        assert isinstance(out, dict), out
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _set(parent: ET.Element, tag: str, text: str) -> None:
    node = parent.find(tag)
    if node is None:
        node = ET.SubElement(parent, tag)
    node.text = text


def _device_element(dev: Instance) -> ET.Element:
    el = ET.Element("device", id=dev.device_id, name=dev.name, compression="metadata",
                    introducer="false", skipIntroductionRemovals="false", introducedBy="")
    ET.SubElement(el, "address").text = f"tcp://127.0.0.1:{dev.listen_port}"
    for tag, text in (("paused", "false"), ("autoAcceptFolders", "false"),
                      ("maxSendKbps", "0"), ("maxRecvKbps", "0"), ("maxRequestKiB", "0"),
                      ("untrusted", "false"), ("remoteGUIPort", "0")):
        ET.SubElement(el, tag).text = text
    return el


class SyncthingLab:
    """N real Syncthing instances sharing one folder; see the module docstring.

    `folders[i]` is host i's copy of the shared folder; `instances[i]` its Syncthing.
    `volatile`: path prefixes inside the shared folder ("sync/mlruns/x/") that `in_sync()`
    does not compare (files rewritten faster than they sync, like the guards' heartbeats).
    """

    def __init__(self, root: Path, hosts: list[str] | None = None,
                 volatile: tuple[str, ...] = (), watch_delay: int = WATCH_DELAY,
                 rescan_interval: int = RESCAN_INTERVAL) -> None:
        if not available():
            raise SyncthingError("syncthing is not installed (Debian: apt-get install syncthing)")
        self.root = root
        self.hosts = hosts or ["hostA", "hostB"]
        self.volatile = tuple(volatile)
        self.watch_delay = watch_delay
        self.rescan_interval = rescan_interval
        self.folders = [root / name / "sync" for name in self.hosts]
        self.instances = [Instance(name, root / f"syncthing-{name}", folder, free_port(),
                                   free_port()) for name, folder in zip(self.hosts, self.folders)]

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 60) -> SyncthingLab:
        for inst in self.instances:
            inst.folder.mkdir(parents=True, exist_ok=True)
            self._generate(inst)
        for inst in self.instances:
            self._configure(inst)
        try:
            for inst in self.instances:
                self._launch(inst)
            for inst in self.instances:
                self._wait_rest(inst, timeout)
            self.wait_connected(timeout)
            self.wait_in_sync(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _generate(self, inst: Instance) -> None:
        inst.home.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([SYNCTHING, "generate", f"--home={inst.home}", "--no-default-folder",
                              "--skip-port-probing"], capture_output=True, text=True, timeout=60,
                             env=self._env())
        if res.returncode != 0:
            raise SyncthingError(f"syncthing generate failed: {res.stdout}{res.stderr}")
        res = subprocess.run([SYNCTHING, "serve", f"--home={inst.home}", "--device-id"],
                             capture_output=True, text=True, timeout=60, env=self._env())
        inst.device_id = res.stdout.strip()
        if res.returncode != 0 or len(inst.device_id) != 63:
            raise SyncthingError(f"no device id for {inst.name}: {res.stdout}{res.stderr}")

    def _configure(self, inst: Instance) -> None:
        path = inst.home / "config.xml"
        tree = ET.parse(path)
        cfg = tree.getroot()
        gui = cfg.find("gui")
        assert gui is not None
        gui.set("enabled", "true")
        gui.set("tls", "false")
        _set(gui, "address", f"127.0.0.1:{inst.gui_port}")
        _set(gui, "apikey", inst.api_key)
        options = cfg.find("options")
        assert options is not None
        for tag, text in (
                ("listenAddress", f"tcp://127.0.0.1:{inst.listen_port}"),
                ("globalAnnounceEnabled", "false"), ("localAnnounceEnabled", "false"),
                ("relaysEnabled", "false"), ("natEnabled", "false"),
                ("urAccepted", "-1"), ("urSeen", "3"), ("crashReportingEnabled", "false"),
                ("autoUpgradeIntervalH", "0"), ("startBrowser", "false"),
                ("reconnectionIntervalS", "1"), ("progressUpdateIntervalS", "1"),
                ("setLowPriority", "false"), ("stunServer", ""),
                ("announceLANAddresses", "false")):
            _set(options, tag, text)
        for old in options.findall("unackedNotificationID"):
            options.remove(old)
        # The devices: this one (already there) and the others by ID with explicit addresses.
        for dev in cfg.findall("device"):
            if dev.get("id") != inst.device_id:
                cfg.remove(dev)
            else:
                dev.set("name", inst.name)
        index = list(cfg).index(cfg.find("device")) + 1  # keep the schema's element order
        for other in self.instances:
            if other is not inst:
                cfg.insert(index, _device_element(other))
                index += 1
        folder = ET.Element("folder", id=FOLDER_ID, label=FOLDER_ID, path=str(inst.folder),
                            type="sendreceive", rescanIntervalS=str(self.rescan_interval),
                            fsWatcherEnabled="true", fsWatcherDelayS=str(self.watch_delay),
                            ignorePerms="false", autoNormalize="true")
        ET.SubElement(folder, "filesystemType").text = "basic"
        for dev in self.instances:
            ET.SubElement(folder, "device", id=dev.device_id, introducedBy="")
        ET.SubElement(folder, "minDiskFree", unit="%").text = "1"
        for tag, text in (("order", "oldestFirst"), ("paused", "false"),
                          ("maxConflicts", "10"), ("markerName", MARKER),
                          ("disableFsync", "false")):
            ET.SubElement(folder, tag).text = text
        cfg.insert(0, folder)
        tree.write(path)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ST")}
        env.update(STNOUPGRADE="1", STNORESTART="1", STNODEFAULTFOLDER="1",
                   HOME=str(self.root))  # nothing of the user's own Syncthing is touched
        return env

    def _launch(self, inst: Instance) -> None:
        log = open(inst.log, "ab")
        try:
            inst.proc = subprocess.Popen(
                [SYNCTHING, "serve", f"--home={inst.home}", "--no-browser", "--no-restart",
                 "--no-upgrade", "--logflags=3", "--log-max-old-files=0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                start_new_session=True)
        finally:
            log.close()

    def _wait_rest(self, inst: Instance, timeout: float) -> None:
        def up() -> bool:
            if not inst.alive():
                raise SyncthingError(f"syncthing {inst.name} exited: {inst.output()}")
            try:
                return inst.get("/rest/system/ping").get("ping") == "pong"
            except (OSError, ValueError):
                return False
        self._wait(up, timeout, f"syncthing {inst.name} REST API")

    def stop(self) -> None:
        """End every Syncthing this lab started, by pid (SIGTERM, then SIGKILL)."""
        for inst in self.instances:
            if inst.proc is not None:
                end_started(inst.proc)  # with any child (none expected with --no-restart)

    def __enter__(self) -> SyncthingLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ observing

    @staticmethod
    def _wait(predicate, timeout: float, what: str, interval: float = 0.1,
              describe=None) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                extra = f"\n{describe()}" if describe else ""
                raise SyncthingError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
            time.sleep(interval)

    def connected(self) -> bool:
        for inst in self.instances:
            conns = inst.get("/rest/system/connections").get("connections", {})
            for other in self.instances:
                if other is not inst and not (conns.get(other.device_id) or {}).get("connected"):
                    return False
        return True

    def wait_connected(self, timeout: float = 60) -> None:
        self._wait(self.connected, timeout, "the Syncthing devices to connect",
                   describe=self.describe)

    def folder_status(self, i: int) -> dict:
        return self.instances[i].get("/rest/db/status", folder=FOLDER_ID)

    def idle(self) -> bool:
        """Every instance idle with nothing to pull, and every peer complete as it knows it."""
        for inst in self.instances:
            st = inst.get("/rest/db/status", folder=FOLDER_ID)
            if st.get("state") != "idle" or st.get("needTotalItems", 0) or st.get("errors", 0):
                return False
            for other in self.instances:
                if other is inst:
                    continue
                comp = inst.get("/rest/db/completion", folder=FOLDER_ID, device=other.device_id)
                if comp.get("completion") != 100 or comp.get("needItems", 0) \
                        or comp.get("needDeletes", 0):
                    return False
        return True

    def tree(self, i: int) -> dict[str, str]:
        """Host i's shared folder: relative path -> content hash ("/" for a folder), without
        Syncthing's marker and temp files and the volatile prefixes."""
        root = self.folders[i]
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            for name in dirnames + filenames:
                rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
                if name == MARKER or name.startswith(TEMP_PREFIXES) \
                        or rel.startswith(self.volatile) or rel.startswith(MARKER + "/"):
                    continue
                path = os.path.join(dirpath, name)
                if name in dirnames:
                    out[rel] = "/"
                    continue
                try:
                    with open(path, "rb") as fh:
                        out[rel] = hashlib.sha256(fh.read()).hexdigest()
                except OSError:
                    out[rel] = "<unreadable>"
        return out

    def differences(self) -> list[str]:
        trees = [self.tree(i) for i in range(len(self.folders))]
        out = []
        for rel in sorted(set().union(*trees)):
            seen = [t.get(rel) for t in trees]
            if len(set(seen)) > 1:
                out.append(f"{rel}: " + ", ".join(
                    f"{h}={'absent' if s is None else s[:8]}" for h, s in zip(self.hosts, seen)))
        return out

    def in_sync(self) -> bool:
        try:
            return self.idle() and not self.differences()
        except (OSError, ValueError):
            return False

    def wait_in_sync(self, timeout: float = 60, stable: float = 0.5) -> None:
        """Until every folder holds the same files (volatile prefixes aside) and Syncthing is
        idle everywhere, twice `stable` seconds apart."""
        def settled() -> bool:
            if not self.in_sync():
                return False
            time.sleep(stable)
            return self.in_sync()
        self._wait(settled, timeout, "the Syncthing folders to be in sync", interval=0.2,
                   describe=self.describe)

    def describe(self) -> str:
        lines = []
        for i, inst in enumerate(self.instances):
            try:
                st = self.folder_status(i)
                lines.append(f"  {inst.name}: state={st.get('state')} "
                             f"need={st.get('needTotalItems')} errors={st.get('errors')} "
                             f"pullErrors={st.get('pullErrors')}")
            except (OSError, ValueError) as exc:
                lines.append(f"  {inst.name}: REST failed: {exc}")
        diffs = self.differences()
        lines += [f"  {d}" for d in diffs[:30]]
        for inst in self.instances:
            lines.append(f"  --- {inst.name} log:\n{inst.output(15)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ acting

    def pause(self, i: int) -> None:
        """Host i goes offline: it pauses every other device (its connections close)."""
        self.instances[i].rest("POST", "/rest/system/pause")
        self._wait(lambda: not self.connected(), 30, f"{self.hosts[i]} to disconnect")

    def resume(self, i: int, wait: bool = True) -> None:
        self.instances[i].rest("POST", "/rest/system/resume")
        if wait:
            self.wait_connected(60)

    def pause_folder(self, i: int, paused: bool = True) -> None:
        """Pause (or resume) the shared folder itself on host i (the config's folder paused)."""
        self.instances[i].rest("PATCH", f"/rest/config/folders/{FOLDER_ID}", {"paused": paused})

    def rescan(self, i: int | None = None) -> None:
        for inst in self.instances if i is None else [self.instances[i]]:
            inst.rest("POST", "/rest/db/scan", folder=FOLDER_ID)

    def latency(self, src: int = 0, dst: int = 1, samples: int = 3,
                timeout: float = 30) -> list[float]:
        """Seconds from writing a new file on host `src` until it is readable, complete, on
        host `dst`, for `samples` files (written one after the other; each is removed after)."""
        out = []
        for _ in range(samples):
            name = f"latency-probe-{secrets.token_hex(4)}.txt"
            payload = secrets.token_hex(32)
            target = self.folders[dst] / name

            def arrived(target: Path = target, payload: str = payload) -> bool:
                try:
                    return target.read_text() == payload
                except OSError:
                    return False
            t0 = time.monotonic()
            (self.folders[src] / name).write_text(payload)
            self._wait(arrived, timeout, f"{name} to reach {self.hosts[dst]}", interval=0.01)
            out.append(time.monotonic() - t0)
            (self.folders[src] / name).unlink()
        return out


def require() -> None:
    """Skip a test when syncthing is missing; in CI (CI=true, which installs it) fail instead."""
    import pytest

    if not available():
        if os.environ.get("CI") == "true":
            pytest.fail("syncthing is not installed; .ci/run installs Debian's package")
        pytest.skip("syncthing is not installed (apt-get install syncthing)")


LAB_SETTLE = 6  # locks.settle for guards over real Syncthing: its measured lag is 1-1.5 s idle, but
# above 3 s at times while two training clients, two servers and two guards share CI's 2 cores


def lab_timing(settle: float = LAB_SETTLE, skew: float = 2.0) -> str:
    """The peers and locks settings of the lab's guards (YAML): heartbeats every second,
    `locks.settle` (the ceiling) and `locks.skew` as given, a ttl the config accepts."""
    ttl = max(30.0, 2 * settle + 2 * skew + 5)
    stale_after = max(10.0, settle + 6)
    return (f"peers:\n  heartbeat_interval: 1\n  stale_after: {stale_after:g}\n"
            f"locks:\n  settle: {settle}\n  skew: {skew}\n  ttl: {ttl}\n  renew_every: 3\n"
            "  timeout: 90\n")


@contextlib.contextmanager
def guarded_syncthing_lab(root: Path, hosts: list[str] | None = None, extra_config: str = "",
                          settle: float = LAB_SETTLE, skew: float = 2.0):
    """Hosts sharing `<host>/sync` through real Syncthing, the store at `<host>/sync/mlruns`
    (created on the first host, synced to the others), each with a real guard daemon (its own
    state folder, port and host_id). Yields (lab, guards, stores); stops everything it started.
    """
    from guard.core.layout import COORDINATION
    from guard.core.store import init_store
    from tests.helpers.daemons import Guard, start_lab_guards

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    hosts = hosts or ["hostA", "hostB"]
    # Heartbeats are rewritten every second: synced, but not compared by in_sync().
    lab = SyncthingLab(root, hosts, volatile=(f"mlruns/{COORDINATION}/peers/",))
    guards: list[Guard] = []
    with lab:
        try:
            stores = [folder / "mlruns" for folder in lab.folders]
            init_store(stores[0])
            lab.wait_in_sync(60)
            start_lab_guards(guards, root, zip(hosts, stores),
                             lab_timing(settle, skew) + extra_config)
            yield lab, guards, stores
        finally:
            for guard in guards:
                guard.teardown()
