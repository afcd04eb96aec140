"""One tolerant JSON codec for the frozen dataclasses the guard writes and reads back.

The status document is written by one daemon and read by `guardctl status`, `restart` and
`stop` of maybe another version, possibly half-written: reading must never crash. So
`from_json` ignores unknown keys, gives a missing key its field's default, and gives a value
of the wrong type the default too; a list or dict item that is not what it should be is
dropped. `to_json` is the inverse, so `from_json(type(x), to_json(x)) == x`.

Three field options (`dataclasses.field(metadata=...)`) keep the JSON as it was before the
types: `key(name)` for a JSON key that is not a good attribute name, `OMIT_NONE` for a key left
out while its value is None, `FLAT` for a record whose keys sit in its parent's object. A
`Literal` field is a tag: a record without that key, or with another value, is not that record
(this is how a union of records, `Figures | Off`, tells its arms apart).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

FLAT: Mapping[str, bool] = types.MappingProxyType({"flat": True})
OMIT_NONE: Mapping[str, bool] = types.MappingProxyType({"omit_none": True})


def key(name: str) -> Mapping[str, str]:
    """Field metadata: this field's key in the JSON object."""
    return types.MappingProxyType({"key": name})


class _Wrong(Exception):
    """A value that is not of the type asked for."""


# ---- writing -------------------------------------------------------------------------------

def to_json(obj: Any) -> Any:
    """Plain JSON data (dict, list, str, number, bool, None) for a record and what it holds."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("flat"):
                if value is not None:
                    out.update(to_json(value))
            elif not (value is None and f.metadata.get("omit_none")):
                out[f.metadata.get("key", f.name)] = to_json(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(to_json(k)): to_json(v) for k, v in obj.items()}
    return obj


# ---- reading -------------------------------------------------------------------------------

def from_json(cls: type[T], data: Any) -> T:
    """A `cls` from parsed JSON, as much of it as is there and right; a record that cannot be
    made at all is `cls()` when every field has a default, else ValueError."""
    try:
        return typing.cast(T, _decode(cls, data))
    except _Wrong:
        pass
    if dataclasses.is_dataclass(cls) and all(_has_default(f) for f in _init_fields(cls)):
        return cls()
    raise ValueError(f"not a {getattr(cls, '__name__', cls)}: {data!r:.200}")


def _decode(tp: Any, data: Any) -> Any:
    if tp is Any or tp is object:
        return data
    if tp is type(None):
        if data is None:
            return None
        raise _Wrong
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _decode_union(typing.get_args(tp), data)
    if origin is Literal:
        if any(data == tag and type(data) is type(tag) for tag in typing.get_args(tp)):
            return data
        raise _Wrong
    if origin in (list, tuple) or tp in (list, tuple):
        return _decode_sequence(tp, origin or tp, data)
    if origin is dict or tp is dict:
        return _decode_dict(tp, data)
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _decode_record(tp, data)
        if issubclass(tp, enum.Enum):
            try:
                return tp(data)
            except ValueError:
                raise _Wrong from None
        return _decode_scalar(tp, data)
    raise TypeError(f"records cannot read the type {tp!r}")


def _decode_scalar(tp: type, data: Any) -> Any:
    if tp is bool:
        ok = isinstance(data, bool)
    elif tp is float:
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
        data = float(data) if ok else data
    elif tp is int:
        ok = isinstance(data, int) and not isinstance(data, bool)
    else:
        ok = isinstance(data, tp)
    if not ok:
        raise _Wrong
    return data


def _decode_union(arms: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in arms:
        return None
    for arm in arms:
        if arm is type(None):
            continue
        try:
            return _decode(arm, data)
        except _Wrong:
            continue
    raise _Wrong


def _decode_sequence(tp: Any, kind: type, data: Any) -> Any:
    if not isinstance(data, list):
        raise _Wrong
    args = typing.get_args(tp)
    item = args[0] if args else Any
    out = []
    for value in data:
        try:
            out.append(_decode(item, value))
        except _Wrong:
            continue  # a bad item is left out, the rest is kept
    return tuple(out) if kind is tuple else out


def _decode_dict(tp: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise _Wrong
    args = typing.get_args(tp)
    key_type, value_type = args if args else (Any, Any)
    out = {}
    for k, value in data.items():
        try:
            out[_decode(key_type, k)] = _decode(value_type, value)
        except _Wrong:
            continue
    return out


def _decode_record(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise _Wrong
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in _init_fields(cls):
        tp = hints[f.name]
        if f.metadata.get("flat"):
            value = _decode_flat(tp, data)
            if value is not _MISSING:
                values[f.name] = value
            elif not _has_default(f):
                raise _Wrong
            continue
        name = f.metadata.get("key", f.name)
        tag = typing.get_origin(tp) is Literal
        if name not in data:
            if tag or not _has_default(f):
                raise _Wrong
            continue
        try:
            values[f.name] = _decode(tp, data[name])
        except _Wrong:
            if tag or not _has_default(f):
                raise
    return cls(**values)


_MISSING = object()


def _decode_flat(tp: Any, data: dict) -> Any:
    """A record whose keys are in its parent's object: optional ones are there when any of
    their keys is."""
    arms = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    if type(None) in arms:
        names = {f.metadata.get("key", f.name) for arm in arms if dataclasses.is_dataclass(arm)
                 for f in _init_fields(arm)}
        if not names & data.keys():
            return None
    try:
        return _decode(tp, data)
    except _Wrong:
        return _MISSING


def _init_fields(cls: Any) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
