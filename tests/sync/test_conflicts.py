"""Conflict copies: the pure rules that fold them back (their names: core/test_conflictnames).

Meta.yaml inputs start from the files a direct MLflow 3 client wrote (tests/data/direct_store)
and change only what each case is about.
"""

from __future__ import annotations

import pytest

from guard.core import metayaml
from guard.sync.conflicts import (
    ALIAS,
    EXPERIMENT_META,
    KEEP_ORIGINAL,
    KINDS,
    LOGGED_MODEL_META,
    MERGE,
    METRIC,
    MODEL_VERSION_META,
    NEEDS_PERSON,
    OTHER,
    PARAM,
    REGISTERED_MODEL_META,
    RENUMBER,
    RUN_META,
    TAG,
    TAKE_COPY,
    Resolution,
    kind_of,
    resolve,
    resolve_alias,
    resolve_experiment_meta,
    resolve_logged_model_meta,
    resolve_metric,
    resolve_model_version_meta,
    resolve_other,
    resolve_param,
    resolve_registered_model_meta,
    resolve_run_meta,
    resolve_tag,
)
from tests.helpers.store import DIRECT_STORE, EXP, MODEL, RUN, rel


def load(rel: str) -> dict:
    return metayaml.parse((DIRECT_STORE / rel).read_bytes())


RUN_DOC = load(f"{EXP}/{RUN}/meta.yaml")
EXP_DOC = load(f"{EXP}/meta.yaml")
LOGGED_DOC = load(f"{EXP}/models/{MODEL}/meta.yaml")
RM_DOC = load("models/adder/meta.yaml")
MV_DOC = load("models/adder/version-1/meta.yaml")


# ---- kind_of -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, kind", [
    (f"{EXP}/{RUN}/metrics/loss", METRIC),
    (f"{EXP}/{RUN}/metrics/train/loss", METRIC),  # a key with '/' is nested folders
    (f"{EXP}/{RUN}/metrics/a/b/c", METRIC),
    (f"{EXP}/{RUN}/metrics/meta.yaml", METRIC),  # a key that happens to be meta.yaml
    (f"{EXP}/models/{MODEL}/metrics/m", METRIC),  # a logged model's metric
    (f".trash/{EXP}/{RUN}/metrics/loss", METRIC),
    (f"{EXP}/{RUN}/params/lr", PARAM),
    (f"{EXP}/{RUN}/params/opt/lr", PARAM),
    (f"{EXP}/models/{MODEL}/params/p", PARAM),
    (f"{EXP}/{RUN}/tags/mlflow.runName", TAG),
    (f"{EXP}/{RUN}/tags/team/owner", TAG),
    (f"{EXP}/models/{MODEL}/tags/mlflow.user", TAG),
    (f"{EXP}/tags/mlflow.note.content", TAG),  # experiment tag
    (f"{EXP}/traces/tr-1/tags/mlflow.traceName", TAG),
    ("models/adder/tags/team", TAG),
    ("models/adder/version-1/tags/validated", TAG),
    ("models/adder/aliases/champion", ALIAS),
    (f"{EXP}/{RUN}/meta.yaml", RUN_META),
    (f".trash/{EXP}/{RUN}/meta.yaml", RUN_META),
    (f"{EXP}/meta.yaml", EXPERIMENT_META),
    (f"{EXP}/models/{MODEL}/meta.yaml", LOGGED_MODEL_META),
    ("models/adder/meta.yaml", REGISTERED_MODEL_META),
    ("models/adder/version-12/meta.yaml", MODEL_VERSION_META),
    # everything else
    (f"{EXP}/{RUN}/artifacts/metrics/loss", OTHER),
    (f"{EXP}/{RUN}/artifacts/model/MLmodel", OTHER),
    (f"{EXP}/{RUN}/metrics", OTHER),
    (f"{EXP}/{RUN}/outputs/{MODEL}/meta.yaml", OTHER),
    (f"{EXP}/traces/tr-1/trace_info.yaml", OTHER),
    (f"{EXP}/traces/tr-1/request_metadata/k", OTHER),
    (f"{EXP}/datasets/d1/meta.yaml", OTHER),
    (f"{EXP}/models/{MODEL}/artifacts/MLmodel", OTHER),
    ("models/adder/version-1/MLmodel", OTHER),
    ("models/adder/aliases/x/y", OTHER),
    (".trash/models/adder/tags/team", OTHER),
    ("models/adder", OTHER),
    ("notes.txt", OTHER),
    ("meta.yaml", OTHER),
    ((), OTHER),
])
def test_kind_of(path, kind):
    assert kind_of(rel(path) if isinstance(path, str) else path) == kind
    assert kind in KINDS


