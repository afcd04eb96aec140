"""guard.deletions: what a disappearance from the store means (pure, over path segments).

`judge` gets a fake store: a set of store-relative tuples that exist now. Anything below an
existing folder must be listed too; only the meta.yaml paths and the removed rel matter.
"""

from __future__ import annotations

import pytest

from guard.core.config import VaultPolicy
from guard.protection.deletions import (
    ALERT,
    FOLLOW,
    RESTORE,
    Tombstone,
    Unit,
    covered,
    judge,
    mlflow_removes,
    moved_twin,
    units_of,
)
from tests.helpers.store import rel

EXP = "123456789"
RUN = "0123456789abcdef0123456789abcdef"
MID = "m-" + "a" * 32


def kinds(path: str) -> list[tuple[str, str]]:
    return [(u.kind, "/".join(u.rel)) for u in units_of(rel(path))]


# --- units_of ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    (f"{EXP}", [("experiment", EXP)]),
    (f"{EXP}/meta.yaml", [("experiment", EXP)]),
    (f"{EXP}/{RUN}", [("experiment", EXP), ("run", f"{EXP}/{RUN}")]),
    (f"{EXP}/{RUN}/meta.yaml", [("experiment", EXP), ("run", f"{EXP}/{RUN}")]),
    (f"{EXP}/{RUN}/artifacts/model/MLmodel", [("experiment", EXP), ("run", f"{EXP}/{RUN}")]),
    (f"{EXP}/{RUN}/params/lr", [("experiment", EXP), ("run", f"{EXP}/{RUN}")]),
    (f".trash/{EXP}", [("experiment", f".trash/{EXP}")]),
    (f".trash/{EXP}/{RUN}/metrics/loss",
     [("experiment", f".trash/{EXP}"), ("run", f".trash/{EXP}/{RUN}")]),
    (f"{EXP}/models/{MID}", [("experiment", EXP), ("logged_model", f"{EXP}/models/{MID}")]),
    (f"{EXP}/models/{MID}/artifacts/MLmodel",
     [("experiment", EXP), ("logged_model", f"{EXP}/models/{MID}")]),
    (f".trash/{EXP}/models/{MID}/meta.yaml",
     [("experiment", f".trash/{EXP}"), ("logged_model", f".trash/{EXP}/models/{MID}")]),
    ("models/churn", [("registered_model", "models/churn")]),
    ("models/churn/meta.yaml", [("registered_model", "models/churn")]),
    ("models/churn/aliases/champion", [("registered_model", "models/churn")]),
    ("models/churn/version-3",
     [("registered_model", "models/churn"), ("model_version", "models/churn/version-3")]),
    ("models/churn/version-3/tags/stage",
     [("registered_model", "models/churn"), ("model_version", "models/churn/version-3")]),
])
def test_units_of_outermost_first(path, expected):
    assert kinds(path) == expected


@pytest.mark.parametrize("path", [
    f"{EXP}/meta.yaml",
    f"{EXP}/tags/mlflow.note.content",
    f"{EXP}/tags",
    f"{EXP}/models",          # the logged-models folder itself, no model named
    f"{EXP}/traces/tr-1/trace_info.yaml",
    f"{EXP}/datasets/d1/meta.yaml",
])
def test_experiment_level_files_are_not_runs(path):
    """Only the experiment is a unit here: tags/, models/, traces/, datasets/ are not run ids."""
    assert kinds(path) == [("experiment", EXP)]


def test_models_folder_that_is_not_version_n_is_no_version():
    assert kinds("models/churn/version-x/meta.yaml") == [("registered_model", "models/churn")]
    assert kinds("models/churn/tags/owner") == [("registered_model", "models/churn")]


@pytest.mark.parametrize("path", [
    "",                                    # the empty tuple below
    ".trash",
    "models",
    "mlflow-guard.trash/tombstones/host-a/x.json",
    "mlflow-guard.trash",
    "other.trash/1/meta.yaml",
    ".trash/models/churn",                 # MLflow never trashes registered models
    ".trash/mlflow-guard.trash/x",
])
def test_units_of_gives_nothing_outside_units(path):
    assert units_of(rel(path) if path else ()) == []


def test_unit_meta_is_the_meta_yaml_inside():
    assert Unit("run", (EXP, RUN)).meta == (EXP, RUN, "meta.yaml")


