"""Sync clients' conflict copies of MLflow store files: recognising them and folding them back.

When two machines change the same file within the sync delay, the sync client keeps one
version under the file's name and the other beside it under a conflict-copy name
(`meta_Andy-PC_Jan-03-0901-2013_Conflict_1.yaml`, `loss.sync-conflict-20240105-101500-ABCDEFG`,
...). MLflow never reads the copy: whatever it alone holds (metric points, a finished run's
status, an alias) is invisible until someone folds it into the original.

core.conflictnames recognises the copy names; `kind_of` says which kind of store file the
original is; one resolver per kind decides, from the two contents only, what the original
should become (`Resolution`). `resolve` does both from raw bytes.

Never loses data. No resolver deletes anything: the copy stays as it is, and the (later)
caller moves it to a quarantine, so whatever is not kept in the original stays in the copy.
When the action rewrites the original (`merge`, `take_copy`) the caller quarantines the
original's previous bytes too: a merged meta.yaml or a newer tag replaces values that only
the old original held.

Pure: works on names, store-relative path segments, bytes and parsed meta.yaml mappings; no
disk access.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from guard.core import metayaml
from guard.core.layout import Kind, describe, version_target
from guard.core.paths import PORTABLE_SCHEME, parse_local
from guard.core.timefmt import ms

# ---- which kind of store file -------------------------------------------------------------

METRIC, PARAM, TAG, ALIAS = "metric", "param", "tag", "alias"
RUN_META, EXPERIMENT_META, LOGGED_MODEL_META = "run_meta", "experiment_meta", "logged_model_meta"
REGISTERED_MODEL_META, MODEL_VERSION_META, OTHER = (
    "registered_model_meta", "model_version_meta", "other")
KINDS = (METRIC, PARAM, TAG, ALIAS, RUN_META, EXPERIMENT_META, LOGGED_MODEL_META,
         REGISTERED_MODEL_META, MODEL_VERSION_META, OTHER)

_META_KINDS = {Kind.RUN: RUN_META, Kind.EXPERIMENT: EXPERIMENT_META,
               Kind.LOGGED_MODEL: LOGGED_MODEL_META, Kind.REGISTERED_MODEL: REGISTERED_MODEL_META,
               Kind.MODEL_VERSION: MODEL_VERSION_META}
_KEYED = {Kind.METRIC: METRIC, Kind.PARAM: PARAM, Kind.TAG: TAG, Kind.ALIAS: ALIAS}


def kind_of(rel: tuple[str, ...]) -> str:
    """The kind of store file at store-relative `rel` (the ORIGINAL's path), one of KINDS.

    A unit's meta.yaml, or one key of a metric, param, tag (of a run, logged model,
    experiment, trace, registered model or version) or alias, as layout.describe says;
    `models/<name>/aliases/<alias>` holds the version an alias names (MLflow 3 reads aliases
    from there, not from the model's meta.yaml). Everything else is OTHER.
    """
    entry = describe(rel)
    if entry.meta:
        return _META_KINDS[entry.kind]
    return _KEYED.get(entry.kind, OTHER) if entry.key else OTHER


# ---- resolutions --------------------------------------------------------------------------

MERGE, KEEP_ORIGINAL, TAKE_COPY, RENUMBER, NEEDS_PERSON = (
    "merge", "keep_original", "take_copy", "renumber", "needs_person")


@dataclass(frozen=True)
class Resolution:
    """What the original should become.

    action: merge (write `merged` as the original), keep_original, take_copy (write the
    copy's bytes as the original), renumber (model versions only: two different versions
    got the same number; keep both, the one named by `renumber` moves to the next free
    number), needs_person (nothing safe to do automatically).
    conflict: the two sides really disagreed and a person should hear of it, even when the
    action settles it; False for copies that differ only in the way sync lag makes them.
    """

    action: str
    report: str
    conflict: bool
    merged: bytes | None = None
    renumber: str | None = None  # 'original' | 'copy', for action renumber

    @property
    def rewrites_original(self) -> bool:
        """The original's bytes change: the caller quarantines the old ones as well."""
        return self.action in (MERGE, TAKE_COPY)


def _same(report: str = "The copy is identical to the original.") -> Resolution:
    return Resolution(KEEP_ORIGINAL, report, False)


def _show(value: object, limit: int = 60) -> str:
    """A value for a report: quoted, one line, cut short."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- metrics: append-only lines `<timestamp> <value> <step>[ <run_id>][ <dataset> <digest>]`

def _metric_key(text: bytes) -> tuple | None:
    """Sort key of a metric line as MLflow reads it, or None if MLflow could not read it."""
    try:
        fields = text.decode("ascii").strip().split(" ")
        if not 2 <= len(fields) <= 6:
            return None
        ts, value = int(fields[0]), float(fields[1])
        step = int(fields[2]) if len(fields) >= 3 else 0
    except (UnicodeDecodeError, ValueError):
        return None
    return ts, step, math.isnan(value), 0.0 if math.isnan(value) else value, text


def resolve_metric(original: bytes, copy: bytes) -> Resolution:
    """Union of both files' lines, exact duplicates dropped, sorted by (timestamp, step,
    value); each line's text is kept as written. Lines MLflow could not read are kept too,
    after the others, and reported: they are data someone may need, though MLflow refuses
    to read a metric file holding one. Blank lines carry nothing and are dropped.
    """
    def lines(raw: bytes) -> list[bytes]:
        return [line for line in raw.splitlines() if line.strip()]

    mine, theirs = lines(original), lines(copy)
    have = set(mine)
    added = [line for line in dict.fromkeys(theirs) if line not in have]
    if not added:
        return _same(f"All {len(set(theirs))} lines of the copy are already in the original.")
    union = list(dict.fromkeys(mine + added))
    good = sorted((key, line) for line in union if (key := _metric_key(line)) is not None)
    bad = [line for line in union if _metric_key(line) is None]
    merged = b"".join(line + b"\n" for line in [line for _, line in good] + bad)
    dropped = len(theirs) - len(added)
    report = (f"Merged the metric: the copy adds {len(added)} line(s) to the original's "
              f"{len(set(mine))}, {dropped} duplicate(s) dropped")
    if bad:
        report += (f"; {len(bad)} line(s) are not valid metric lines and were kept at the end "
                   f"(MLflow will refuse to read the file until they are fixed), e.g. "
                   f"{_show(bad[0])}")
    return Resolution(MERGE, report + ".", bool(bad), merged)


# ---- single-value files: params, tags, aliases ---------------------------------------------

def _chomp(raw: bytes) -> bytes:
    """A value without one trailing line end (editors and some clients add one)."""
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(b"\n") else raw


def resolve_param(original: bytes, copy: bytes) -> Resolution:
    """A param never changes in MLflow (logging another value is refused), so two different
    values mean two machines logged the run differently: keep the original, flag it."""
    if _chomp(original) == _chomp(copy):
        return _same("The copy holds the same param value as the original.")
    return Resolution(KEEP_ORIGINAL, f"The param differs: the original holds "
                      f"{_show(_chomp(original))}, the copy {_show(_chomp(copy))}; kept the "
                      f"original's.", True)


def _newer(noun: str, original: bytes, copy: bytes, original_mtime: float,
           copy_mtime: float) -> Resolution:
    if _chomp(original) == _chomp(copy):
        return _same(f"The copy holds the same {noun} value as the original.")
    take = copy_mtime > original_mtime
    why = "the copy's file is newer" if take else (
        "the original's file is newer" if original_mtime > copy_mtime
        else "both files have the same time")
    kept = copy if take else original
    return Resolution(TAKE_COPY if take else KEEP_ORIGINAL,
                      f"The {noun} differs: the original holds {_show(_chomp(original))}, the "
                      f"copy {_show(_chomp(copy))}; kept {_show(_chomp(kept))} because {why}.",
                      True)


def resolve_tag(original: bytes, copy: bytes, original_mtime: float,
                copy_mtime: float) -> Resolution:
    """The newer file wins (mtimes in seconds; a tie keeps the original): tags are meant to
    be overwritten. A difference is still a conflict: someone's edit is no longer shown."""
    return _newer("tag", original, copy, original_mtime, copy_mtime)