# ---- metrics -----------------------------------------------------------------------------

def test_metric_union_sorted_by_timestamp_without_duplicates():
    original = b"100 0.5 0\n300 0.3 2\n"
    copy = b"100 0.5 0\n200 0.4 1\n400 0.2 3\n"
    res = resolve_metric(original, copy)
    assert res.action == MERGE and res.rewrites_original
    assert res.merged == b"100 0.5 0\n200 0.4 1\n300 0.3 2\n400 0.2 3\n"
    assert res.conflict is False
    assert "adds 2 line(s)" in res.report and "1 duplicate(s) dropped" in res.report


def test_metric_keeps_exact_text_and_orders_by_step_then_value():
    original = b"100 1.50 2\n100 0.5 1\n"
    copy = b"100 1.0 1\n100 1.50 2 2b9c dataset digest\n"
    res = resolve_metric(original, copy)
    assert res.merged == (b"100 0.5 1\n100 1.0 1\n100 1.50 2\n"
                          b"100 1.50 2 2b9c dataset digest\n")


def test_metric_numeric_not_text_order():
    res = resolve_metric(b"1000 1 0\n", b"999 2 0\n10000 3 0\n")
    assert res.merged == b"999 2 0\n1000 1 0\n10000 3 0\n"


def test_metric_copy_already_contained_keeps_original():
    res = resolve_metric(b"1 1 0\n2 2 1\n", b"2 2 1\n")
    assert (res.action, res.conflict, res.merged) == (KEEP_ORIGINAL, False, None)


def test_metric_malformed_line_survives_and_is_reported():
    res = resolve_metric(b"100 0.5 0\n", b"100 0.5 0\n2\x00garbage\n200 0.4 1\n")
    assert res.action == MERGE and res.conflict is True
    assert res.merged == b"100 0.5 0\n200 0.4 1\n2\x00garbage\n"
    assert "not valid metric lines" in res.report and "garbage" in res.report


def test_metric_malformed_original_line_kept_too():
    res = resolve_metric(b"oops\n100 0.5 0\n", b"50 0.1 0\n")
    assert res.merged == b"50 0.1 0\n100 0.5 0\noops\n"
    assert res.conflict is True


def test_metric_line_ends_and_blank_lines():
    # a Windows client's CRLF and a missing final newline are the same lines; blanks carry nothing
    res = resolve_metric(b"1 1 0\r\n2 2 1\r\n", b"1 1 0\n\n3 3 2")
    assert res.merged == b"1 1 0\n2 2 1\n3 3 2\n"
    assert res.conflict is False


def test_metric_nan_and_logged_model_lines():
    res = resolve_metric(b"5 nan 0 run1\n", b"5 0.1 0 run1\n1 0.2 0 run1\n")
    assert res.merged == b"1 0.2 0 run1\n5 0.1 0 run1\n5 nan 0 run1\n"
    assert res.conflict is False


# ---- params, tags, aliases ---------------------------------------------------------------

def test_param_equal_ignoring_trailing_newline_is_not_a_conflict():
    res = resolve_param(b"0.01", b"0.01\n")
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)


