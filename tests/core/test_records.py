"""The tolerant JSON codec for records (guard.core.records): what a wrong, missing or unknown
value becomes, the field options that keep old JSON keys, and tags telling records apart."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from guard.core.records import FLAT, OMIT_NONE, from_json, key, to_json


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass(frozen=True)
class Sample:
    count: int = 0
    ratio: float = 1.5
    ok: bool = False
    name: str = "n"
    note: str | None = None
    colour: Colour = Colour.RED
    points: tuple[Point, ...] = ()
    names: list[str] = field(default_factory=list)
    by_name: dict[str, int] = field(default_factory=dict)
    origin: Point | None = None


@dataclass(frozen=True)
class Renamed:
    items: tuple[int, ...] = field(default=(), metadata=key("list"))
    why: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Off:
    enabled: Literal[False] = False


@dataclass(frozen=True)
class On:
    enabled: Literal[True] = True
    level: int = 0


@dataclass(frozen=True)
class Untagged:
    level: int = 0


@dataclass(frozen=True)
class Inner:
    a: int = 0
    b: str = ""


@dataclass(frozen=True)
class Holder:
    head: str = ""
    inner: Inner = field(default_factory=Inner, metadata=FLAT)
    extra: Point | None = field(default=None, metadata=FLAT)
    switch: Off | On = field(default_factory=Off)
    loose: Off | Untagged = field(default_factory=Off, metadata=FLAT)


FULL = Sample(count=3, ratio=2.0, ok=True, name="x", note="n", colour=Colour.BLUE,
              points=(Point(1, 2), Point(3, 4)), names=["a"], by_name={"a": 1},
              origin=Point(0, 0))


def test_a_record_round_trips_through_plain_json():
    data = to_json(FULL)
    assert data == {"count": 3, "ratio": 2.0, "ok": True, "name": "x", "note": "n",
                    "colour": "blue", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
                    "names": ["a"], "by_name": {"a": 1}, "origin": {"x": 0, "y": 0}}
    assert from_json(Sample, data) == FULL


def test_unknown_keys_are_ignored_and_missing_ones_take_the_default():
    assert from_json(Sample, {"count": 2, "from_a_newer_version": [1]}) == Sample(count=2)
    assert from_json(Sample, {}) == Sample()


@pytest.mark.parametrize("name, wrong", [
    ("count", "3"), ("count", True), ("count", 2.5), ("count", None),
    ("ratio", "1"), ("ratio", False),
    ("ok", 1), ("ok", "true"),
    ("name", 5), ("name", None),
    ("note", 5),
    ("colour", "green"), ("colour", None),
    ("points", {"x": 1}), ("names", "a"), ("by_name", [1]),
    ("origin", "here"),
])
def test_a_value_of_the_wrong_type_takes_the_default(name, wrong):
    assert from_json(Sample, {**to_json(FULL), name: wrong}) == \
        Sample(**{**FULL.__dict__, name: getattr(Sample(), name)})


def test_an_int_is_a_float_but_no_bool_is_a_number():
    assert from_json(Sample, {"ratio": 2}).ratio == 2.0
    assert isinstance(from_json(Sample, {"ratio": 2}).ratio, float)
    assert from_json(Sample, {"count": False}).count == 0


def test_bad_items_are_dropped_and_the_rest_kept():
    data = {"points": [{"x": 1, "y": 2}, {"x": 1}, "p", {"x": "1", "y": 2}, {"x": 5, "y": 6}],
            "names": ["a", 1, None, "b"], "by_name": {"a": 1, "b": "2", "c": 3}}
    got = from_json(Sample, data)
    assert got.points == (Point(1, 2), Point(5, 6))
    assert got.names == ["a", "b"] and got.by_name == {"a": 1, "c": 3}


def test_garbage_is_the_default_record_or_an_error_when_there_is_none():
    for garbage in (None, "x", 3, [1, 2], {"count": {"deep": []}}):
        assert from_json(Sample, garbage) == Sample()
    with pytest.raises(ValueError, match="not a Point"):
        from_json(Point, {"x": 1})
    with pytest.raises(ValueError):
        from_json(Point, "garbage")


def test_a_key_can_differ_from_the_attribute_and_none_can_be_left_out():
    assert to_json(Renamed((1, 2))) == {"list": [1, 2]}
    assert to_json(Renamed((), "because")) == {"list": [], "why": "because"}
    assert from_json(Renamed, {"list": [1, "x", 2], "items": [9]}) == Renamed((1, 2))


def test_tags_tell_the_arms_of_a_union_apart():
    assert to_json(Holder(switch=On(level=2)))["switch"] == {"enabled": True, "level": 2}
    assert from_json(Holder, {"switch": {"enabled": True, "level": 2}}).switch == On(level=2)
    assert from_json(Holder, {"switch": {"enabled": False, "level": 2}}).switch == Off()
    for neither in ({"level": 2}, {"enabled": "yes"}, {"enabled": 1}, "on", None):
        assert from_json(Holder, {"switch": neither}).switch == Off()  # the field's default


def test_flat_records_share_their_parents_object():
    h = Holder("h", Inner(1, "b"), Point(5, 6), loose=Untagged(3))
    data = to_json(h)
    assert data == {"head": "h", "a": 1, "b": "b", "x": 5, "y": 6,
                    "switch": {"enabled": False}, "level": 3}
    assert from_json(Holder, data) == h
    # an optional flat record is there when any of its keys is, and a wrong one is the default
    assert from_json(Holder, {"head": "h"}) == Holder("h", loose=Untagged())
    assert from_json(Holder, {"x": 5}).extra is None  # a Point needs its y
    # an untagged arm takes whatever the tagged one does not
    assert from_json(Holder, {"enabled": False, "level": 3}).loose == Off()
    assert from_json(Holder, {"level": 3}).loose == Untagged(3)
    assert to_json(Holder(loose=Off()))["enabled"] is False