# --- mlflow_removes ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    f"{EXP}/{RUN}/tags/mlflow.runName",
    f"{EXP}/tags/mlflow.note.content",
    f"{EXP}/models/{MID}/tags/owner",
    "models/churn/tags/owner",
    "models/churn/version-2/tags/validated",
    "models/churn/aliases/champion",
    f".trash/{EXP}/{RUN}/tags/x",
])
def test_mlflow_removes_tags_of_every_unit_and_aliases(path):
    assert mlflow_removes(rel(path))


@pytest.mark.parametrize("path", [
    f"{EXP}/{RUN}/params/lr",
    f"{EXP}/{RUN}/metrics/loss",
    f"{EXP}/{RUN}/artifacts/model.pkl",
    f"{EXP}/{RUN}/artifacts/tags/x",       # an artifact folder that happens to be called tags
    f"{EXP}/{RUN}/meta.yaml",
    f"{EXP}/meta.yaml",
    f"{EXP}/models/{MID}/artifacts/MLmodel",
    "models/churn/meta.yaml",
    "models/churn/version-2/meta.yaml",
    "models/churn/version-2/aliases/x",    # aliases belong to the registered model only
    f"{EXP}/{RUN}/tags",                   # the tags folder itself
])
def test_mlflow_does_not_remove_data_or_meta(path):
    assert not mlflow_removes(rel(path))


@pytest.mark.parametrize("path", [
    f"{EXP}/{RUN}/tags/team/owner",
    f"{EXP}/tags/a/b",
    "models/churn/tags/x/y",
])
def test_mlflow_removes_tags_whose_key_has_a_slash(path):
    """MLflow allows '/' in tag keys and stores `team/owner` as tags/team/owner; its
    delete_tag removes that nested file (checked against mlflow 3.17's FileStore)."""
    assert mlflow_removes(rel(path))


# --- moved_twin -------------------------------------------------------------------------------

def test_moved_twin_of_an_experiment_goes_to_trash_and_back():
    assert moved_twin(Unit("experiment", (EXP,))) == Unit("experiment", (".trash", EXP))
    assert moved_twin(Unit("experiment", (".trash", EXP))) == Unit("experiment", (EXP,))


@pytest.mark.parametrize("unit", [
    Unit("run", (EXP, RUN)),
    Unit("logged_model", (EXP, "models", MID)),
    Unit("registered_model", ("models", "churn")),
    Unit("model_version", ("models", "churn", "version-1")),
])
def test_only_experiments_move(unit):
    assert moved_twin(unit) is None


# --- covered ----------------------------------------------------------------------------------

def test_tombstone_covers_itself_and_below():
    stones = [Tombstone((EXP,))]
    assert covered(Unit("experiment", (EXP,)), stones, None)
    assert covered(Unit("run", (EXP, RUN)), stones, None)


def test_tombstone_does_not_cover_siblings_with_a_common_string_prefix():
    stones = [Tombstone(("models", "ab"))]
    assert not covered(Unit("registered_model", ("models", "abc")), stones, None)
    assert not covered(Unit("experiment", ("12",)), [Tombstone(("1",))], None)


def test_tombstone_below_a_unit_does_not_cover_the_unit():
    """A run's tombstone never sanctions losing its whole experiment."""
    assert not covered(Unit("experiment", (EXP,)), [Tombstone((EXP, RUN))], None)


@pytest.mark.parametrize("stone_created, unit_created, expected", [
    (100, 100, True),
    (100, 200, False),   # another incarnation of the same name
    (None, 200, True),
    (100, None, True),
    (None, None, True),
])
def test_tombstone_created_must_match_when_both_known(stone_created, unit_created, expected):
    unit = Unit("registered_model", ("models", "churn"))
    assert covered(unit, [Tombstone(("models", "churn"), stone_created)], unit_created) is expected


def test_any_matching_tombstone_is_enough():
    unit = Unit("registered_model", ("models", "churn"))
    stones = [Tombstone(("models", "churn"), 1), Tombstone(("models", "other")),
              Tombstone(("models", "churn"), 2)]
    assert covered(unit, stones, 2)
    assert covered(unit, iter(stones), 2)   # any iterable
    assert not covered(unit, stones, 3)
    assert not covered(unit, [], None)


