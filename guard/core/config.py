"""Configuration: one YAML file, found by a fixed lookup order, overridden by flags.

Every key is declared once in FIELDS (type, default, meaning); loading checks each value and
remembers where it came from, so `guardctl config` can explain the effective configuration and
every error names the key and the file.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

ENV_CONFIG = "MLFLOW_GUARD_CONFIG"
APP_DIR = "mlflow-guard"
HOST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The daemon's components, each a `guard.<name>` logger whose level log.levels can set.
LOG_COMPONENTS = ("daemon", "server", "service", "notify", "processes", "fixer", "watch",
                  "reconcile", "locks", "restorer", "vault", "app")


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it."""


def _default_host_id() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "host"
    return name[:64]


def _default_state_dir() -> str:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
        return os.path.join(base, APP_DIR)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, APP_DIR)


def user_config_path() -> Path:
    """The per-user config file (it may not exist)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser(r"~\AppData\Roaming")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / APP_DIR / "config.yaml"


def system_config_path() -> Path:
    """The machine-wide config file (it may not exist)."""
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / APP_DIR / "config.yaml"
    return Path("/etc") / APP_DIR / "config.yaml"


@dataclass(frozen=True)
class Field:
    key: str
    kind: str  # path | str | host_id | int | float | port | level | levels | bool | choice
    default: Callable[[], Any] | Any
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


FIELDS: tuple[Field, ...] = (
    Field("store", "path", None),
    Field("host_id", "host_id", _default_host_id),
    Field("state_dir", "path", _default_state_dir),
    Field("server.host", "str", "127.0.0.1"),
    Field("server.port", "port", 5050),
    Field("server.workers", "int", 1, minimum=1),
    Field("server.startup_timeout", "float", 90.0, minimum=1),
    Field("server.health_interval", "float", 5.0, minimum=0.2),
    Field("server.health_timeout", "float", 3.0, minimum=0.1),
    Field("server.health_failures", "int", 3, minimum=1),
    Field("server.stop_grace", "float", 10.0, minimum=0),
    Field("restart.backoff_initial", "float", 1.0, minimum=0),
    Field("restart.backoff_max", "float", 60.0, minimum=0),
    Field("restart.crash_loop_count", "int", 5, minimum=1),
    Field("restart.crash_loop_window", "float", 300.0, minimum=1),
    Field("restart.stable_after", "float", 60.0, minimum=0),
    Field("rewrite.enabled", "bool", True),
    Field("rewrite.watch", "choice", "auto", choices=("auto", "events", "polling")),
    Field("rewrite.poll_interval", "float", 10.0, minimum=0.5),
    Field("rewrite.full_pass_interval", "float", 3600.0, minimum=10),
    Field("rewrite.foreign_delay", "float", 30.0, minimum=0),
    Field("rewrite.in_flight_grace", "float", 72 * 3600.0, minimum=0),
    Field("rewrite.experiment_quiet", "float", 600.0, minimum=0),
    Field("peers.heartbeat_interval", "float", 5.0, minimum=0.5),
    Field("peers.stale_after", "float", 60.0, minimum=1),
    Field("locks.backend", "choice", "lease", choices=("lease", "os")),
    Field("locks.settle", "float", 15.0, minimum=0),
    Field("locks.ttl", "float", 120.0, minimum=1),
    Field("locks.renew_every", "float", 20.0, minimum=0.1),
    Field("locks.skew", "float", 2.0, minimum=0),
    Field("locks.timeout", "float", 120.0, minimum=1),
    Field("conflicts.enabled", "bool", True),
    Field("conflicts.scan_interval", "float", 300.0, minimum=1),
    Field("vault.enabled", "bool", True),
    Field("vault.path", "path", None),
    Field("vault.policy", "choice", "restore", choices=("restore", "alert")),
    Field("vault.copy_max_bytes", "int", 100 * 1024 * 1024, minimum=0),
    Field("vault.scan_interval", "float", 300.0, minimum=1),
    Field("gc.retention_days", "float", 30.0, minimum=0),
    Field("gc.model_deletions", "choice", "allow", choices=("allow", "refuse")),
    Field("log.level", "level", "INFO"),
    Field("log.max_bytes", "int", 10 * 1024 * 1024, minimum=1024),
    Field("log.backups", "int", 5, minimum=0),
    Field("log.levels", "levels", dict),
)
FIELD_BY_KEY = {f.key: f for f in FIELDS}
SECTIONS = {f.key.split(".")[0] for f in FIELDS if "." in f.key}


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    workers: int
    startup_timeout: float
    health_interval: float
    health_timeout: float
    health_failures: int
    stop_grace: float


@dataclass(frozen=True)
class RestartConfig:
    backoff_initial: float
    backoff_max: float
    crash_loop_count: int
    crash_loop_window: float
    stable_after: float


@dataclass(frozen=True)
class RewriteConfig:
    enabled: bool
    watch: str
    poll_interval: float
    full_pass_interval: float
    foreign_delay: float
    in_flight_grace: float
    experiment_quiet: float


@dataclass(frozen=True)
class PeersConfig:
    heartbeat_interval: float
    stale_after: float


@dataclass(frozen=True)
class LocksConfig:
    backend: str
    settle: float
    ttl: float
    renew_every: float
    skew: float
    timeout: float


@dataclass(frozen=True)
class ConflictsConfig:
    enabled: bool
    scan_interval: float


@dataclass(frozen=True)
class VaultConfig:
    enabled: bool
    path: Path | None
    policy: str
    copy_max_bytes: int
    scan_interval: float


@dataclass(frozen=True)
class GcConfig:
    retention_days: float
    model_deletions: str


@dataclass(frozen=True)
class LogConfig:
    level: str
    max_bytes: int
    backups: int
    levels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    store: Path | None
    host_id: str
    state_dir: Path
    server: ServerConfig
    restart: RestartConfig
    rewrite: RewriteConfig
    peers: PeersConfig
    locks: LocksConfig
    conflicts: ConflictsConfig
    vault: VaultConfig
    gc: GcConfig
    log: LogConfig
    file: Path | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    def require_store(self) -> Path:
        """The store, or an error saying how to name one."""
        if self.store is None:
            where = f" in {self.file}" if self.file else ""
            raise ConfigError(
                f"no store configured{where}: set `store:` in the config file or pass "
                "--store PATH (the synced mlruns folder)"
            )
        return self.store

    @property
    def vault_root(self) -> Path:
        """The vault folder: vault.path, or state_dir/vault."""
        return self.vault.path if self.vault.path is not None else self.state_dir / "vault"

    def values(self) -> dict[str, Any]:
        """Flat dotted-key view, for printing and status."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            obj: Any = self
            for part in f.key.split("."):
                obj = getattr(obj, part)
            out[f.key] = str(obj) if isinstance(obj, Path) else obj
        return out


