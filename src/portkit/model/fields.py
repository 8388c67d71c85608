"""Which model fields are part of the JSON contract, said by field metadata.

A model dataclass's public JSON is its fields, by name, in order (``render/jsonout``). Some
fields carry detail that the JSON contract leaves out: a translatable template beside its
English text, what the nmap XML writer needs, a warning meant for stderr. Such a field is
declared ``internal``::

    @dataclass(frozen=True, slots=True)
    class Note:
        code: str
        message: str
        message_text: Localizable | None = internal(default=None)

A required internal field (no default) is written ``field(metadata=NOT_IN_JSON)``: mypy
takes only ``dataclasses.field`` itself for a field specifier, so a wrapper call would
read to it as a default value.

Internal fields stay in the snapshot codec (``model/codec.py``): it records everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, overload

__all__ = ["NOT_IN_JSON", "in_json", "internal"]

_T = TypeVar("_T")

NOT_IN_JSON: Mapping[str, Any] = MappingProxyType({"json": False})


@overload
def internal(*, default: _T, compare: bool = True) -> _T: ...


@overload
def internal(*, default_factory: Callable[[], _T], compare: bool = True) -> _T: ...


def internal(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    compare: bool = True,
) -> Any:
    """A dataclass field left out of the JSON contract (``in_json`` is false for it)."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, compare=compare, metadata=NOT_IN_JSON)
    return dataclasses.field(default=default, compare=compare, metadata=NOT_IN_JSON)


def in_json(f: dataclasses.Field[Any]) -> bool:
    """Whether a dataclass field belongs to the JSON contract (every field not declared internal)."""
    return bool(f.metadata.get("json", True))
