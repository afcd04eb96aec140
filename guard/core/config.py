"""Configuration: one YAML file, found by a fixed lookup order, overridden by flags.

Every key is declared once, as a field of the frozen dataclass that holds it (name and type)
with `key(kind, default, minimum)` metadata; FIELDS is read off those dataclasses. Loading checks
each value and remembers where it came from, so `guardctl config` can explain the effective
configuration and every error names the key and the file.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, is_dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from guard.core.runtime import this_host_id
from guard.core.strenum import StrEnum

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
    return this_host_id()  # the machine's name; under WSL with "-wsl-<distro>"


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


class WatchMode(StrEnum):
    """rewrite.watch: how changes to the store are noticed."""
    AUTO = "auto"        # filesystem events, polling when watches cannot be set up
    EVENTS = "events"
    POLLING = "polling"


class LockBackend(StrEnum):
    """locks.backend: lease files for a replicated folder, OS locks for a shared mount."""
    LEASE = "lease"
    OS = "os"


class VaultPolicy(StrEnum):
    """vault.policy: what the vault does about data deleted without a tombstone."""
    RESTORE = "restore"
    ALERT = "alert"


class ServerAuth(StrEnum):
    """server.auth: who may talk to the server. none: anyone who reaches the port; basic:
    MLflow's basic-auth users (HTTP basic authentication, `mlflow server --app-name basic-auth`
    composed with the guard's app)."""
    NONE = "none"
    BASIC = "basic"


class ModelDeletions(StrEnum):
    """gc.model_deletions: whether the server lets registered models be deleted."""
    ALLOW = "allow"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Field:
    """One key as loading sees it: dotted name, kind, default and bounds."""
    key: str
    kind: str  # path | str | host_id | int | float | port | level | levels | bool | choice
    default: Callable[[], Any] | Any  # a callable is called for the value
    minimum: float | None = None
    choices: tuple[StrEnum, ...] = ()  # for a choice: the members of its default's StrEnum

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


_KEY = "guard.config.key"


def key(kind: str, default: Any, minimum: float | None = None) -> dict[str, Any]:
    """The metadata that makes a config dataclass field a key: `field(metadata=key(...))`.

    The field gives the key its name and type; this gives the rest, so each key is written
    down once. A choice's default is a StrEnum member, whose class lists the choices."""
    return {_KEY: (kind, default, minimum)}


@dataclass(frozen=True)
class ServerConfig:
    host: str = field(metadata=key("str", "127.0.0.1"))
    # Listening beyond loopback takes both: an explicit switch (no exposure by a typo in host)
    # and authentication (the server's API can delete). See exposure_problem.
    expose: bool = field(metadata=key("bool", False))
    auth: ServerAuth = field(metadata=key("choice", ServerAuth.NONE))
    auth_config: Path | None = field(metadata=key("path", None))  # MLflow's basic_auth.ini
    port: int = field(metadata=key("port", 5050))
    workers: int = field(metadata=key("int", 1, minimum=1))
    startup_timeout: float = field(metadata=key("float", 90.0, minimum=1))
    health_interval: float = field(metadata=key("float", 5.0, minimum=0.2))
    health_timeout: float = field(metadata=key("float", 3.0, minimum=0.1))
    health_failures: int = field(metadata=key("int", 3, minimum=1))
    stop_grace: float = field(metadata=key("float", 10.0, minimum=0))


@dataclass(frozen=True)
class RestartConfig:
    backoff_initial: float = field(metadata=key("float", 1.0, minimum=0))
    backoff_max: float = field(metadata=key("float", 60.0, minimum=0))
    crash_loop_count: int = field(metadata=key("int", 5, minimum=1))
    crash_loop_window: float = field(metadata=key("float", 300.0, minimum=1))
    stable_after: float = field(metadata=key("float", 60.0, minimum=0))


@dataclass(frozen=True)
class RewriteConfig:
    enabled: bool = field(metadata=key("bool", True))
    watch: WatchMode = field(metadata=key("choice", WatchMode.AUTO))
    poll_interval: float = field(metadata=key("float", 10.0, minimum=0.5))
    full_pass_interval: float = field(metadata=key("float", 3600.0, minimum=10))
    foreign_delay: float = field(metadata=key("float", 30.0, minimum=0))
    in_flight_grace: float = field(metadata=key("float", 72 * 3600.0, minimum=0))
    experiment_quiet: float = field(metadata=key("float", 600.0, minimum=0))


@dataclass(frozen=True)
class PeersConfig:
    heartbeat_interval: float = field(metadata=key("float", 5.0, minimum=0.5))
    stale_after: float = field(metadata=key("float", 60.0, minimum=1))