def test_param_different_values_flagged_and_original_kept():
    res = resolve_param(b"0.01", b"0.1")
    assert (res.action, res.conflict, res.merged) == (KEEP_ORIGINAL, True, None)
    assert "'0.01'" in res.report and "'0.1'" in res.report


def test_param_long_value_cut_in_report():
    res = resolve_param(b"x" * 500, b"y" * 500)
    assert res.conflict and len(res.report) < 250


@pytest.mark.parametrize("mo, mc, action", [
    (100.0, 200.0, TAKE_COPY),
    (200.0, 100.0, KEEP_ORIGINAL),
    (100.0, 100.0, KEEP_ORIGINAL),  # a tie keeps the original
])
def test_tag_newer_wins(mo, mc, action):
    res = resolve_tag(b"baseline", b"tuned", mo, mc)
    assert res.action == action and res.conflict is True
    assert "'baseline'" in res.report and "'tuned'" in res.report
    assert ("newer" in res.report) == (mo != mc)


def test_tag_same_value_is_not_a_conflict():
    res = resolve_tag(b"alice", b"alice\n", 1.0, 2.0)
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)


def test_alias_newer_wins():
    res = resolve_alias(b"1", b"2", 10.0, 20.0)
    assert (res.action, res.conflict) == (TAKE_COPY, True)
    assert "alias" in res.report


# ---- run meta.yaml -----------------------------------------------------------------------

def run(**changes) -> dict:
    return {**RUN_DOC, **changes}


@pytest.mark.parametrize("status", [3, 4, 5])
def test_run_finished_beats_running_regardless_of_end_time(status):
    original = run(status=1, end_time=None)
    copy = run(status=status, end_time=1795322470707)
    res = resolve_run_meta(original, copy)
    assert (res.action, res.conflict) == (TAKE_COPY, False)
    # and the other way round, even when the running side claims a later end_time
    res = resolve_run_meta(run(status=status, end_time=100), run(status=2, end_time=999))
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)
    assert "SCHEDULED" in res.report


def test_run_later_end_time_wins_when_both_finished():
    res = resolve_run_meta(run(status=3, end_time=500), run(status=4, end_time=900))
    assert res.action == TAKE_COPY and "ended later" in res.report
    res = resolve_run_meta(run(status=3, end_time=900), run(status=5, end_time=500))
    assert res.action == KEEP_ORIGINAL


def test_run_without_end_time_loses_to_one_with():
    res = resolve_run_meta(run(status=4, end_time=None), run(status=4, end_time=1))
    assert res.action == TAKE_COPY


def test_run_tie_keeps_original():
    res = resolve_run_meta(run(status=1, end_time=None, artifact_uri="mlflow-artifacts:/x"),
                           run(status=1, end_time=None))
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)


def test_run_lifecycle_difference_reported_but_status_rule_decides():
    original = run(status=1, end_time=None, lifecycle_stage="deleted")
    copy = run(status=3, lifecycle_stage="active")
    res = resolve_run_meta(original, copy)
    assert (res.action, res.conflict) == (TAKE_COPY, True)
    assert "lifecycle_stage" in res.report and "'deleted'" in res.report
    # the finished side is deleted: it still wins, and is still flagged
    res = resolve_run_meta(run(status=1, end_time=None), run(lifecycle_stage="deleted"))
    assert (res.action, res.conflict) == (TAKE_COPY, True)


def test_run_other_key_difference_is_a_conflict():
    res = resolve_run_meta(run(run_name="mine", end_time=1), run(run_name="yours", end_time=2))
    assert (res.action, res.conflict) == (TAKE_COPY, True)
    assert "run_name" in res.report


def test_run_identical_and_different_runs():
    assert resolve_run_meta(RUN_DOC, dict(RUN_DOC)) == Resolution(
        KEEP_ORIGINAL, "The copy is identical to the original.", False)
    res = resolve_run_meta(RUN_DOC, run(run_id="0" * 32))
    assert (res.action, res.conflict) == (NEEDS_PERSON, True)


