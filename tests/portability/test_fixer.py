"""The Fixer on a copy of a real MLflow store written under another root (all paths foreign)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard.core import safepath
from guard.core.journal import Journal, digest, read_journal, text_field
from guard.core.metayaml import TEMP_PREFIX, dump, parse
from guard.core.safepath import Target
from guard.portability import fixer as fixer_mod
from guard.portability.fixer import (
    MALFORMED,
    PENDING,
    REWRITTEN,
    SKIPPED,
    Fixer,
    RewritePart,
    iter_meta_files,
    undo,
)
from tests.helpers.store import DIRECT_STORE, EXP, MODEL, RUN, copy_direct_store

REAL_STORE = DIRECT_STORE

LOCATION_FILES = {
    "0/meta.yaml": {"artifact_location": "mlflow-artifacts:/0"},
    f"{EXP}/meta.yaml": {"artifact_location": f"mlflow-artifacts:/{EXP}"},
    f"{EXP}/{RUN}/meta.yaml": {"artifact_uri": f"mlflow-artifacts:/{EXP}/{RUN}/artifacts"},
    f"{EXP}/models/{MODEL}/meta.yaml":
        {"artifact_location": f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts"},
    "models/adder/version-1/meta.yaml":
        {"storage_location": f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts",
         "source": f"models:/{MODEL}"},
}

BILLION_LAUGHS = (b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                  b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                  b"artifact_location: *c\n")


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path) -> Path:
    return copy_direct_store(tmp_path)


@pytest.fixture
def journal_path(tmp_path) -> Path:
    return tmp_path / "j.jsonl"


def make_fixer(store: Path, journal_path: Path, delay: float = 0) -> Fixer:
    # experiment_quiet=0: these tests use fixed clocks, not the store's real timestamps
    return Fixer(store, Journal(journal_path), "hostB", foreign_delay=delay, experiment_quiet=0)


# --- a full pass over a foreign store ---------------------------------------------------------

def test_full_pass_rewrites_every_location(store, journal_path):
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()
    assert dict(fixer.rewritten) == {"experiment": 2, "run": 1, "logged_model": 1,
                                     "model_version": 1}
    assert fixer.total == 5
    assert fixer.problems == {}
    for rel, expected in LOCATION_FILES.items():
        doc = parse((store / rel).read_bytes())
        for key, value in expected.items():
            assert doc[key] == value, (rel, key)
    # nothing else in any file changed, and no file without locations was touched
    original = snapshot(REAL_STORE)
    after = snapshot(store)
    assert set(after) == set(original)
    for rel in set(original) - set(LOCATION_FILES):
        assert after[rel] == original[rel], rel
    for rel in LOCATION_FILES:
        before_doc, after_doc = parse(original[rel]), parse(after[rel])
        assert {k for k in before_doc if before_doc[k] != after_doc[k]} == \
            {k for k, v in LOCATION_FILES[rel].items() if not v.startswith("models:/")}
    assert not any(p.name.startswith(TEMP_PREFIX) for p in store.rglob("*"))


def test_second_pass_rewrites_nothing_and_touches_nothing(store, journal_path):
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()
    first = snapshot(store)
    stamps = mtimes(store)
    lines = journal_path.read_text().splitlines()
    second = fixer.full_pass()
    assert fixer.total == 5
    assert "rewritten" not in second.outcomes
    fresh = make_fixer(store, journal_path)  # a restarted daemon, no cache
    fresh.full_pass()
    assert fresh.total == 0 and not fresh.rewritten
    assert snapshot(store) == first
    assert mtimes(store) == stamps
    assert journal_path.read_text().splitlines() == lines


def test_journal_has_one_line_per_changed_key(store, journal_path):
    original = {rel: parse((store / rel).read_bytes()) for rel in LOCATION_FILES}
    make_fixer(store, journal_path).full_pass()
    records = list(read_journal(journal_path))
    assert len(journal_path.read_text().splitlines()) == len(records) == 5
    got = {(r["file"], r["key"]): (r["old"], r["new"]) for r in records}
    expected = {}
    for rel, values in LOCATION_FILES.items():
        for key, new in values.items():
            if original[rel][key] != new:
                expected[(rel, key)] = (original[rel][key], new)
    assert got == expected
    for r in records:
        assert r["action"] == "rewrite" and r["host"] == "hostB"
        assert r["old"].startswith("file:///tmp/d3/rootA/mlruns/")


def test_undo_puts_every_old_value_back_byte_for_byte(store, journal_path):
    make_fixer(store, journal_path).full_pass()
    assert snapshot(store) != snapshot(REAL_STORE)
    out = Journal(journal_path.with_name("undo.jsonl"))
    result = undo(store, journal_path, out)
    assert result == {"undone": 5, "skipped": 0}
    assert snapshot(store) == snapshot(REAL_STORE)
    assert len(list(read_journal(journal_path.with_name("undo.jsonl")))) == 5
    # undoing twice finds nothing left to undo
    assert undo(store, journal_path, None) == {"undone": 0, "skipped": 5}
    assert snapshot(store) == snapshot(REAL_STORE)


def test_undo_with_no_out_journal(store, journal_path):
    make_fixer(store, journal_path).full_pass()
    assert undo(store, journal_path, None)["undone"] == 5
    assert snapshot(store) == snapshot(REAL_STORE)


# --- foreign delay ----------------------------------------------------------------------------

def test_foreign_file_waits_for_the_delay(store, journal_path):
    fixer = make_fixer(store, journal_path, delay=30)
    path = store / EXP / RUN / "meta.yaml"
    before = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    t = 1_000_000.0
    assert fixer.check(path, now=t) == PENDING
    assert fixer.check(path, now=t + 10) == PENDING
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp
    assert fixer.total == 0
    assert not journal_path.exists()
    assert fixer.check(path, now=t + 31) == REWRITTEN
    assert parse(path.read_bytes())["artifact_uri"] == f"mlflow-artifacts:/{EXP}/{RUN}/artifacts"
    assert fixer.rewritten == {"run": 1}
    assert f"{EXP}/{RUN}/meta.yaml" not in fixer.pending


def test_full_pass_with_delay_leaves_foreign_files_pending(store, journal_path):
    fixer = make_fixer(store, journal_path, delay=30)
    fixer.full_pass()
    assert fixer.total == 0
    assert set(fixer.pending) == set(LOCATION_FILES)
    assert snapshot(store) == snapshot(REAL_STORE)


@pytest.mark.parametrize("form", ["uri", "plain"])
def test_own_root_file_is_rewritten_at_once(store, journal_path, form):
    path = store / EXP / RUN / "meta.yaml"
    doc = parse(path.read_bytes())
    own = store / EXP / RUN / "artifacts"
    doc["artifact_uri"] = own.as_uri() if form == "uri" else str(own)
    path.write_bytes(dump(doc))
    fixer = make_fixer(store, journal_path, delay=30)
    assert fixer.check(path, now=1_000_000.0) == REWRITTEN
    assert parse(path.read_bytes())["artifact_uri"] == f"mlflow-artifacts:/{EXP}/{RUN}/artifacts"
    (record,) = list(read_journal(journal_path))
    assert record["old"] == doc["artifact_uri"]
    # the foreign files in the same store still wait
    assert fixer.check(store / EXP / "meta.yaml", now=1_000_000.0) == PENDING


# --- bad input in a store ---------------------------------------------------------------------

def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_bad_input_is_reported_never_rewritten(store, journal_path, tmp_path):
    bad = {
        "111/meta.yaml": (b"artifact_location: [unclosed\nname: x\n", "malformed", "YAML"),
        "112/meta.yaml": (b"artifact_location: file:///elsewhere/112\x00\x01\n", "malformed",
                          "binary"),
        "113/meta.yaml": (b"artifact_location: file:///elsewhere/113\n#" + b"p" * (1 << 20),
                          "malformed", "larger than"),
        "114/meta.yaml": (BILLION_LAUGHS, "malformed", "anchors"),
        "12/abc/meta.yaml": (b"artifact_uri: file:///x/12/../../etc/12/abc/artifacts\n"
                             b"run_id: abc\n", "unsafe", ".."),
        "115/meta.yaml": (b"artifact_location: file:///data/custom/place\n", "unportable", ""),
    }
    write(store / "12" / "meta.yaml", b"artifact_location: mlflow-artifacts:/12\n")
    for rel, (data, _, _) in bad.items():
        write(store / rel, data)

    outside = tmp_path / "outside" / "evil"
    outside_meta = write(outside / "meta.yaml",
                         b"artifact_uri: file:///home/alice/mlruns/12/evil/artifacts\n"
                         b"run_id: evil\n")
    outside_before = outside_meta.read_bytes()
    os.symlink(outside, store / "12" / "evil")

    before = snapshot(store)
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()  # must not raise

    assert dict(fixer.rewritten) == {"experiment": 2, "run": 1, "logged_model": 1,
                                     "model_version": 1}
    after = snapshot(store)
    for rel in bad:
        assert after[rel] == before[rel], rel
    assert outside_meta.read_bytes() == outside_before
    for rel, (_, kind, why) in bad.items():
        assert rel in fixer.problems, rel
        problem = fixer.problems[rel][0]
        assert problem["problem"] == kind, rel
        assert why in problem.get("why", "") + problem.get("value", ""), rel
    assert fixer.problems["12/evil"][0]["problem"] == "symlink"
    records = list(read_journal(journal_path))
    assert {r["file"] for r in records} == set(LOCATION_FILES)

    # asked about the file behind the symlink directly, the fixer still refuses it
    assert fixer.check(store / "12" / "evil" / "meta.yaml", force=True) == SKIPPED
    assert fixer.problems["12/evil/meta.yaml"][0]["problem"] == "symlink"
    assert outside_meta.read_bytes() == outside_before

    # a second pass over the same bad input still does not crash or write
    fixer.full_pass()
    assert fixer.total == 5
    assert snapshot(store) == after


def test_deeply_nested_value_does_not_crash_a_pass(store, journal_path):
    # parses (1500 levels), but is no string: it must end up as a problem, not an exception
    depth = 1500
    path = write(store / "116" / "meta.yaml",
                 b"artifact_location: " + b"[" * depth + b"]" * depth + b"\n")
    before = path.read_bytes()
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()
    assert fixer.total == 5
    assert path.read_bytes() == before
    assert fixer.problems["116/meta.yaml"][0]["problem"] in ("malformed", "unsafe")
    fixer.snapshot()  # the status figures can still be produced


PASS_IN_CHILD = """
import sys
from pathlib import Path
from guard.portability.fixer import Fixer
fixer = Fixer(Path(sys.argv[1]), None, "hostB")
fixer.full_pass()
print(fixer.total, sorted(fixer.problems))
"""


@pytest.mark.integration
def test_very_deep_nesting_does_not_kill_the_process(store):
    # ~200 KB; run in a child so an interpreter crash fails this test only
    depth = 100_000
    write(store / "117" / "meta.yaml", b"artifact_location: " + b"[" * depth + b"]" * depth)
    proc = subprocess.run([sys.executable, "-c", PASS_IN_CHILD, str(store)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"a full pass crashed the process (exit {proc.returncode}): {proc.stderr[-500:]}")
    assert proc.stdout.split()[0] == "5"
    assert "117/meta.yaml" in proc.stdout


def test_problems_of_removed_files_and_symlinks_are_forgotten(store, journal_path, tmp_path):
    write(store / "111" / "meta.yaml", b"- not a mapping\n")
    write(store / "112" / "meta.yaml", b"artifact_location: file:///data/custom/place\n")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", store / "0" / "evil")
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()
    assert {"111/meta.yaml", "112/meta.yaml", "0/evil"} <= set(fixer.problems)
    shutil.rmtree(store / "111")  # e.g. the experiment was purged, or moved by sync
    shutil.rmtree(store / "112")
    os.unlink(store / "0" / "evil")
    fixer.full_pass()
    assert fixer.problems == {}
    assert fixer.snapshot().problem_count == 0


def test_check_outcome_for_malformed(store, journal_path):
    path = write(store / "111" / "meta.yaml", b"- a\n- b\n")
    fixer = make_fixer(store, journal_path)
    assert fixer.check(path) == MALFORMED
    assert "not a mapping" in fixer.problems["111/meta.yaml"][0]["why"]
    assert path.read_bytes() == b"- a\n- b\n"


def test_check_skips_files_outside_the_store(store, journal_path, tmp_path):
    other = write(tmp_path / "other" / "0" / "meta.yaml",
                  b"artifact_location: file:///home/a/mlruns/0\n")
    fixer = make_fixer(store, journal_path)
    assert fixer.check(other) == SKIPPED
    assert other.read_bytes() == b"artifact_location: file:///home/a/mlruns/0\n"


# --- iter_meta_files --------------------------------------------------------------------------

def test_iter_meta_files_follows_the_layout(store):
    found = {p.relative_to(store).as_posix() for p in iter_meta_files(store)}
    assert found == set(LOCATION_FILES)


def test_iter_meta_files_never_descends_into_artifacts_params_metrics(store):
    planted = [
        f"{EXP}/{RUN}/artifacts/meta.yaml",
        f"{EXP}/{RUN}/artifacts/model/meta.yaml",
        f"{EXP}/{RUN}/params/meta.yaml",
        f"{EXP}/{RUN}/metrics/meta.yaml",
        f"{EXP}/models/{MODEL}/artifacts/meta.yaml",
        f"{EXP}/models/{MODEL}/params/meta.yaml",
        f"{EXP}/models/{MODEL}/metrics/meta.yaml",
    ]
    for rel in planted:
        write(store / rel, b"artifact_uri: file:///home/a/mlruns/x/y/artifacts\n")
    found = {p.relative_to(store).as_posix() for p in iter_meta_files(store)}
    assert not found & set(planted)
    assert found == set(LOCATION_FILES)
    fixer = make_fixer(store, Path(store.parent / "j.jsonl"))
    fixer.full_pass()
    for rel in planted:
        assert (store / rel).read_bytes() == \
            b"artifact_uri: file:///home/a/mlruns/x/y/artifacts\n", rel


def test_iter_meta_files_includes_trash_and_folders(store):
    (store / ".trash").mkdir(exist_ok=True)
    shutil.move(str(store / EXP), str(store / ".trash" / EXP))
    found = {p.relative_to(store).as_posix() for p in iter_meta_files(store)}
    assert f".trash/{EXP}/{RUN}/meta.yaml" in found
    assert f".trash/{EXP}/models/{MODEL}/meta.yaml" in found
    assert f".trash/{EXP}/meta.yaml" in found
    sub = {p.relative_to(store).as_posix()
           for p in iter_meta_files(store, folder=store / ".trash" / EXP)}
    assert sub == {f".trash/{EXP}/meta.yaml", f".trash/{EXP}/{RUN}/meta.yaml",
                   f".trash/{EXP}/models/{MODEL}/meta.yaml"}


def test_journal_lines_are_json(store, journal_path):
    make_fixer(store, journal_path).full_pass()
    for line in journal_path.read_text().splitlines():
        rec = json.loads(line)
        assert set(rec) >= {"action", "host", "file", "kind", "key", "old", "new", "time"}


# --- write-ahead journal, undo after a kill at any instant -----------------------------------

class Killed(BaseException):
    """A kill -9 at one instant of a pass: nothing after it runs."""


def kill_at(monkeypatch, nth: int, after_rename: bool) -> list[Path]:
    """Make the `nth` rename of the pass the last thing that happens (before or after it)."""
    renamed: list[Path] = []
    real = safepath._replace_in

    def rename(src: Target, dst: Target, sfd: int | None, dfd: int | None) -> None:
        if len(renamed) + 1 == nth and not after_rename:
            raise Killed()
        real(src, dst, sfd, dfd)
        renamed.append(dst.path)
        if len(renamed) == nth:
            raise Killed()

    monkeypatch.setattr(safepath, "_replace_in", rename)
    return renamed


def test_the_intent_is_on_disk_before_each_rename(store, journal_path, monkeypatch):
    real = safepath._replace_in
    seen: list[str] = []

    def rename(src: Target, dst: Target, sfd: int | None, dfd: int | None) -> None:
        key = dst.path.relative_to(store).as_posix()
        on_disk = [r for r in read_journal(journal_path) if r["file"] == key]
        assert on_disk and on_disk[0]["old_text"].encode() == dst.path.read_bytes()
        assert on_disk[0]["after"] == digest(src.path.read_bytes())
        seen.append(key)
        real(src, dst, sfd, dfd)

    monkeypatch.setattr(safepath, "_replace_in", rename)
    make_fixer(store, journal_path).full_pass()
    assert sorted(seen) == sorted(LOCATION_FILES)


@pytest.mark.parametrize("after_rename", [False, True])
@pytest.mark.parametrize("nth", [1, 3, 5])
def test_undo_after_a_kill_at_any_instant_restores_every_byte(store, journal_path, monkeypatch,
                                                              nth, after_rename):
    original = snapshot(store)
    renamed = kill_at(monkeypatch, nth, after_rename)
    with pytest.raises(Killed):
        make_fixer(store, journal_path).full_pass()
    monkeypatch.undo()
    assert len(renamed) == (nth if after_rename else nth - 1)
    intents = {r["file"] for r in read_journal(journal_path)}
    assert len(intents) == nth  # the last one's rename may not have happened
    result = undo(store, journal_path, None)
    assert result["undone"] >= len(renamed)
    assert snapshot(store) == original


def test_undo_gives_back_the_very_bytes_of_a_file_not_written_as_mlflow_writes(store,
                                                                               journal_path):
    path = store / EXP / RUN / "meta.yaml"
    doc = parse(path.read_bytes())
    odd = ("# written by hand\r\n" + "".join(f"{k}:   {json.dumps(v)}\r\n"
                                           for k, v in reversed(doc.items()))).encode()
    path.write_bytes(odd)
    original = snapshot(store)
    make_fixer(store, journal_path).full_pass()
    assert path.read_bytes() != odd
    assert undo(store, journal_path, None)["undone"] == 5
    assert path.read_bytes() == odd
    assert snapshot(store) == original


def test_undo_of_a_file_changed_since_puts_back_the_keys_that_still_hold_the_new_value(
        store, journal_path):
    make_fixer(store, journal_path).full_pass()
    path = store / EXP / RUN / "meta.yaml"
    doc = parse(path.read_bytes())
    doc["end_time"] = 42  # MLflow wrote the run again after the rewrite
    path.write_bytes(dump(doc))
    undo(store, journal_path, None)
    after = parse(path.read_bytes())
    assert after["end_time"] == 42
    assert after["artifact_uri"] == parse(snapshot(REAL_STORE)[f"{EXP}/{RUN}/meta.yaml"])[
        "artifact_uri"]


def test_journals_of_earlier_versions_still_undo(store, journal_path):
    original = snapshot(store)
    make_fixer(store, journal_path).full_pass()
    legacy = [{k: v for k, v in r.items()
               if k in ("action", "host", "file", "kind", "key", "old", "new", "time")}
              for r in read_journal(journal_path)]
    journal_path.write_text("".join(json.dumps(r) + "\n" for r in legacy))
    assert undo(store, journal_path, None) == {"undone": 5, "skipped": 0}
    assert snapshot(store) == original


def test_a_name_that_is_not_utf8_is_journaled_and_undone_byte_exact(store, journal_path):
    # a registered model's folder: its versions' locations do not spell their own folder
    name = os.fsdecode(b"adder-\xff\xfe")
    shutil.copytree(store / "models" / "adder", store / "models" / name)
    original = snapshot(store)
    fixer = make_fixer(store, journal_path)
    fixer.full_pass()  # must not raise UnicodeEncodeError
    key = f"models/{name}/version-1/meta.yaml"
    assert fixer.problems == {} and fixer.total == 6
    raw = journal_path.read_bytes()
    raw.decode("utf-8")  # the journal stays valid UTF-8
    (rec,) = [r for r in read_journal(journal_path) if "file_b64" in r]
    assert rec["file"] == "models/adder-\\xff\\xfe/version-1/meta.yaml"
    assert text_field(rec, "file") == key
    out = journal_path.with_name("undo.jsonl")
    assert undo(store, journal_path, Journal(out))["undone"] == 6
    assert snapshot(store) == original
    assert {text_field(r, "file") for r in read_journal(out)} >= {key}


# --- stale temp files -------------------------------------------------------------------------

def aged(path: Path, data: bytes = b"", age: float = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_a_full_pass_sweeps_stale_temp_files_where_the_guard_writes(store, journal_path,
                                                                     tmp_path):
    state = tmp_path / "state"
    stale = [aged(store / EXP / RUN / f"{TEMP_PREFIX}a"), aged(store / f"{TEMP_PREFIX}b"),
             aged(store / "mlflow-guard.trash" / "peers" / f"{TEMP_PREFIX}c"),
             aged(state / f"{TEMP_PREFIX}d")]
    fresh = aged(store / EXP / f"{TEMP_PREFIX}fresh", age=0)
    kept = [aged(store / EXP / RUN / "artifacts" / f"{TEMP_PREFIX}user-artifact"), fresh]
    fixer = Fixer(store, Journal(journal_path), "hostB", experiment_quiet=0,
                  temp_folders=(state,))
    fixer.full_pass(use_cache=True)  # a polling pass stays cheap: no sweep
    assert all(p.exists() for p in stale)
    fixer.full_pass()
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert fixer.swept == 4


# --- writes the disk refuses ------------------------------------------------------------------

def refuse(monkeypatch, code: int) -> None:
    def replace(path, new, expected, limit=None, before_rename=None):
        raise OSError(code, os.strerror(code), str(path))
    monkeypatch.setattr(fixer_mod.metayaml, "replace_if_unchanged", replace)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "store full"),
                                         (errno.EROFS, "store read-only"),
                                         (errno.EACCES, "no permission to write"),
                                         (errno.EDQUOT, "store over its disk quota")])
def test_a_refused_write_holds_the_part_and_it_resumes_by_itself(store, journal_path,
                                                                  monkeypatch, code, words):
    original = snapshot(store)
    part = RewritePart(make_fixer(store, journal_path), lambda: "events", 10.0, 3600.0)
    refuse(monkeypatch, code)
    part.begin()  # the first pass meets the refusal: held, not dead
    assert part.held is not None and part.held.startswith(words) and "meta.yaml" in part.held
    assert snapshot(store) == original
    now = time.monotonic()
    retry_at = part.retry_at
    part.handle(None, now + 1)  # before the retry: nothing is tried
    assert part.held is not None and part.retry_at == retry_at and part.refused == 1
    monkeypatch.undo()  # the condition clears
    part.handle(None, now + 11)
    assert part.held is None and part.error is None
    assert part.fixer.total == 5
    assert undo(store, journal_path, None)["undone"] == 5 and snapshot(store) == original


def test_a_held_part_stays_held_while_the_probe_is_refused(store, journal_path, monkeypatch):
    part = RewritePart(make_fixer(store, journal_path), lambda: "events", 10.0, 3600.0)
    refuse(monkeypatch, errno.ENOSPC)
    part.begin()
    monkeypatch.undo()
    monkeypatch.setattr(fixer_mod, "probe_write",
                        lambda folder: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    part.handle(None, time.monotonic() + 11)
    assert part.held is not None and "full" in part.held and part.fixer.total == 0
    assert part.refused == 2 and part.retry_at > time.monotonic() + 11


def test_other_errors_still_end_the_thread(store, journal_path, monkeypatch):
    part = RewritePart(make_fixer(store, journal_path), lambda: "events", 10.0, 3600.0)
    refuse(monkeypatch, errno.EIO)
    with pytest.raises(OSError):
        part.begin()
    assert part.held is None


def test_a_journal_that_cannot_be_written_stops_the_rename(store, journal_path, tmp_path):
    original = snapshot(store)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    part = RewritePart(make_fixer(store, blocked / "j.jsonl"), lambda: "events", 10.0, 3600.0)
    with pytest.raises(OSError):  # ENOTDIR: not a refusal that passes by itself
        part.begin()
    assert snapshot(store) == original  # no rename without its journal line


# --- the figures never wait for store I/O -----------------------------------------------------

def test_the_figures_never_wait_for_a_check_holding_the_lock(store):
    """The daemon's loop builds its status from `snapshot()` while a check may hold the lock
    over a file that blocks (a FIFO): the figures must come without the lock."""
    import threading

    fixer = Fixer(store, None, "hostB")
    fixer.full_pass()
    held, release = threading.Event(), threading.Event()

    def check_in_progress() -> None:
        with fixer.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=check_in_progress)
    holder.start()
    try:
        assert held.wait(5)
        figures: list = []
        reader = threading.Thread(target=lambda: figures.append(fixer.snapshot()), daemon=True)
        reader.start()
        reader.join(2)
        assert figures and figures[0].last_full_pass is not None
    finally:
        release.set()
        holder.join()


def test_snapshot_counts_the_deferred_that_only_wait_out_a_quiet_spell(store):
    """A run in progress defers itself and its experiment until it ends (no time); the other
    experiment, used lately, waits out its quiet spell (a time): only that one is quiet."""
    meta = store / EXP / RUN / "meta.yaml"
    doc = parse(meta.read_bytes())
    doc.update(status=1, end_time=None, start_time=int(time.time() * 1000))
    meta.write_bytes(dump(doc))
    fixer = Fixer(store, None, "hostB", dry_run=True, experiment_quiet=10 * 365 * 86400.0)
    fixer.full_pass(force=True)
    waits = {key: until is None for key, (_, until) in fixer.deferred.items()}
    assert waits == {f"{EXP}/{RUN}/meta.yaml": True, f"{EXP}/meta.yaml": True,
                     "0/meta.yaml": False}
    snap = fixer.snapshot()
    assert snap.deferred_in_flight == 3 and snap.deferred_quiet == 1
