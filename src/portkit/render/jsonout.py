"""Model objects -> JSON. Every document carries ``"schema": 1`` at its top level."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from portkit import SCHEMA_VERSION
from portkit.model.fields import in_json

_JSON_FIELDS: dict[type, tuple[str, ...]] = {}


def json_fields(cls: type) -> tuple[str, ...]:
    """The names of a dataclass's JSON fields, in order: every field not declared
    ``internal`` (``model/fields.py``). Computed once per class."""
    names = _JSON_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if in_json(f))
        _JSON_FIELDS[cls] = names
    return names


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, enums, addresses, tuples and datetimes to JSON-ready values.

    Dataclass fields are emitted under their own names, so a model's field names *are* the
    JSON contract. Fields declared ``internal`` (``model/fields.py``) are left out.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_jsonable(getattr(value, name)) for name in json_fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def document(**payload: Any) -> dict[str, Any]:
    """A top-level JSON document: ``{"schema": 1, **payload}`` with payload made JSON-ready."""
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION}
    for key, val in payload.items():
        doc[key] = to_jsonable(val)
    return doc


def dumps(doc: Mapping[str, Any], *, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
