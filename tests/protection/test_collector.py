"""guard.protection.collector: which ids a model version protects and what `guardctl gc` takes
(pure), and the survey and collection telling how far they got."""

from __future__ import annotations

import pytest

from guard.protection.collector import Item, Protected, collect, plan, referenced_ids, survey
from tests.helpers.store import EXP, copy_direct_store
from tests.helpers.store import RUN as STORE_RUN

RUN = "0123456789abcdef0123456789abcdef"
RUN2 = "fedcba9876543210fedcba9876543210"
MID = "m-" + "a" * 32
DAY = 86_400_000
NOW = 1_800_000_000_000
OLDER = 30 * DAY
NONE = Protected(frozenset(), frozenset())


# --- referenced_ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc, runs, models", [
    ({"run_id": RUN}, {RUN}, set()),
    ({"model_id": MID}, set(), {MID}),
    ({"source": f"runs:/{RUN}/model"}, {RUN}, set()),
    ({"source": f"models:/{MID}"}, set(), {MID}),
    ({"storage_location": f"mlflow-artifacts:/1/{RUN}/artifacts/model"}, {RUN}, set()),
    ({"source": f"file:///C:/Users/alice/mlruns/1/{RUN}/artifacts/model"}, {RUN}, set()),
    ({"source": f"C:\\Users\\alice\\mlruns\\1\\{RUN}\\artifacts"}, {RUN}, set()),
    ({"storage_location": f"file:///home/a/mlruns/1/models/{MID}/artifacts"}, set(), {MID}),
    ({"run_id": RUN, "model_id": MID, "source": f"models:/{MID}",
      "storage_location": f"file:///s/1/{RUN2}/artifacts"}, {RUN, RUN2}, {MID}),
])
def test_referenced_ids_finds_runs_and_models(doc, runs, models):
    assert referenced_ids(doc) == (runs, models)


@pytest.mark.parametrize("doc", [
    {},
    {"run_id": None, "model_id": "", "source": None, "storage_location": 42},
    {"source": "models:/churn/3"},                       # a registry URI names no run
    {"source": f"s3://bucket/x{RUN}/artifacts"},         # part of a longer segment
    {"source": f"runs:/{RUN.upper()}/model"},            # MLflow ids are lowercase hex
    {"source": f"runs:/{RUN[:-1]}/model"},               # 31 hex digits
    {"name": RUN, "description": f"runs:/{RUN}/model"},  # only the location fields count
])
def test_referenced_ids_ignores_everything_else(doc):
    assert referenced_ids(doc) == (set(), set())


# --- plan -------------------------------------------------------------------------------------

def run(exp: str, run_id: str, deleted_at: int | None = NOW - OLDER, trash: bool = False) -> Item:
    base = (".trash", exp) if trash else (exp,)
    return Item("run", base + (run_id,), run_id, "r", deleted_at)


def exp(exp_id: str, deleted_at: int | None = NOW - OLDER, runs=(), models=(),
        trash: bool = True) -> Item:
    rel = (".trash", exp_id) if trash else (exp_id,)
    return Item("experiment", rel, exp_id, "e", deleted_at, frozenset(runs), frozenset(models))


def ids(items) -> list[str]:
    return [i.id for i in items]


def kept(keep) -> dict[str, str]:
    return {item.id: why for item, why in keep}


@pytest.mark.parametrize("age, taken", [
    (OLDER + DAY, True),
    (OLDER, True),          # MLflow's gc: current - deleted_time >= older_than
    (OLDER - 1, False),
    (0, False),
])
def test_older_than_boundary(age, taken):
    take, keep = plan([run("1", RUN, NOW - age)], NONE, NOW, OLDER)
    assert (ids(take) == [RUN]) is taken
    assert (keep == []) is taken
    if not taken:
        assert "younger than --older-than" in keep[0][1]


def test_without_deleted_time_counts_as_old_enough():
    """MLflow's own gc treats a deleted run without deleted_time as eligible."""
    take, keep = plan([run("1", RUN, None), exp("2", None)], NONE, NOW, OLDER)
    assert sorted(ids(take)) == sorted([RUN, "2"])
    assert keep == []