def find_config_file(explicit: str | None, env: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
    """Apply the lookup order; returns the file (or None) and why it was chosen."""
    env = os.environ if env is None else env
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (from --config) does not exist; check the path")
        return path.absolute(), "--config"
    if env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG]).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"config file {path} (from ${ENV_CONFIG}) does not exist; fix or unset ${ENV_CONFIG}"
            )
        return path.absolute(), f"${ENV_CONFIG}"
    for path, why in ((user_config_path(), "user config"), (system_config_path(), "system config")):
        if path.is_file():
            return path, why
    return None, "none found"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"config file {path} is not valid YAML{where}: {problem}; "
            "fix the file (config.example.yaml shows every key)"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of keys to values, not a {type(data).__name__}"
        )
    return data


def _unknown(key: str, known: list[str], path: Path) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    did = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown key '{key}' in {path}{did}")


def flatten(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Turn the nested file mapping into dotted keys, rejecting unknown keys."""
    flat: dict[str, Any] = {}
    top_known = sorted({f.key.split(".")[0] for f in FIELDS})
    for key, value in data.items():
        key = str(key)
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' in {path} must be a mapping (a section), got {value!r}")
            known = [f.key.split(".", 1)[1] for f in FIELDS if f.key.startswith(key + ".")]
            for sub, subval in value.items():
                if str(sub) not in known:
                    raise _unknown(f"{key}.{sub}", [f"{key}.{k}" for k in known], path)
                flat[f"{key}.{sub}"] = subval
        elif key in FIELD_BY_KEY:
            flat[key] = value
        else:
            raise _unknown(key, top_known, path)
    return flat


def check_value(f: Field, value: Any, origin: str, base_dir: Path | None) -> Any:
    """Validate one value; `base_dir` is where relative paths resolve (None: refuse them)."""
    where = f"'{f.key}' ({origin})"
    if value is None and f.key in ("store", "vault.path"):
        return None
    if f.kind == "path":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} must be a folder path, got {value!r}")
        expanded = os.path.expandvars(os.path.expanduser(value.strip()))
        if not os.path.isabs(expanded):
            if base_dir is None:
                raise ConfigError(
                    f"{where} is the relative path {value!r}; write an absolute path "
                    "(a service does not run in your working folder)"
                )
            expanded = str(base_dir / expanded)
        return Path(os.path.normpath(expanded))
    if f.kind in ("str", "host_id", "level"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
        if f.kind == "host_id" and not HOST_ID_RE.match(value):
            raise ConfigError(
                f"{where} is {value!r}; use 1-64 letters, digits, '.', '_' or '-' "
                "(it names files in the shared store)"
            )
        if f.kind == "level":
            if value.upper() not in LOG_LEVELS:
                raise ConfigError(f"{where} is {value!r}; use one of {', '.join(LOG_LEVELS)}")
            return value.upper()
        return value
    if f.kind == "levels":
        return _check_levels(value, where)
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if f.kind == "choice":
        if value not in f.choices:
            raise ConfigError(f"{where} is {value!r}; use one of {', '.join(f.choices)}")
        return value
    if f.kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if f.kind == "port" and not 1 <= value <= 65535:
            raise ConfigError(f"{where} is {value}; a port is between 1 and 65535")
    if f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    if f.minimum is not None and value < f.minimum:
        raise ConfigError(f"{where} is {value}; it must be at least {f.minimum:g}")
    return value


def _check_levels(value: Any, where: str) -> dict[str, str]:
    """log.levels: a mapping of component to level, both checked."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of component to level, e.g. "
                          f"{{vault: DEBUG}}; got {value!r}")
    out = {}
    for component, level in value.items():
        if component not in LOG_COMPONENTS:
            hint = difflib.get_close_matches(str(component), LOG_COMPONENTS, n=1)
            did = f"did you mean '{hint[0]}'?" if hint else f"use one of {', '.join(LOG_COMPONENTS)}"
            raise ConfigError(f"{where} names the unknown component {component!r}; {did}")
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            raise ConfigError(f"{where}: the level of {component!r} is {level!r}; use one of "
                              f"{', '.join(LOG_LEVELS)}")
        out[str(component)] = level.upper()
    return out