@dataclass(frozen=True)
class LocksConfig:
    backend: LockBackend = field(metadata=key("choice", LockBackend.LEASE))
    settle: float = field(metadata=key("float", 15.0, minimum=0))
    ttl: float = field(metadata=key("float", 120.0, minimum=1))
    renew_every: float = field(metadata=key("float", 20.0, minimum=0.1))
    skew: float = field(metadata=key("float", 2.0, minimum=0))
    timeout: float = field(metadata=key("float", 60.0, minimum=1))


@dataclass(frozen=True)
class ConflictsConfig:
    enabled: bool = field(metadata=key("bool", True))
    scan_interval: float = field(metadata=key("float", 300.0, minimum=1))


@dataclass(frozen=True)
class VaultConfig:
    enabled: bool = field(metadata=key("bool", True))
    path: Path | None = field(metadata=key("path", None))
    policy: VaultPolicy = field(metadata=key("choice", VaultPolicy.RESTORE))
    copy_max_bytes: int = field(metadata=key("int", 100 * 1024 * 1024, minimum=0))
    scan_interval: float = field(metadata=key("float", 300.0, minimum=1))


@dataclass(frozen=True)
class GcConfig:
    retention_days: float = field(metadata=key("float", 30.0, minimum=0))
    model_deletions: ModelDeletions = field(metadata=key("choice", ModelDeletions.ALLOW))


@dataclass(frozen=True)
class LogConfig:
    level: str = field(metadata=key("level", "INFO"))
    max_bytes: int = field(metadata=key("int", 10 * 1024 * 1024, minimum=1024))
    backups: int = field(metadata=key("int", 5, minimum=0))
    levels: Mapping[str, str] = field(metadata=key("levels", dict))


@dataclass(frozen=True)
class Config:
    """The effective configuration: the top-level keys, one dataclass per section (the
    section's name is the field's), then where it was read from and each value's origin."""
    store: Path | None = field(metadata=key("path", None))
    host_id: str = field(metadata=key("host_id", _default_host_id))
    state_dir: Path = field(metadata=key("path", _default_state_dir))
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


def _declared(cls: type, prefix: str = "") -> Iterator[Field]:
    """The keys a config dataclass declares, in order; a field whose type is a dataclass is a
    section, whose keys are `<section>.<name>`."""
    hints = get_type_hints(cls)
    for f in dataclass_fields(cls):
        if _KEY in f.metadata:
            kind, default, minimum = f.metadata[_KEY]
            choices = tuple(type(default)) if isinstance(default, StrEnum) else ()
            yield Field(prefix + f.name, kind, default, minimum, choices)
        elif is_dataclass(hints[f.name]):
            yield from _declared(hints[f.name], prefix + f.name + ".")


FIELDS: tuple[Field, ...] = tuple(_declared(Config))
FIELD_BY_KEY = {f.key: f for f in FIELDS}
# section name -> its dataclass, e.g. "server" -> ServerConfig
SECTION_TYPES: dict[str, type] = {name: t for name, t in get_type_hints(Config).items()
                                  if isinstance(t, type) and is_dataclass(t)}
SECTIONS = set(SECTION_TYPES)