def test_zero_older_than_takes_everything_deleted():
    take, _ = plan([run("1", RUN, NOW)], NONE, NOW, 0)
    assert ids(take) == [RUN]


def test_run_protected_by_a_model_version_is_kept():
    protected = Protected(frozenset({RUN}), frozenset())
    take, keep = plan([run("1", RUN), run("1", RUN2)], protected, NOW, OLDER)
    assert ids(take) == [RUN2]
    assert kept(keep) == {RUN: "a registered model version points to it"}


def test_protected_run_is_kept_even_when_also_too_new():
    protected = Protected(frozenset({RUN}), frozenset())
    _, keep = plan([run("1", RUN, NOW)], protected, NOW, OLDER)
    assert kept(keep) == {RUN: "a registered model version points to it"}


@pytest.mark.parametrize("protected", [
    Protected(frozenset({RUN}), frozenset()),
    Protected(frozenset(), frozenset({MID})),
])
def test_experiment_holding_a_protected_run_or_logged_model_is_kept(protected):
    item = exp("1", runs={RUN, RUN2}, models={MID})
    take, keep = plan([item], protected, NOW, OLDER)
    assert take == []
    assert "registered model version points to" in kept(keep)["1"]


def test_experiment_protection_does_not_spread_to_other_experiments():
    protected = Protected(frozenset({RUN}), frozenset({MID}))
    take, _ = plan([exp("1", runs={RUN}), exp("2", runs={RUN2}, models={"m-" + "b" * 32})],
                   protected, NOW, OLDER)
    assert ids(take) == ["2"]


def test_taken_experiment_swallows_its_runs():
    """Its runs go with it: listed neither as taken nor as kept, whatever their own age."""
    items = [run("1", RUN, trash=True), run("1", RUN2, NOW, trash=True),   # runs listed first
             exp("1", runs={RUN, RUN2})]
    take, keep = plan(items, NONE, NOW, OLDER)
    assert ids(take) == ["1"]
    assert keep == []


def test_runs_of_a_kept_experiment_are_judged_on_their_own():
    items = [exp("1", NOW, runs={RUN, RUN2}), run("1", RUN, trash=True),
             run("1", RUN2, NOW, trash=True)]
    take, keep = plan(items, NONE, NOW, OLDER)
    assert ids(take) == [RUN]
    assert sorted(kept(keep)) == sorted(["1", RUN2])


def test_taken_experiment_does_not_swallow_a_sibling_with_a_common_prefix():
    """Experiment 1 going does not take a run of experiment 12."""
    items = [exp("1", trash=False), run("12", RUN, NOW)]
    take, keep = plan(items, NONE, NOW, OLDER)
    assert ids(take) == ["1"]
    assert list(kept(keep)) == [RUN]


def test_run_of_an_active_experiment_is_taken_alone():
    take, keep = plan([run("5", RUN)], NONE, NOW, OLDER)
    assert take == [run("5", RUN)]
    assert keep == []


def test_nothing_deleted_nothing_taken():
    assert plan([], NONE, NOW, OLDER) == ([], [])


def test_too_new_says_how_long_ago_in_words():
    _, keep = plan([run("1", RUN, NOW - 90_000)], NONE, NOW, OLDER)
    assert kept(keep)[RUN] == "deleted 1m 30s ago (younger than --older-than)"


# --- the shell's progress (issue 16: a long gc says how far it got) ---------------------------

def test_survey_and_collect_report_progress(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = copy_direct_store(tmp_path)
    meta = store / EXP / STORE_RUN / "meta.yaml"
    doc = yaml.safe_load(meta.read_text())
    doc.update(lifecycle_stage="deleted", deleted_time=1)
    meta.write_text(yaml.safe_dump(doc))
    looked: list[int] = []
    items, _ = survey(store, looked.append)
    assert looked == list(range(1, len(looked) + 1)) and len(looked) > 3
    assert [i.id for i in items] == [STORE_RUN]
    done: list[int] = []
    collect(store, tmp_path / "vault", "hostA", items, done.append)
    assert done == [0] and not (store / EXP / STORE_RUN).exists()