# ---- experiment meta.yaml ----------------------------------------------------------------

def exp(**changes) -> dict:
    return {**EXP_DOC, **changes}


def test_experiment_later_update_wins():
    copy = exp(last_update_time=2, artifact_location=f"mlflow-artifacts:/{EXP}")
    res = resolve_experiment_meta(exp(last_update_time=1), copy)
    assert (res.action, res.conflict) == (TAKE_COPY, False)
    res = resolve_experiment_meta(exp(last_update_time=3), exp(last_update_time=2))
    assert res.action == KEEP_ORIGINAL


def test_experiment_name_clash_flagged():
    res = resolve_experiment_meta(exp(name="baseline", last_update_time=5),
                                  exp(name="Baseline v2", last_update_time=9))
    assert (res.action, res.conflict) == (TAKE_COPY, True)
    assert "name clash" in res.report and "'baseline'" in res.report
    assert "'Baseline v2'" in res.report


def test_experiment_lifecycle_difference_flagged():
    res = resolve_experiment_meta(exp(), exp(lifecycle_stage="deleted"))
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, True)
    assert "lifecycle_stage" in res.report


def test_experiment_different_ids_need_a_person():
    assert resolve_experiment_meta(exp(), exp(experiment_id="1")).action == NEEDS_PERSON


# ---- logged model meta.yaml --------------------------------------------------------------

def test_logged_model_ready_beats_pending():
    pending = {**LOGGED_DOC, "status": 1, "last_updated_timestamp": 9_999_999_999_999}
    res = resolve_logged_model_meta(pending, LOGGED_DOC)
    assert (res.action, res.conflict) == (TAKE_COPY, False)
    res = resolve_logged_model_meta(LOGGED_DOC, {**LOGGED_DOC, "last_updated_timestamp": 1})
    assert res.action == KEEP_ORIGINAL


# ---- registered model meta.yaml ----------------------------------------------------------

def rm(**changes) -> dict:
    return {**RM_DOC, **changes}


def test_registered_model_alias_union():
    original = rm(aliases={"champion": 1}, last_updated_timestamp=10)
    copy = rm(aliases={"challenger": 2}, last_updated_timestamp=20)
    res = resolve_registered_model_meta(original, copy)
    assert (res.action, res.conflict) == (MERGE, False)
    doc = metayaml.parse(res.merged)
    assert doc["aliases"] == {"champion": 1, "challenger": 2}
    assert doc["last_updated_timestamp"] == 20
    assert "'champion'" in res.report


def test_registered_model_alias_clash_later_wins_and_is_flagged():
    original = rm(aliases={"champion": 1, "old": 1}, last_updated_timestamp=30)
    copy = rm(aliases={"champion": 2, "new": 2}, last_updated_timestamp=20,
              description="from copy")
    res = resolve_registered_model_meta(original, copy)
    assert (res.action, res.conflict) == (MERGE, True)
    doc = metayaml.parse(res.merged)
    assert doc["aliases"] == {"champion": 1, "new": 2, "old": 1}
    assert doc["description"] is None  # the later (original) side's
    assert "'champion'" in res.report and "version 1" in res.report
    assert "description" in res.report


def test_registered_model_merged_bytes_are_mlflows_format():
    res = resolve_registered_model_meta(rm(aliases={"a": 1}), rm(aliases={"b": 1}))
    assert res.merged == metayaml.dump(metayaml.parse(res.merged))
    assert res.merged.startswith(b"aliases:\n  a: 1\n  b: 1\n")


def test_registered_model_whole_side_when_nothing_to_merge():
    res = resolve_registered_model_meta(rm(last_updated_timestamp=1),
                                        rm(last_updated_timestamp=2, aliases={"x": 1}))
    assert (res.action, res.conflict, res.merged) == (TAKE_COPY, False, None)
    res = resolve_registered_model_meta(rm(last_updated_timestamp=3, aliases={"x": 1}),
                                        rm(last_updated_timestamp=2))
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)


