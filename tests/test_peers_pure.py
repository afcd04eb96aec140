"""Heartbeats and the view of peers (pure), and the coordination folder MLflow must not see."""

from __future__ import annotations

import pytest

from guard.portability.fixer import iter_meta_files
from guard.core.layout import COORDINATION, can_hold_meta, classify_meta, is_experiment_folder
from guard.sync.peers import Heartbeat, assess, clash, minor, version_warning


def beat(host: str, last_seen: float, mlflow: str = "3.17.2", state: str = "running"):
    return Heartbeat(host_id=host, pid=10, guard_version="0.1.0", mlflow_version=mlflow,
                     platform="linux", store=f"/home/{host}/mlruns", started_at=0.0,
                     last_seen=last_seen, interval=5.0, state=state)


def test_heartbeat_round_trips_and_rejects_junk():
    b = beat("hostA", 12.5)
    assert Heartbeat.from_json(b.to_json()) == b
    assert Heartbeat.from_json({**b.to_json(), "pid": "10"}) is None
    assert Heartbeat.from_json({**b.to_json(), "pid": True}) is None
    assert Heartbeat.from_json({k: v for k, v in b.to_json().items() if k != "store"}) is None
    assert Heartbeat.from_json([1, 2]) is None
    old = {k: v for k, v in b.to_json().items() if k != "state"}
    assert Heartbeat.from_json(old).state == "running"


def test_assess_excludes_self_orders_by_age_and_marks_stale():
    views = assess([beat("me", 100), beat("b", 99), beat("c", 10), beat("d", 98, state="stopped")],
                   "me", now=100.0, stale_after=60)
    assert [(v.host_id, v.age_s, v.stale) for v in views] == \
        [("b", 1.0, False), ("d", 2.0, True), ("c", 90.0, True)]
    assert views[1].state == "stopped"


def test_future_heartbeat_from_a_skewed_clock_has_age_zero():
    (view,) = assess([beat("b", 130)], "me", now=100.0, stale_after=60)
    assert view.age_s == 0.0 and not view.stale


@pytest.mark.parametrize("version,expected", [("3.17.2", "3.17"), ("3.17", "3.17"), ("3", "3")])
def test_minor(version, expected):
    assert minor(version) == expected


def test_version_warning_only_for_live_peers_on_another_minor():
    views = assess([beat("b", 99, "3.17.0"), beat("c", 99, "3.16.1"), beat("d", 1, "2.22.0")],
                   "me", now=100.0, stale_after=60)
    warning = version_warning("3.17.2", views)
    assert "c (3.16.1)" in warning and "b (" not in warning and "d (" not in warning
    assert version_warning("3.17.2", views[:1]) is None


def test_coordination_folder_is_invisible_to_mlflow_and_to_the_rewriter(tmp_path):
    assert not is_experiment_folder(COORDINATION) and is_experiment_folder("12345")
    assert not is_experiment_folder(".trash") and not is_experiment_folder("models")
    assert classify_meta((COORDINATION, "peers", "meta.yaml")).name == "other"
    assert classify_meta((COORDINATION, "meta.yaml")).name == "other"
    assert not can_hold_meta((COORDINATION,)) and not can_hold_meta((COORDINATION, "peers"))
    (tmp_path / COORDINATION / "peers").mkdir(parents=True)
    (tmp_path / COORDINATION / "meta.yaml").write_text("artifact_location: /x\n")
    (tmp_path / "7").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in iter_meta_files(tmp_path)]
    assert found == ["7/meta.yaml"]
    assert list(iter_meta_files(tmp_path, None, tmp_path / COORDINATION)) == []


def test_clash_when_another_guard_wrote_our_heartbeat_file():
    mine = beat("vm", 50.0)
    assert clash(None, mine) is None and clash(mine, None) is None
    assert clash(mine, mine) is None
    later_self = Heartbeat(**{**mine.to_json(), "last_seen": 55.0})  # our own, newer write
    assert clash(later_self, mine) is None
    other = Heartbeat(**{**mine.to_json(), "store": "/mnt/other/mlruns", "pid": 77})
    warning = clash(other, mine)
    assert "host_id 'vm'" in warning and "/mnt/other/mlruns" in warning
