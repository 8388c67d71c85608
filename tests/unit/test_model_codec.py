"""model/fields.py (what is in the JSON contract) and model/codec.py (the snapshot codec)."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import ipaddress
import pkgutil
from typing import Literal

import pytest

import portkit.model
from portkit.model.codec import CodecError, from_json, to_json
from portkit.model.diagnosis import Diagnosis, Facts
from portkit.model.fields import NOT_IN_JSON, in_json, internal
from portkit.model.sockets import Note, PortInfo
from portkit.model.trace import TraceHop
from portkit.render.jsonout import json_fields, to_jsonable


class Colour(enum.Enum):
    RED = "red"
    ONE = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    addr: ipaddress.IPv4Address
    net: ipaddress.IPv6Network
    colour: Colour


@dataclasses.dataclass(frozen=True, slots=True)
class Outer:
    name: str
    pair: tuple[str, int]
    inner: tuple[Inner, ...]
    mode: Literal["a", "b"]
    tags: frozenset[str] = frozenset()
    weight: float = 0.0
    either: int | str | None = None
    hidden: int = internal(default=0)
    hidden_required: str = dataclasses.field(default="x", metadata=NOT_IN_JSON)


SAMPLE = Outer(
    "o",
    ("p", 2),
    (Inner(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Network("fd00::/64"), Colour.ONE),),
    "b",
    frozenset({"z", "a"}),
    1.5,
    "s",
    7,
    "y",
)


# ----------------------------------------------------------------------------- fields


def test_internal_fields_stay_out_of_the_json_contract() -> None:
    assert json_fields(Outer) == ("name", "pair", "inner", "mode", "tags", "weight", "either")
    doc = to_jsonable(SAMPLE)
    assert "hidden" not in doc and "hidden_required" not in doc
    assert [f.name for f in dataclasses.fields(Outer) if not in_json(f)] == ["hidden", "hidden_required"]
    assert json_fields(Outer) is json_fields(Outer)  # computed once per class


def test_a_leading_underscore_no_longer_means_anything() -> None:
    @dataclasses.dataclass(frozen=True)
    class Old:
        _named: int = 1

    assert to_jsonable(Old()) == {"_named": 1}


def test_no_model_field_is_underscore_prefixed() -> None:
    """JSON exclusion is said by metadata; a `_` name would now be published."""
    for mod in pkgutil.iter_modules(portkit.model.__path__):
        module = importlib.import_module(f"portkit.model.{mod.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj):
                names = [f.name for f in dataclasses.fields(obj) if f.name.startswith("_")]
                assert names == [], f"{obj.__name__}: {names}"


def test_renamed_internal_fields_are_still_left_out() -> None:
    assert json_fields(Note) == ("code", "port", "proto", "message")
    assert json_fields(TraceHop) == ("ttl", "address", "rtt_ms")
    assert json_fields(PortInfo) == ("port", "port_class", "services", "ephemeral", "note")
    assert json_fields(Diagnosis) == ("target", "address", "port", "proto", "reachable", "findings", "checks")


# ----------------------------------------------------------------------------- codec


def test_codec_writes_everything_and_reads_it_back() -> None:
    data = to_json(SAMPLE)
    assert data["hidden"] == 7 and data["hidden_required"] == "y"
    assert data["tags"] == ["a", "z"]  # sorted: the same facts always give the same text
    assert data["inner"][0] == {"addr": "10.0.0.1", "net": "fd00::/64", "colour": 1}
    assert from_json(Outer, data) == SAMPLE


def test_missing_keys_take_the_field_default() -> None:
    data = to_json(SAMPLE)
    for key in ("tags", "weight", "either", "hidden", "hidden_required"):
        del data[key]
    assert from_json(Outer, data) == dataclasses.replace(
        SAMPLE, tags=frozenset(), weight=0.0, either=None, hidden=0, hidden_required="x"
    )


def test_an_integer_is_a_float_but_a_bool_is_no_number() -> None:
    data = to_json(SAMPLE)
    assert from_json(Outer, {**data, "weight": 2}).weight == 2.0
    with pytest.raises(CodecError, match=r"\$\.weight: expected a number, got a boolean"):
        from_json(Outer, {**data, "weight": True})
    with pytest.raises(CodecError, match=r"\$\.pair\[1\]: expected an integer, got a boolean"):
        from_json(Outer, {**data, "pair": ["p", False]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, r"\$\.name: expected a string, got null"),
        ({"pair": ["p"]}, r"\$\.pair: expected an array of 2 items, got 1"),
        ({"mode": "c"}, r'\$\.mode: expected one of "a", "b", got \'c\''),
        ({"tags": ["a", "a"]}, r"\$\.tags: a set cannot hold the same item twice"),
        ({"either": 1.5}, r"\$\.either: expected an integer, got a number; expected a string, got a number; or null"),
        ({"weight": 1e400}, r"\$\.weight: expected a finite number"),
        ({"surprise": 1}, r"\$: unknown key 'surprise' in Outer; valid ones are: either, hidden"),
        ({"inner": [{"addr": "10.0.0.300", "net": "fd00::/64", "colour": 1}]}, r"\$\.inner\[0\]\.addr: not a valid IPv4Address"),
        ({"inner": [{"addr": "10.0.0.1", "net": "fd00::/64", "colour": "1"}]}, r'\$\.inner\[0\]\.colour: expected one of "red", 1'),
        ({"inner": {"addr": "10.0.0.1"}}, r"\$\.inner: expected an array, got an object"),
    ],
)
def test_data_that_does_not_fit_names_where(change: dict[str, object], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        from_json(Outer, {**to_json(SAMPLE), **change})


def test_missing_required_key() -> None:
    data = to_json(SAMPLE)
    del data["mode"]
    with pytest.raises(CodecError, match=r"\$: missing key 'mode' in Outer"):
        from_json(Outer, data)


def test_types_the_codec_cannot_read_back_are_programming_errors() -> None:
    with pytest.raises(TypeError, match="Localizable"):
        from_json(Diagnosis, to_json(Diagnosis("t", None, 1, "tcp", True, (), ())) | {"findings": [{}]})
    with pytest.raises(TypeError):
        to_json(object())
    with pytest.raises(ValueError, match="not a finite number"):
        to_json(float("inf"))


def test_every_facts_type_is_readable() -> None:
    """Facts holds only what the codec reads: no Protocol, no Any (the far end sends these)."""
    f = Facts("t", 1, "tcp", None, frozenset())
    assert from_json(Facts, to_json(f)) == f