def test_registered_model_other_name_needs_person():
    assert resolve_registered_model_meta(rm(), rm(name="other")).action == NEEDS_PERSON


# ---- model version meta.yaml -------------------------------------------------------------

def mv(**changes) -> dict:
    return {**MV_DOC, **changes}


@pytest.mark.parametrize("key, value", [
    ("run_id", "f" * 32),
    ("model_id", "m-ffffffffffffffffffffffffffffffff"),
    ("source", "models:/m-ffffffffffffffffffffffffffffffff"),
])
def test_model_version_different_identity_renumbers_the_later(key, value):
    original = mv()
    copy = mv(**{key: value, "creation_timestamp": MV_DOC["creation_timestamp"] + 5})
    res = resolve_model_version_meta(original, copy)
    assert (res.action, res.renumber, res.conflict) == (RENUMBER, "copy", True)
    assert key in res.report and "version number" in res.report
    assert res.merged is None and not res.rewrites_original
    res = resolve_model_version_meta(copy, original)  # now the original is the later one
    assert res.renumber == "original"


def test_model_version_creation_time_alone_differs():
    res = resolve_model_version_meta(mv(creation_timestamp=5), mv(creation_timestamp=3))
    assert (res.action, res.renumber) == (RENUMBER, "original")


def test_model_version_same_version_later_edit_wins():
    original = mv(last_updated_timestamp=100, description=None)
    copy = mv(last_updated_timestamp=200, description="validated on holdout")
    res = resolve_model_version_meta(original, copy)
    assert (res.action, res.conflict, res.renumber) == (TAKE_COPY, True, None)
    assert "description" in res.report
    res = resolve_model_version_meta(mv(last_updated_timestamp=100),
                                     mv(last_updated_timestamp=200, status="READY"))
    assert (res.action, res.conflict) == (TAKE_COPY, False)


def test_model_version_rewritten_source_is_the_same_version():
    run_src = f"file:///tmp/d3/rootA/mlruns/{EXP}/{RUN}/artifacts/model"
    portable = f"mlflow-artifacts:/{EXP}/{RUN}/artifacts/model"
    windows = f"file:///C:/Users/bob/mlruns/{EXP}/{RUN}/artifacts/model"
    for other in (portable, windows):
        res = resolve_model_version_meta(mv(source=run_src, model_id=None),
                                         mv(source=other, model_id=None))
        assert res.action == KEEP_ORIGINAL and res.conflict is False
    res = resolve_model_version_meta(mv(source=run_src, model_id=None),
                                     mv(source=portable.replace("/model", "/other"),
                                        model_id=None))
    assert res.action == RENUMBER


def test_model_version_other_number_needs_person():
    assert resolve_model_version_meta(mv(), mv(version=2)).action == NEEDS_PERSON


# ---- anything else and the dispatcher ----------------------------------------------------

def test_other_keeps_original_and_flags():
    res = resolve_other(b"a", b"b")
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, True)
    assert resolve_other(b"a", b"a").conflict is False


def test_resolve_dispatches_on_kind():
    assert resolve(METRIC, b"1 1 0\n", b"2 2 1\n").merged == b"1 1 0\n2 2 1\n"
    assert resolve(PARAM, b"a", b"b").conflict is True
    assert resolve(TAG, b"a", b"b", 1.0, 2.0).action == TAKE_COPY
    assert resolve(ALIAS, b"1", b"2", 2.0, 1.0).action == KEEP_ORIGINAL
    assert resolve(OTHER, b"a", b"b").conflict is True
    original = metayaml.dump(run(status=1, end_time=None))
    copy = metayaml.dump(run(status=3))
    assert resolve(RUN_META, original, copy).action == TAKE_COPY
    res = resolve(MODEL_VERSION_META, metayaml.dump(mv()), metayaml.dump(mv(run_id="f" * 32)))
    assert res.action == RENUMBER
    res = resolve(REGISTERED_MODEL_META, metayaml.dump(rm(aliases={"a": 1})),
                  metayaml.dump(rm(aliases={"b": 1})))
    assert res.action == MERGE
    assert resolve(EXPERIMENT_META, metayaml.dump(exp()),
                   metayaml.dump(exp(name="x"))).conflict is True
    assert resolve(LOGGED_MODEL_META, b"x: 1\n", b"x: 1\n").action == KEEP_ORIGINAL