def resolve_alias(original: bytes, copy: bytes, original_mtime: float,
                  copy_mtime: float) -> Resolution:
    """An alias file holds a version number: as for tags, the newer file wins, and two
    machines pointing one alias at different versions is a conflict."""
    return _newer("alias", original, copy, original_mtime, copy_mtime)


# ---- meta.yaml files (parsed mappings) -----------------------------------------------------

def _later(original: dict, copy: dict, key: str) -> bool:
    """Whether the copy's `key` (epoch ms) is later; a missing time is earliest, a tie False."""
    a, b = ms(original.get(key)), ms(copy.get(key))
    return b is not None and (a is None or b > a)


def _differing(original: dict, copy: dict) -> list[str]:
    return sorted(k for k in set(original) | set(copy) if original.get(k) != copy.get(k))


def _also(original: dict, copy: dict, keys: list[str]) -> str:
    shown = ", ".join(f"{k} (original {_show(original.get(k), 40)}, copy "
                      f"{_show(copy.get(k), 40)})" for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _identity(what: str, original: dict, copy: dict, keys: tuple[str, ...]) -> Resolution | None:
    """needs_person when the two files are not even about the same thing."""
    differ = [k for k in keys if str(original.get(k)) != str(copy.get(k))]
    if not differ:
        return None
    return Resolution(NEEDS_PERSON, f"The copy describes a different {what}: "
                      f"{_also(original, copy, differ)}; nothing was changed.", True)


def _pick(original: dict, copy: dict, take: bool, why: str, expected: set[str],
          clash: str = "") -> Resolution:
    """Keep one side whole; differences outside `expected` (sync lag, the guard's own
    rewrites) make it a conflict and are named."""
    unexpected = [k for k in _differing(original, copy) if k not in expected]
    report = ("Took the copy" if take else "Kept the original") + ": " + why
    if clash:
        report += "; " + clash
    if unexpected:
        report += (f"; also differ, kept from the {'copy' if take else 'original'}: "
                   + _also(original, copy, unexpected))
    return Resolution(TAKE_COPY if take else KEEP_ORIGINAL, report + ".",
                      bool(unexpected) or bool(clash))


RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
RUN_ENDED = (3, 4, 5)


def resolve_run_meta(original: dict, copy: dict) -> Resolution:
    """A finished run (FINISHED, FAILED, KILLED) beats a RUNNING or SCHEDULED one: the other
    machine simply had not seen the end yet. Otherwise the later end_time wins. Every key
    comes from the winner; a differing lifecycle_stage (deleted on one machine) is reported
    as a conflict but not overruled."""
    if original == copy:
        return _same()
    wrong = _identity("run", original, copy, ("run_id", "experiment_id"))
    if wrong:
        return wrong
    so, sc = original.get("status"), copy.get("status")
    ended_o, ended_c = so in RUN_ENDED, sc in RUN_ENDED
    name = lambda s: RUN_STATUS.get(s, _show(s))  # noqa: E731
    if ended_o != ended_c:
        take = ended_c
        why = (f"its run is {name(sc if take else so)} where the "
               f"{'original' if take else 'copy'}'s is {name(so if take else sc)}")
    elif _later(original, copy, "end_time") or _later(copy, original, "end_time"):
        take = _later(original, copy, "end_time")
        why = "its run ended later"
    else:
        take, why = False, "neither run ended later"
    return _pick(original, copy, take, why, {"status", "end_time", "artifact_uri"})


def resolve_experiment_meta(original: dict, copy: dict) -> Resolution:
    """The later last_update_time wins. A different name is a clash (two experiments, or a
    rename on each machine): reported as a conflict."""
    if original == copy:
        return _same()
    wrong = _identity("experiment", original, copy, ("experiment_id",))
    if wrong:
        return wrong
    take = _later(original, copy, "last_update_time")
    why = "it was updated later" if take or _later(copy, original, "last_update_time") \
        else "neither was updated later"
    clash = ""
    if original.get("name") != copy.get("name"):
        clash = (f"name clash: the original is named {_show(original.get('name'))}, the copy "
                 f"{_show(copy.get('name'))}")
    return _pick({k: v for k, v in original.items() if k != "name"},
                 {k: v for k, v in copy.items() if k != "name"},
                 take, why, {"last_update_time", "artifact_location"}, clash)


MODEL_ENDED = (2, 3)  # LoggedModelStatus READY, FAILED (1 PENDING, 0 UNSPECIFIED)


def resolve_logged_model_meta(original: dict, copy: dict) -> Resolution:
    """As for runs: a READY or FAILED logged model beats a PENDING one; otherwise the later
    last_updated_timestamp wins."""
    if original == copy:
        return _same()
    wrong = _identity("logged model", original, copy, ("model_id", "experiment_id"))
    if wrong:
        return wrong
    ended_o, ended_c = original.get("status") in MODEL_ENDED, copy.get("status") in MODEL_ENDED
    if ended_o != ended_c:
        take, why = ended_c, "its model is no longer pending"
    else:
        take = _later(original, copy, "last_updated_timestamp")
        why = "it was updated later" if take or _later(copy, original,
                                                       "last_updated_timestamp") \
            else "neither was updated later"
    return _pick(original, copy, take, why,
                 {"status", "status_message", "last_updated_timestamp", "artifact_location"})


def resolve_registered_model_meta(original: dict, copy: dict) -> Resolution:
    """Aliases are merged (union; one alias naming different versions is a clash, settled by
    the later last_updated_timestamp); every other key comes from the later side.

    MLflow 3 keeps the truth elsewhere: each alias in `aliases/<alias>` (kind 'alias'), each
    tag in `tags/<key>` (never in this file). The `aliases` here is the snapshot MLflow wrote
    with the file; merging it keeps that snapshot from losing either side's aliases.
    """
    if original == copy:
        return _same()
    wrong = _identity("registered model", original, copy, ("name",))
    if wrong:
        return wrong
    take = _later(original, copy, "last_updated_timestamp")
    later, earlier = (copy, original) if take else (original, copy)
    side, other = ("copy", "original") if take else ("original", "copy")
    a_later, a_earlier = later.get("aliases"), earlier.get("aliases")
    a_later = a_later if isinstance(a_later, dict) else {}
    a_earlier = a_earlier if isinstance(a_earlier, dict) else {}
    aliases = {**a_earlier, **a_later}
    clashes = sorted(k for k in set(a_later) & set(a_earlier) if a_later[k] != a_earlier[k])
    doc = dict(later)
    if aliases or "aliases" in doc:
        doc["aliases"] = dict(sorted(aliases.items()))
    why = (f"the {side} was updated later" if take or _later(copy, original,
                                                              "last_updated_timestamp")
           else "neither was updated later")
    notes = [f"keys from the {side} ({why})"]
    gained = sorted(set(aliases) - set(a_later))
    if gained:
        notes.append(f"aliases merged, adding {', '.join(map(repr, gained))} from the {other}")
    for k in clashes:
        notes.append(f"alias {k!r} names version {original['aliases'][k]} in the original and "
                     f"{copy['aliases'][k]} in the copy, kept {a_later[k]} from the {side}")
    unexpected = [k for k in _differing(original, copy)
                  if k not in ("last_updated_timestamp", "aliases")]
    if unexpected:
        notes.append(f"also differ, kept from the {side}: " + _also(original, copy, unexpected))
    conflict = bool(clashes or unexpected)
    report = "; ".join(notes) + "."
    if doc == original:
        return Resolution(KEEP_ORIGINAL, "Kept the original: " + report, conflict)
    if doc == copy:
        return Resolution(TAKE_COPY, "Took the copy: " + report, conflict)
    return Resolution(MERGE, "Merged: " + report, conflict, metayaml.dump(doc))


def _source_place(value: object, doc: dict) -> tuple[str, ...] | None:
    """The store-relative place a version's source names, whether written as a machine's
    path or the guard's portable form, so a rewrite does not look like another version."""
    if not isinstance(value, str):
        return None
    loc = parse_local(value[len(PORTABLE_SCHEME):] if value.startswith(PORTABLE_SCHEME)
                      else value)
    if loc is None:
        return None
    model_id, run_id = doc.get("model_id"), doc.get("run_id")
    place = version_target(loc.segments, model_id if isinstance(model_id, str) else None,
                           run_id if isinstance(run_id, str) else None, fold=loc.windows)
    return None if place is None else tuple(s.casefold() for s in place)


def _same_source(original: dict, copy: dict) -> bool:
    a, b = original.get("source"), copy.get("source")
    if a == b:
        return True
    pa, pb = _source_place(a, original), _source_place(b, copy)
    return pa is not None and pa == pb


def resolve_model_version_meta(original: dict, copy: dict) -> Resolution:
    """Two machines that register the same model within the sync delay both write
    `version-<N>`. Different run_id, model_id, source or creation_timestamp mean two
    different versions: `renumber` (keep both; the later-created one, named in `renumber`,
    moves to the next free number; a tie names the copy). Otherwise it is one version
    edited on two machines: the later last_updated_timestamp wins."""
    if original == copy:
        return _same()
    wrong = _identity("registered model or version", original, copy, ("name", "version"))
    if wrong:
        return wrong
    differ = [k for k in ("run_id", "model_id", "creation_timestamp")
              if original.get(k) != copy.get(k)]
    if not _same_source(original, copy):
        differ.append("source")
    if differ:
        later = "original" if _later(copy, original, "creation_timestamp") else "copy"
        return Resolution(
            RENUMBER, f"Two different versions got number {original.get('version')} on two "
            f"machines ({_also(original, copy, sorted(differ))}); keep both: the {later}, "
            f"created later, must move to the next free version number.", True,
            renumber=later)
    take = _later(original, copy, "last_updated_timestamp")
    why = "it was updated later" if take or _later(copy, original, "last_updated_timestamp") \
        else "neither was updated later"
    return _pick(original, copy, take, why, {"last_updated_timestamp", "storage_location",
                                             "source", "status", "status_message"})


def resolve_other(original: bytes, copy: bytes) -> Resolution:
    """No rule for this file: the original stays, the copy waits for a person."""
    if original == copy:
        return _same()
    return Resolution(KEEP_ORIGINAL, "No rule merges this kind of file: kept the original; "
                      "the differing copy needs a look.", True)


_META_RESOLVERS = {RUN_META: resolve_run_meta, EXPERIMENT_META: resolve_experiment_meta,
                   LOGGED_MODEL_META: resolve_logged_model_meta,
                   REGISTERED_MODEL_META: resolve_registered_model_meta,
                   MODEL_VERSION_META: resolve_model_version_meta}


def resolve(kind: str, original: bytes, copy: bytes, original_mtime: float | None = None,
            copy_mtime: float | None = None) -> Resolution:
    """The resolution for a file of `kind` (see kind_of) from both files' raw bytes.

    Tags and aliases need both mtimes. A meta.yaml side that does not parse loses to one
    that does (a broken original is replaced, a conflict; a broken copy is ignored); both
    broken needs a person.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if original == copy:
        return _same()
    if kind == METRIC:
        return resolve_metric(original, copy)
    if kind == PARAM:
        return resolve_param(original, copy)
    if kind in (TAG, ALIAS):
        if original_mtime is None or copy_mtime is None:
            raise ValueError(f"a {kind} needs both files' mtimes")
        return (resolve_tag if kind == TAG else resolve_alias)(original, copy, original_mtime,
                                                               copy_mtime)
    if kind == OTHER:
        return resolve_other(original, copy)
    docs: list[dict | None] = []
    errors: list[str] = []
    for raw in (original, copy):
        try:
            docs.append(metayaml.parse(raw))
            errors.append("")
        except metayaml.MetaError as exc:
            docs.append(None)
            errors.append(str(exc))
    if docs[0] is None and docs[1] is None:
        return Resolution(NEEDS_PERSON, f"Neither side is a usable meta.yaml (original: "
                          f"{errors[0]}; copy: {errors[1]}).", True)
    if docs[0] is None:
        return Resolution(TAKE_COPY, f"Took the copy: the original is not a usable meta.yaml "
                          f"({errors[0]}).", True)
    if docs[1] is None:
        return Resolution(KEEP_ORIGINAL, f"Kept the original: the copy is not a usable "
                          f"meta.yaml ({errors[1]}).", False)
    return _META_RESOLVERS[kind](docs[0], docs[1])


# ---- renumbered model versions: telling people ----------------------------------------------

@dataclass(frozen=True)
class Renumbered:
    """A model version the guard moved to the next free number: `model` and the number it has
    `now`; `was` the number its registering client was given (None if the tag does not say);
    `host` where it was registered, as far as the guard knows (None: unknown)."""

    model: str
    now: int
    was: int | None = None
    host: str | None = None

    def describe(self) -> str:
        """`model 'm': was version 1 on hostB, now 2`"""
        was = f"was version {self.was}" if self.was is not None else "renumbered"
        on = f" on {self.host}" if self.host else ""
        return f"model {self.model!r}: {was}{on}, now {self.now}"


_WAS = re.compile(r"version ([0-9]+):")


def renumbered(model: str, now: int, from_tag: str, host_tag: str | None) -> Renumbered:
    """What a renumbered version's tags say (the renumbered_from tag starts
    `version <N>: ...`; the host tag names the machine)."""
    match = _WAS.match(from_tag.strip())
    host = host_tag.strip() if host_tag is not None else ""
    return Renumbered(model, now, int(match.group(1)) if match else None, host or None)


def same_registration(version: Mapping, record: Mapping) -> bool:
    """Whether a model version's meta.yaml (`version`) is the one a registration record of
    this host's server (`record`: model, version, creation_timestamp, run_id) describes: one
    model, one creation instant, one run. The number is not compared: that is what moves."""
    created = ms(version.get("creation_timestamp"))
    return (version.get("name") == record.get("model") and created is not None
            and created == ms(record.get("creation_timestamp"))
            and (version.get("run_id") or None) == (record.get("run_id") or None))


def original_host(moving: Mapping, moving_is_copy: bool, copy_who: str | None,
                  own: Iterable[Mapping], own_host: str) -> str | None:
    """Where the version that moves was registered: this host, when its server's registration
    journal (`own`) holds it; else, when it is the conflict copy, the machine the sync client
    names in the copy's name; else unknown (None)."""
    if any(same_registration(moving, record) for record in own):
        return own_host
    if moving_is_copy and copy_who:
        return copy_who
    return None


def moved_registrations(own: Iterable[Mapping], versions: Iterable[Mapping]
                        ) -> list[tuple[str, int, int]]:
    """(model, the number this host's client was given, the number it has now) for each of
    this host's registrations (`own`) whose version now carries another number (`versions`:
    the meta.yaml mappings of the renumbered versions)."""
    docs = list(versions)
    moved = []
    for record in own:
        try:
            given = int(record.get("version"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        for doc in docs:
            if not same_registration(doc, record):
                continue
            try:
                now = int(doc.get("version"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if now != given:
                moved.append((str(record.get("model")), given, now))
    return moved
