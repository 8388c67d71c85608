"""Property: a why facts snapshot reads back equal, and reasons to the same diagnosis.

Random :class:`Facts` are built from the model's own type hints (every field filled, the
defaulted ones too, nested dataclasses included), so a field added to the model is covered
without touching this file. Pure: no network, no root.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import tempfile
import types
import typing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.model.codec import from_json, to_json
from portkit.model.diagnosis import Facts
from portkit.ops.why import diagnose_facts, dump_facts, facts_document, parse_facts, read_facts
from portkit.render.jsonout import dumps
from portkit.render.why import why_json

TEXT = st.text(max_size=12)
ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "::", "10.0.2.2", "fe80::1%eth0", "::ffff:10.0.0.1"]),
)


def strategy_for(tp: Any, overrides: dict[tuple[type, str], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A strategy for any type the snapshot codec reads (the same forms it supports)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return st.none()
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(strategy_for(a, overrides) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0], overrides), max_size=2).map(tuple)
        return st.tuples(*(strategy_for(a, overrides) for a in args))
    if origin is frozenset:
        return st.frozensets(strategy_for(args[0], overrides), max_size=2)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        return st.one_of(TEXT, ADDRESSES)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return builds_all(tp, overrides)
    raise TypeError(f"no strategy for {tp!r}")


def builds_all(cls: type, overrides: dict[tuple[type, str], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: overrides[(cls, f.name)] if (cls, f.name) in overrides else strategy_for(hints[f.name], overrides)
        for f in dataclasses.fields(cls)
        if f.init
    }
    return st.builds(cls, **fields)


ANY_FACTS: st.SearchStrategy[Facts] = builds_all(Facts, {})

# What a gathering can write at the top of a snapshot (parse_facts refuses anything else).
PLAUSIBLE: dict[tuple[type, str], st.SearchStrategy[Any]] = {
    (Facts, "port"): st.integers(min_value=1, max_value=65535),
    (Facts, "proto"): st.sampled_from(["tcp", "udp"]),
    (Facts, "roles"): st.frozensets(st.sampled_from(["client", "router", "server"])),
    (Facts, "address"): st.one_of(st.none(), st.ip_addresses().map(str)),
}
PLAUSIBLE_FACTS: st.SearchStrategy[Facts] = builds_all(Facts, PLAUSIBLE)


@settings(max_examples=120, deadline=None)
@given(ANY_FACTS)
def test_from_json_of_to_json_is_identity(f: Facts) -> None:
    assert from_json(Facts, to_json(f)) == f


@settings(max_examples=120, deadline=None)
@given(ANY_FACTS)
def test_identity_through_json_text(f: Facts) -> None:
    text = json.dumps(to_json(f), ensure_ascii=False)
    assert from_json(Facts, json.loads(text)) == f
    # deterministic text: the same facts always write the same bytes (frozensets sorted)
    assert json.dumps(to_json(from_json(Facts, json.loads(text))), ensure_ascii=False) == text


@settings(max_examples=100, deadline=None)
@given(PLAUSIBLE_FACTS)
def test_snapshot_document_reads_back_and_reasons_the_same(f: Facts) -> None:
    doc = facts_document(f)
    assert doc["schema"] == 1 and doc["kind"] == "why-facts"
    again = parse_facts(json.dumps(doc, indent=2))
    assert again == f
    # the reasoning never fails on a readable snapshot, and cannot tell the copy apart
    assert dumps(why_json(diagnose_facts(again))) == dumps(why_json(diagnose_facts(f)))


@settings(max_examples=25, deadline=None)
@given(PLAUSIBLE_FACTS)
def test_dump_then_read_a_file(f: Facts) -> None:
    with tempfile.TemporaryDirectory(prefix="pk-facts-") as d:
        path = str(pathlib.Path(d) / "facts.json")
        dump_facts(f, path)
        dump_facts(f, path)  # over an existing file: replaced whole
        assert read_facts(path) == f
        assert [p.name for p in pathlib.Path(d).iterdir()] == ["facts.json"]  # no temporary left


def test_strategies_reach_the_nested_facts() -> None:
    """The generated snapshots hold what the diagnosis reads: forwards, traces, hops."""
    seen: set[str] = set()

    @settings(max_examples=60, deadline=None)
    @given(ANY_FACTS)
    def collect(f: Facts) -> None:
        if f.forwards and f.forwards[0].dnat is not None:
            seen.add("dnat")
        if f.trace is not None and f.trace.hops:
            seen.add("hops")
        if f.listeners:
            seen.add("listeners")
        if f.resolution is not None and f.resolution.ipv6:
            seen.add("ipv6")
        with_address = [a for a in (f.address, f.client) if a]
        for a in with_address:
            try:
                ipaddress.ip_address(a)
                seen.add("address")
            except ValueError:
                pass

    collect()
    assert seen == {"dnat", "hops", "listeners", "ipv6", "address"}
