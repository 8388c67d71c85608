"""Frozen dataclasses <-> JSON values, driven by their type hints: the snapshot codec.

``render/jsonout`` writes the public JSON contract of a result (internal fields left out,
no way back). This module writes *everything*, internal fields included, in a form that
reads back to an equal object: ``from_json(Facts, to_json(facts)) == facts``. It is what a
facts snapshot (``portkit why --facts-out``) is made of, and what a far end sends.

Theory of operation. ``to_json`` walks a value: a dataclass becomes an object with every
field by name in field order, an enum its value, an address or network its text, a tuple
or list an array, a frozenset a sorted array (so the text is deterministic). ``from_json``
walks the *type* instead, from the dataclass's resolved hints, and takes from the data
exactly what the type allows::

    str | None            null or a string
    tuple[int, ...]       an array of integers (not bools)
    tuple[str, int]       an array of exactly a string and an integer
    frozenset[str]        an array of strings, duplicates refused
    Literal["a", "b"]     one of those values
    an enum               one of its values
    IPv4Address, ...      the address's text
    a dataclass           an object with no unknown keys; a missing key takes the
                          field's default, or is refused when there is none
    X | Y                 the first alternative that reads without error

Anything that does not fit raises :class:`CodecError` naming where (``$.forwards[0].port``)
and what was expected. A type the codec cannot read back (a Protocol, ``Any``) is a
programming error: :class:`TypeError`, raised for the class as a whole, not for some data.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["CodecError", "from_json", "to_json"]

_T = TypeVar("_T")

_ADDRESS_TYPES: tuple[type, ...] = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


class CodecError(ValueError):
    """JSON data that does not fit the type it is read as."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --------------------------------------------------------------------------- writing