def test_resolve_identical_bytes_are_never_a_conflict():
    for kind in KINDS:
        res = resolve(kind, b"same", b"same", 1.0, 2.0)
        assert (res.action, res.conflict) == (KEEP_ORIGINAL, False)


def test_resolve_broken_meta_sides():
    good = metayaml.dump(RUN_DOC)
    res = resolve(RUN_META, b"", good)
    assert (res.action, res.conflict) == (TAKE_COPY, True) and "empty" in res.report
    res = resolve(RUN_META, good, b"- a list\n")
    assert (res.action, res.conflict) == (KEEP_ORIGINAL, False) and "list" in res.report
    res = resolve(RUN_META, b"\x00", b"[")
    assert res.action == NEEDS_PERSON


def test_resolve_refuses_unknown_kind_and_tag_without_mtimes():
    with pytest.raises(ValueError):
        resolve("run", b"a", b"b")
    with pytest.raises(ValueError):
        resolve(TAG, b"a", b"b")


# ---- renumbered versions: telling people (pure) ---------------------------------------------

def _version(**kw) -> dict:
    return {"name": "adder", "version": 2, "creation_timestamp": 1700000000123,
            "run_id": "a" * 32, **kw}


def _registered(**kw) -> dict:
    return {"model": "adder", "version": 1, "creation_timestamp": 1700000000123,
            "run_id": "a" * 32, "host": "hostA", **kw}


def test_a_renumbered_versions_tags_say_what_it_was_and_where():
    from guard.sync.conflicts import Renumbered, renumbered

    got = renumbered("adder", 2, "version 1: registered on two machines at once; conflict "
                     "copy meta_hostB_x.yaml", "hostB\n")
    assert got == Renumbered("adder", 2, 1, "hostB")
    assert got.describe() == "model 'adder': was version 1 on hostB, now 2"
    assert renumbered("m", 5, "something else", None) == Renumbered("m", 5, None, None)
    assert renumbered("m", 5, "version 3: x", "  ").describe() == "model 'm': was version 3, now 5"


@pytest.mark.parametrize("moving, is_copy, who, host", [
    (_version(), False, "hostB", "hostA"),                 # in this host's own journal
    (_version(), True, "hostB", "hostA"),                  # the journal beats the copy's name
    (_version(run_id="b" * 32), True, "hostB", "hostB"),   # not ours: the copy's machine
    (_version(run_id="b" * 32), False, "hostB", None),     # the original, not ours: unknown
    (_version(creation_timestamp=1), True, None, None),    # a copy name without a machine
    (_version(name="other"), False, "hostB", None),
])
def test_the_original_host_of_a_version_that_moves(moving, is_copy, who, host):
    from guard.sync.conflicts import original_host

    assert original_host(moving, is_copy, who, [_registered()], "hostA") == host


def test_this_hosts_registrations_that_now_have_another_number():
    from guard.sync.conflicts import moved_registrations

    own = [_registered(),                                          # renumbered 1 -> 2
           _registered(version=3, creation_timestamp=1700000009999),  # kept its number
           _registered(version="x")]                               # unreadable: skipped
    versions = [_version(), _version(version=3, creation_timestamp=1700000009999),
                _version(version=4, run_id="c" * 32)]               # another machine's
    assert moved_registrations(own, versions) == [("adder", 1, 2)]
    assert moved_registrations([], versions) == []
    assert moved_registrations(own, [_version(creation_timestamp=None)]) == []