def _is_within(child: Path, parent: Path) -> bool:
    child_r, parent_r = os.path.realpath(child), os.path.realpath(parent)
    if sys.platform == "win32":
        child_r, parent_r = child_r.lower(), parent_r.lower()
    return child_r == parent_r or child_r.startswith(parent_r.rstrip(os.sep) + os.sep)


def load_config(
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Find, read and check the configuration; `overrides` are flag values by dotted key."""
    path, why = find_config_file(config_path, env)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for f in FIELDS:
        values[f.key], origins[f.key] = f.default_value(), "default"
    if path is not None:
        for key, raw in flatten(_read_yaml(path), path).items():
            if raw is None:  # `key: null` means "use the default"
                continue
            values[key] = check_value(FIELD_BY_KEY[key], raw, f"in {path}", None)
            origins[key] = f"{path} ({why})"
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        flag = "--" + key.replace("_", "-").split(".")[-1]
        values[key] = check_value(FIELD_BY_KEY[key], raw, f"flag {flag}", Path.cwd())
        origins[key] = f"flag {flag}"
    for f in FIELDS:
        if origins[f.key] == "default" and values[f.key] is not None:
            values[f.key] = check_value(f, values[f.key], "default", None)

    store, state_dir = values["store"], values["state_dir"]
    if store is not None and _is_within(state_dir, store):
        raise ConfigError(
            f"'state_dir' ({origins['state_dir']}) is {state_dir}, inside the store {store}; "
            "the state folder is local to this machine and must not be synced: choose a folder "
            "outside the store"
        )
    if store is not None and _is_within(store, state_dir):
        raise ConfigError(
            f"'store' ({origins['store']}) is {store}, inside the state folder {state_dir}; "
            "point store at the synced mlruns folder"
        )

    vault = values["vault.path"] if values["vault.path"] is not None else state_dir / "vault"
    if store is not None and (_is_within(vault, store) or _is_within(store, vault)):
        where = origins["vault.path"] if values["vault.path"] is not None else \
            f"state_dir, {origins['state_dir']}"
        raise ConfigError(
            f"the vault ({where}) is {vault}, which overlaps the store {store}; the vault is "
            "this machine's unsynced copy: set vault.path to a local folder outside the store, "
            "on the store's volume so hard links work")

    def section(name: str, cls: type) -> Any:
        prefix = name + "."
        return cls(**{k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)})

    _check_timing(values, origins)
    return Config(
        store=store,
        host_id=values["host_id"],
        state_dir=state_dir,
        server=section("server", ServerConfig),
        restart=section("restart", RestartConfig),
        rewrite=section("rewrite", RewriteConfig),
        peers=section("peers", PeersConfig),
        locks=section("locks", LocksConfig),
        conflicts=section("conflicts", ConflictsConfig),
        vault=section("vault", VaultConfig),
        gc=section("gc", GcConfig),
        log=section("log", LogConfig),
        file=path,
        origins=origins,
    )


def _check_timing(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """The lease protocol's assumptions (see leases.py), checked where a person can fix them."""
    ttl, renew, settle, skew = (values[f"locks.{k}"] for k in ("ttl", "renew_every", "settle",
                                                                "skew"))
    beat, stale = values["peers.heartbeat_interval"], values["peers.stale_after"]

    def named(*keys: str) -> str:
        return ", ".join(f"'{k}' = {values[k]:g} ({origins[k]})" for k in keys)

    if ttl <= renew + settle:
        raise ConfigError(
            f"{named('locks.ttl', 'locks.renew_every', 'locks.settle')}: a lease must outlive "
            "a renewal plus its sync delay; raise locks.ttl above renew_every + settle")
    if ttl <= 2 * settle + 2 * skew:
        raise ConfigError(
            f"{named('locks.ttl', 'locks.settle', 'locks.skew')}: a claim must outlive its "
            "settling; raise locks.ttl above 2 * settle + 2 * skew")
    if stale < beat + settle:
        raise ConfigError(
            f"{named('peers.stale_after', 'peers.heartbeat_interval', 'locks.settle')}: a "
            "running host would look stale; raise peers.stale_after to at least "
            "heartbeat_interval + locks.settle")