def to_json(value: Any) -> Any:
    """A JSON-ready value (dicts, lists, str, int, float, bool, None) for ``value``,
    internal dataclass fields included."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as JSON: not a finite number")
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, _ADDRESS_TYPES):
        return str(value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, frozenset | set):
        items = [to_json(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cannot write a mapping key of type {type(k).__name__} as JSON")
            out[k] = to_json(v)
        return out
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --------------------------------------------------------------------------- reading


def from_json(cls: type[_T], data: object) -> _T:
    """Read ``data`` (as ``json.loads`` returns it) back into an instance of ``cls``."""
    _check_readable(cls)
    value: _T = _read(cls, data, "$")
    return value


_READABLE: set[Any] = set()


def _check_readable(tp: Any) -> None:
    """TypeError unless every type reachable from ``tp`` can be read: a class that holds a
    Protocol is refused whatever the data says (checked once per class)."""
    if tp in _READABLE:
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal or tp is None or tp is type(None):
        pass
    elif origin in (typing.Union, types.UnionType, list, frozenset, set):
        for a in args:
            _check_readable(a)
    elif origin is tuple:
        if not args:
            raise TypeError("cannot read a bare tuple from JSON: give its item types")
        for a in args:
            if a is not Ellipsis and a != ():
                _check_readable(a)
    elif origin is dict:
        if args[0] is not str:
            raise TypeError(f"cannot read a mapping with {args[0]!r} keys from JSON")
        _check_readable(args[1])
    elif origin is None and isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _READABLE.add(tp)  # before the fields: a class may (indirectly) hold itself
        try:
            hints = _hints(tp)
            for f in dataclasses.fields(tp):
                if f.init:
                    _check_readable(hints[f.name])
        except BaseException:
            _READABLE.discard(tp)
            raise
        return
    elif not (
        origin is None
        and isinstance(tp, type)
        and (tp in (bool, int, float, str) or issubclass(tp, (enum.Enum, *_ADDRESS_TYPES)))
    ):
        raise TypeError(f"cannot read {getattr(tp, '__name__', tp)!r} from JSON")
    try:
        _READABLE.add(tp)
    except TypeError:  # an unhashable type form: checked again next time
        pass


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _kind(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "an array"
    if isinstance(data, dict):
        return "an object"
    return type(data).__name__


def _read(tp: Any, data: object, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is None or tp is type(None):
        if data is not None:
            raise CodecError(path, f"expected null, got {_kind(data)}")
        return None
    if origin is typing.Union or origin is types.UnionType:
        return _read_union(args, data, path)
    if origin is typing.Literal:
        for choice in args:
            if type(choice) is type(data) and choice == data:
                return choice
        raise CodecError(path, f"expected one of {', '.join(json.dumps(a) for a in args)}, got {data!r}")
    if origin is tuple:
        return _read_tuple(args, data, path)
    if origin is list:
        (item,) = args
        return [_read(item, v, f"{path}[{i}]") for i, v in enumerate(_array(data, path))]
    if origin is frozenset or origin is set:
        (item,) = args
        items = [_read(item, v, f"{path}[{i}]") for i, v in enumerate(_array(data, path))]
        result = frozenset(items)
        if len(result) != len(items):
            raise CodecError(path, "a set cannot hold the same item twice")
        return result if origin is frozenset else set(result)
    if origin is dict:
        key_tp, val_tp = args
        if key_tp is not str:
            raise TypeError(f"cannot read a mapping with {key_tp!r} keys from JSON")
        if not isinstance(data, dict):
            raise CodecError(path, f"expected an object, got {_kind(data)}")
        return {k: _read(val_tp, v, f"{path}.{k}") for k, v in data.items()}
    if isinstance(tp, type):
        return _read_class(tp, data, path)
    raise TypeError(f"cannot read {tp!r} from JSON")


def _read_union(args: tuple[Any, ...], data: object, path: str) -> Any:
    if data is None and type(None) in args:
        return None
    problems: list[str] = []
    for alt in args:
        if alt is type(None):
            continue
        try:
            return _read(alt, data, path)
        except CodecError as exc:
            problems.append(exc.problem)
    if type(None) in args:
        problems.append("or null")
    raise CodecError(path, "; ".join(problems))


def _array(data: object, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise CodecError(path, f"expected an array, got {_kind(data)}")
    return data


def _read_tuple(args: tuple[Any, ...], data: object, path: str) -> tuple[Any, ...]:
    items = _array(data, path)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_read(args[0], v, f"{path}[{i}]") for i, v in enumerate(items))
    if args == ((),):  # tuple[()]
        args = ()
    if not args:
        raise TypeError("cannot read a bare tuple from JSON: give its item types")
    if len(items) != len(args):
        raise CodecError(path, f"expected an array of {len(args)} items, got {len(items)}")
    return tuple(_read(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(args, items, strict=True)))


def _read_class(tp: type, data: object, path: str) -> Any:
    if tp is bool:
        if not isinstance(data, bool):
            raise CodecError(path, f"expected a boolean, got {_kind(data)}")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise CodecError(path, f"expected an integer, got {_kind(data)}")
        return data
    if tp is float:
        if not isinstance(data, int | float) or isinstance(data, bool):
            raise CodecError(path, f"expected a number, got {_kind(data)}")
        value = float(data)
        if not math.isfinite(value):
            raise CodecError(path, f"expected a finite number, got {data!r}")
        return value
    if tp is str:
        if not isinstance(data, str):
            raise CodecError(path, f"expected a string, got {_kind(data)}")
        return data
    if issubclass(tp, enum.Enum):
        for member in tp:
            if type(member.value) is type(data) and member.value == data:
                return member
        valid = ", ".join(json.dumps(m.value) for m in tp)
        raise CodecError(path, f"expected one of {valid}, got {data!r}")
    if issubclass(tp, _ADDRESS_TYPES):
        if not isinstance(data, str):
            raise CodecError(path, f"expected an address as a string, got {_kind(data)}")
        parse: Any = tp
        try:
            return parse(data)
        except ValueError:
            raise CodecError(path, f"not a valid {tp.__name__}: {data!r}") from None
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, data, path)
    raise TypeError(f"cannot read {tp.__name__} from JSON")


def _read_dataclass(tp: type, data: object, path: str) -> Any:
    if not isinstance(data, dict):
        raise CodecError(path, f"expected an object ({tp.__name__}), got {_kind(data)}")
    hints = _hints(tp)
    fields = [f for f in dataclasses.fields(tp) if f.init]
    names = {f.name for f in fields}
    unknown = sorted(k for k in data if k not in names)
    if unknown:
        raise CodecError(
            path, f"unknown key {unknown[0]!r} in {tp.__name__}; valid ones are: {', '.join(sorted(names))}"
        )
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name in data:
            kwargs[f.name] = _read(hints[f.name], data[f.name], f"{path}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise CodecError(path, f"missing key {f.name!r} in {tp.__name__}")
    make: Any = tp
    try:
        return make(**kwargs)
    except (TypeError, ValueError) as exc:  # a __post_init__ that refuses the values
        raise CodecError(path, f"not a valid {tp.__name__}: {exc}") from None