# --- judge ------------------------------------------------------------------------------------

RUN_DIR = (EXP, RUN)


def store(*paths: str) -> set[tuple[str, ...]]:
    """A store where each given unit folder exists with its meta.yaml."""
    out = set()
    for p in paths:
        out.add(rel(p))
        out.add(rel(p) + ("meta.yaml",))
    return out


def run_judge(removed: str, present: set, stones=(), created=None, policy=RESTORE):
    return judge(rel(removed), lambda r: r in present, list(stones),
                 created or (lambda unit: None), policy)


def test_deleted_run_is_restored():
    v = run_judge(f"{EXP}/{RUN}/params/lr", store(EXP))
    assert v.action == RESTORE
    assert v.unit == Unit("run", RUN_DIR)
    assert "without a tombstone" in v.reason


def test_experiment_moved_to_trash_is_followed():
    v = run_judge(f"{EXP}/{RUN}/metrics/loss", store(f".trash/{EXP}", f".trash/{EXP}/{RUN}"))
    assert v.action == FOLLOW
    assert v.unit == Unit("experiment", (EXP,))
    assert ".trash" in v.reason


def test_experiment_restored_from_trash_is_followed():
    v = run_judge(f".trash/{EXP}/meta.yaml", store(EXP))
    assert v.action == FOLLOW
    assert v.unit == Unit("experiment", (".trash", EXP))


def test_tombstoned_registered_model_is_followed():
    v = run_judge("models/churn/version-1/meta.yaml", store(),
                  [Tombstone(("models", "churn"), 100)], created=lambda unit: 100)
    assert v.action == FOLLOW
    assert v.unit == Unit("registered_model", ("models", "churn"))


def test_tombstone_of_an_older_incarnation_does_not_sanction():
    """A model deleted, re-created under the same name and then lost: restore the new one."""
    seen = []

    def created(unit):
        seen.append(unit)
        return 200
    v = run_judge("models/churn/meta.yaml", store(),
                  [Tombstone(("models", "churn"), 100)], created=created)
    assert v.action == RESTORE
    assert v.unit == Unit("registered_model", ("models", "churn"))
    assert seen == [Unit("registered_model", ("models", "churn"))]


def test_tombstoned_run_is_followed():
    v = run_judge(f"{EXP}/{RUN}/artifacts/model.pkl", store(EXP), [Tombstone(RUN_DIR)])
    assert (v.action, v.unit) == (FOLLOW, Unit("run", RUN_DIR))


def test_tombstone_for_a_sibling_run_does_not_sanction():
    other = (EXP, "f" * 32)
    v = run_judge(f"{EXP}/{RUN}/meta.yaml", store(EXP), [Tombstone(other)])
    assert v.action == RESTORE


def test_alert_policy_alerts_instead_of_restoring():
    v = run_judge(f"{EXP}/{RUN}/params/lr", store(EXP), policy=ALERT)
    assert v.action == ALERT
    assert v.unit == Unit("run", RUN_DIR)


def test_alert_policy_still_follows_what_is_sanctioned():
    v = run_judge(f"{EXP}/{RUN}/params/lr", store(EXP), [Tombstone(RUN_DIR)], policy=ALERT)
    assert v.action == FOLLOW


def test_tag_removed_in_a_live_run_is_followed():
    v = run_judge(f"{EXP}/{RUN}/tags/mlflow.note.content", store(EXP, f"{EXP}/{RUN}"))
    assert v.action == FOLLOW
    assert v.unit is None


def test_alias_removed_in_a_live_registered_model_is_followed():
    v = run_judge("models/churn/aliases/champion", store("models/churn"))
    assert (v.action, v.unit) == (FOLLOW, None)


def test_artifact_removed_from_a_live_run_is_restored():
    v = run_judge(f"{EXP}/{RUN}/artifacts/model/model.pkl", store(EXP, f"{EXP}/{RUN}"))
    assert v.action == RESTORE
    assert v.unit is None
    assert f"run {EXP}/{RUN}" in v.reason


def test_param_removed_from_a_live_run_is_restored():
    v = run_judge(f"{EXP}/{RUN}/params/lr", store(EXP, f"{EXP}/{RUN}"))
    assert (v.action, v.unit) == (RESTORE, None)