def find_config_file(explicit: str | None,
                     env: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
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
                f"config file {path} (from ${ENV_CONFIG}) does not exist; "
                f"fix or unset ${ENV_CONFIG}"
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
    if value is None and f.default is None:  # store, vault.path: None means unset
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
        return f.choices[f.choices.index(value)]  # the StrEnum member
    if f.kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if f.kind == "port" and not 1 <= value <= 65535:
            raise ConfigError(f"{where} is {value}; a port is between 1 and 65535")
    if f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # .nan and .inf pass every comparison or none
            raise ConfigError(f"{where} is {value}: not a finite number")
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
            did = (f"did you mean '{hint[0]}'?" if hint
                   else f"use one of {', '.join(LOG_COMPONENTS)}")
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


# The environment the guard's app reads its auth mode from (set by the daemon for its server).
SERVER_AUTH_ENV = "MLFLOW_GUARD_AUTH"
# MLflow's names: the basic-auth ini, and the admin password that overrides the ini's.
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
AUTH_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
# The admin password older MLflow releases shipped in basic_auth.ini: public, so no protection
# (GHSA-gq3w-7jj3-x7gr; MLflow 3.x refuses it too, but only inside the server's workers).
LEGACY_ADMIN_PASSWORD = "password1234"


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a server bound to `host`: localhost, 127.0.0.0/8
    or ::1. A wildcard (0.0.0.0, ::), any other address and any other name count as reachable
    from the network: a name can resolve to anything."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def exposure_problem(host: str, expose: bool, auth: ServerAuth) -> str | None:
    """Why this bind is refused, or None. Beyond loopback the server's API (which can delete
    runs, experiments and models) needs authentication, and exposure needs server.expose: true
    so that a typo in server.host exposes nothing."""
    if is_loopback(host):
        return None
    missing = []
    if auth == ServerAuth.NONE:
        missing.append("server.auth: basic")
    if not expose:
        missing.append("server.expose: true")
    if not missing:
        return None
    wild = " (every network interface)" if host.strip("[] ") in ("0.0.0.0", "::", "") else ""
    why = []
    if auth == ServerAuth.NONE:
        why.append("server.auth is none, so anyone on the network could delete runs, "
                   "experiments and models through the server's API")
    if not expose:
        why.append("server.expose is not true")
    return (f"'server.host' is {host!r}, which other machines can reach{wild}, but "
            f"{' and '.join(why)}. To serve only this machine set server.host: 127.0.0.1; to "
            f"serve other machines set {' and '.join(missing)} (MLflow's basic-auth users; the "
            "admin password comes from $MLFLOW_AUTH_ADMIN_PASSWORD or the ini file named by "
            "server.auth_config)")


def auth_config_problem(text: str | None, where: str, env: Mapping[str, str]) -> str | None:
    """Why MLflow's basic-auth setup (the ini text, None for MLflow's bundled one, and the
    environment) is refused, or None: an ini MLflow cannot read, or the publicly known admin
    password. The environment's password wins over the ini's, as in MLflow."""
    password = None
    if text is not None:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text, source=where)
        except configparser.Error as exc:
            return f"{where} is not an ini file MLflow can read: {exc}"
        missing = [k for k in ("default_permission", "database_uri")
                   if not parser.has_option("mlflow", k)]
        if missing:
            return (f"{where} lacks {', '.join(missing)} in its [mlflow] section; start from "
                    "MLflow's basic_auth.ini (mlflow/server/auth/basic_auth.ini)")
        password = parser.get("mlflow", "admin_password", fallback=None, raw=True)
    if AUTH_PASSWORD_ENV in env:
        password, where = env[AUTH_PASSWORD_ENV], f"${AUTH_PASSWORD_ENV}"
    if password is not None and password.strip() == LEGACY_ADMIN_PASSWORD:
        return (f"the basic-auth admin password ({where}) is {LEGACY_ADMIN_PASSWORD!r}, the "
                "default older MLflow releases shipped: it is public. Choose another "
                f"password in ${AUTH_PASSWORD_ENV} or admin_password")
    return None


def _check_exposure(values: Mapping[str, Any], origins: Mapping[str, str],
                    env: Mapping[str, str]) -> None:
    """The shell around exposure_problem and auth_config_problem: origins, the ini file."""
    problem = exposure_problem(values["server.host"], values["server.expose"],
                               values["server.auth"])
    if problem is not None:
        names = ", ".join(f"'{k}' ({origins[k]})" for k in
                          ("server.host", "server.auth", "server.expose"))
        raise ConfigError(f"{problem} [{names}]")
    if values["server.auth"] != ServerAuth.BASIC:
        return
    path, text = values["server.auth_config"], None
    where = "MLflow's bundled basic_auth.ini"
    if path is not None:
        where = f"'server.auth_config' ({origins['server.auth_config']}), {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where} cannot be read: {exc}; point server.auth_config at "
                              "MLflow's basic-auth ini file") from exc
    problem = auth_config_problem(text, where, env)
    if problem is not None:
        raise ConfigError(problem)


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
    _check_exposure(values, origins, os.environ if env is None else env)
    return Config(
        store=store,
        host_id=values["host_id"],
        state_dir=state_dir,
        **{name: section(name, cls) for name, cls in SECTION_TYPES.items()},
        file=path,
        origins=origins,
    )


# MLflow's client gives up on a request after this long (MLFLOW_HTTP_REQUEST_TIMEOUT default)
MLFLOW_CLIENT_TIMEOUT = 120.0


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
    if values["locks.timeout"] < 2 * settle:
        raise ConfigError(
            f"{named('locks.timeout', 'locks.settle')}: a machine that just started waits up "
            "to 2 * locks.settle before its first locks (until the others surely know it); "
            "raise locks.timeout to at least 2 * settle, or lower locks.settle")
    if values["locks.timeout"] >= MLFLOW_CLIENT_TIMEOUT:
        raise ConfigError(
            f"{named('locks.timeout')}: a request waiting that long for a lock outlives the "
            f"MLflow client's HTTP timeout ({MLFLOW_CLIENT_TIMEOUT:g} s, "
            "MLFLOW_HTTP_REQUEST_TIMEOUT), which then sends the create again while the server "
            f"may still finish the first; set locks.timeout below {MLFLOW_CLIENT_TIMEOUT:g} "
            "(default 60): the client retries the 503 it gets instead")