def test_file_removed_from_a_live_run_alerts_under_alert_policy():
    v = run_judge(f"{EXP}/{RUN}/params/lr", store(EXP, f"{EXP}/{RUN}"), policy=ALERT)
    assert (v.action, v.unit) == (ALERT, None)


def test_outermost_gone_unit_is_reported():
    """The experiment went (not moved, no tombstone): that is what gets restored, whole."""
    v = run_judge(f"{EXP}/{RUN}/artifacts/deep/er/file.bin", store())
    assert v.action == RESTORE
    assert v.unit == Unit("experiment", (EXP,))


def test_outermost_gone_registered_model_beats_its_version():
    v = run_judge("models/churn/version-4/meta.yaml", store())
    assert v.unit == Unit("registered_model", ("models", "churn"))


def test_outside_any_unit_is_followed():
    v = run_judge("mlflow-guard.trash/tombstones/h/x.json", store())
    assert (v.action, v.unit) == (FOLLOW, None)


def test_tag_with_a_slash_removed_in_a_live_run_is_followed():
    """mlflow.set_tag(run, "team/owner") then delete_tag removes tags/team/owner: MLflow's own
    removal, which every machine should follow rather than put back."""
    v = run_judge(f"{EXP}/{RUN}/tags/team/owner", store(EXP, f"{EXP}/{RUN}"))
    assert v.action == FOLLOW


def test_trace_tag_removed_by_mlflow_is_followed():
    """MLflow's FileStore.delete_trace_tag removes <exp>/traces/<id>/tags/<key> itself."""
    v = run_judge(f"{EXP}/traces/tr-abc/tags/note", store(EXP))
    assert v.action == FOLLOW


def test_gc_of_a_trashed_experiment_is_sanctioned_where_the_move_was_missed():
    """Host A: experiment deleted in MLflow (moved to .trash/<exp>), then `guardctl gc` removes
    .trash/<exp> with a tombstone for it. Host B's vault still knows <exp>/... (its daemon or
    sync was off in between): <exp> is gone and so is its twin. The tombstone sanctions the
    experiment's removal; restoring it at the root would bring the collected experiment back
    on every machine."""
    v = run_judge(f"{EXP}/{RUN}/meta.yaml", store(), [Tombstone((".trash", EXP))])
    assert v.unit == Unit("experiment", (EXP,))
    assert v.action == FOLLOW


def test_a_stray_file_in_a_live_runs_folder_is_not_restored():
    """A sync client's temp file (or a user's scratch file) next to meta.yaml is not MLflow
    data: its disappearance is followed, while params and artifacts are put back."""
    present = {("1", "r", "meta.yaml"), ("1", "meta.yaml")}
    from guard.protection.deletions import judge

    def exists(rel):
        return rel in present

    assert judge(("1", "r", "upload.partial"), exists, [], lambda u: None).action == "follow"
    assert judge(("1", "r", "params", "lr"), exists, [], lambda u: None).action == "restore"


@pytest.mark.parametrize("policy", [VaultPolicy.ALERT, "alert"])
def test_verdicts_are_enum_members_with_the_words_of_before(policy):
    """vault.policy arrives as the config's enum (or a plain string from older callers);
    the action words reach status JSON unchanged."""
    import json

    from guard.protection.deletions import Action

    gone = judge(("1", "r", "params", "lr"), lambda rel: rel == ("1", "meta.yaml"), [],
                 lambda u: None, policy)
    assert gone.action is Action.ALERT
    assert json.dumps([gone.action, RESTORE, FOLLOW]) == '["alert", "restore", "follow"]'


def test_vaults_take_turns_to_restore_by_host_rank():
    """Two vaults restoring one unit at once make the sync client fail both pulls (Syncthing
    leaves .syncthing.*.tmp files MLflow reads as params): each host waits its turn."""
    from guard.protection.deletions import restore_wait

    assert restore_wait("hostA", [], 3.0) == 3.0            # alone: the grace
    assert restore_wait("hostA", ["hostB"], 3.0) == 3.0     # first in line
    assert restore_wait("hostB", ["hostA"], 3.0) == 6.0     # after hostA's restore arrived
    assert restore_wait("hostC", ["hostB", "hostA", "hostC"], 3.0) == 9.0
