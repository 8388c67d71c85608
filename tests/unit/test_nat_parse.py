"""conntrack text -> NatEntry, on fixtures captured from real conntrack output; JSON contract."""

from __future__ import annotations

import json
import pathlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.engine.natdiff import nat_diff
from portkit.errors import InputError
from portkit.model.nat import NatChange, NatEntry, NatTuple
from portkit.ops.forward import nat_entries, watch_nat
from portkit.parse.conntrack import format_line, matches, parse_line, parse_table
from portkit.render.jsonout import dumps
from portkit.render.nat import flow_text, line, nat_document, render_nat, watch_document, watch_text

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "conntrack"


def load(name: str) -> tuple[NatEntry, ...]:
    return parse_table((FIX / name).read_text())


@pytest.mark.parametrize("name", ["nat-pat.proc.txt", "nat-pat.tool.txt", "nat-pat.plain.txt"])
def test_nat_pat_all_layouts(name: str) -> None:
    e1, u, e2 = load(name)
    assert (e1.kind, e1.port_translated, e1.label) == ("snat", False, "SNAT")
    assert e1.original == NatTuple("10.0.40.11", 40000, "203.0.113.10", 7)
    assert e1.translated == NatTuple("203.0.113.1", 40000, "203.0.113.10", 7)
    assert (e2.kind, e2.port_translated, e2.label) == ("snat", True, "PAT")
    assert e2.translated == NatTuple("203.0.113.1", 65464, "203.0.113.10", 7)
    assert (e2.proto, e2.state, e2.timeout_s) == ("tcp", "ESTABLISHED", 431998)
    assert (u.proto, u.state, u.timeout_s) == ("udp", None, 28)
    assert flow_text(e2) == "10.0.40.12:40000 -> 203.0.113.1:65464 -> 203.0.113.10:7"


def test_dnat_port_forward() -> None:
    (e,) = load("port-forward.proc.txt")
    assert (e.kind, e.port_translated, e.label) == ("dnat", True, "DNAT")
    assert e.original == NatTuple("198.51.100.10", 41000, "198.51.100.1", 8080)
    assert e.translated == NatTuple("198.51.100.10", 41000, "10.0.30.2", 2988)
    assert (
        line(e)
        == "DNAT      198.51.100.10:41000 -> 198.51.100.1:8080 -> 10.0.30.2:2988 (tcp ESTABLISHED, 431999 s left)"
    )


def test_ipv6_full_form_is_compressed() -> None:
    (e,) = load("ipv6.proc.txt")
    assert e.original == NatTuple("::1", 45000, "::1", 9)
    assert e.translated.dport == 7 and e.kind == "dnat" and e.flags == ("UNREPLIED",)


def test_untranslated_and_junk_lines_are_skipped() -> None:
    plain = "ipv4 2 tcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1"
    assert parse_line(plain) is None
    assert parse_line("garbage") is None
    assert parse_table("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n") == ()
    icmp = (
        "ipv4 2 icmp 1 29 src=10.0.0.2 dst=192.0.2.1 type=8 code=0 id=77 "
        "src=192.0.2.1 dst=192.0.2.254 type=0 code=0 id=77 mark=0 use=1"
    )
    e = parse_line(icmp)
    assert e is not None and e.kind == "snat" and e.original.sport is None and not e.port_translated


def test_json_contract_exact_shape() -> None:
    doc = json.loads(dumps(nat_document(load("nat-pat.proc.txt"))))
    assert set(doc) == {"schema", "entries"} and doc["schema"] == 1
    e = doc["entries"][2]
    assert e == {
        "proto": "tcp",
        "state": "ESTABLISHED",
        "kind": "snat",
        "port_translated": True,
        "original": {"src": "10.0.40.12", "sport": 40000, "dst": "203.0.113.10", "dport": 7},
        "translated": {"src": "203.0.113.1", "sport": 65464, "dst": "203.0.113.10", "dport": 7},
        "timeout_s": 431998,
    }
    assert doc["entries"][1]["state"] is None


def test_filters() -> None:
    text = (FIX / "nat-pat.proc.txt").read_text() + (FIX / "port-forward.proc.txt").read_text()
    assert len(nat_entries(text=text)) == 4
    assert len(nat_entries(text=text, proto="udp")) == 1
    assert len(nat_entries(text=text, port=65464)) == 1
    assert len(nat_entries(text=text, port=2988)) == 1
    assert len(nat_entries(text=text, host="10.0.40.12")) == 1
    assert len(nat_entries(text=text, host="10.0.0.0/8")) == 4
    assert len(nat_entries(text=text, host="198.51.100.0/24", proto="tcp")) == 1
    for bad in ({"port": 0}, {"proto": "tcpx"}, {"host": "nope"}):
        with pytest.raises(Exception, match="invalid"):
            nat_entries(text=text, **bad)


def test_watch_diff_and_table() -> None:
    a = load("nat-pat.proc.txt")
    b = (*a[:2], load("port-forward.proc.txt")[0])
    added, gone, changed = nat_diff(a, b)
    assert [e.kind for e in added] == ["dnat"] and [e.label for e in gone] == ["PAT"] and changed == ()
    table = render_nat(a)
    assert table.splitlines()[0].split()[:3] == ["KIND", "PROTO", "FLOW"]
    assert "PAT   tcp    10.0.40.12:40000 -> 203.0.113.1:65464 -> 203.0.113.10:7" in table
    assert render_nat(()) == "no translated flows in the conntrack table"


def test_watch_nat_yields_changes_on_an_injected_clock() -> None:
    """The --watch loop: one read per interval, a change per read that differs, no real waiting."""
    a = load("nat-pat.proc.txt")
    b = (*a[:2], load("port-forward.proc.txt")[0])
    reads = [a, b, b, a]  # no change, one added + one gone, no change, back

    def read() -> tuple[NatEntry, ...]:
        if not reads:
            raise KeyboardInterrupt  # how the watch ends: Ctrl-C
        return reads.pop(0)
    now = [1_000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    changes = watch_nat(a, read, interval=2.5, clock=lambda: now[0], sleep=sleep)
    first = next(changes)
    assert first == NatChange(1_005.0, (b[2],), (a[2],), ())
    assert slept == [2.5, 2.5]
    second = next(changes)
    assert (second.at, second.added, second.gone) == (1_010.0, (a[2],), (b[2],))
    assert len(slept) == 4
    with pytest.raises(KeyboardInterrupt):
        next(changes)
    assert len(slept) == 5
    with pytest.raises(InputError, match="invalid interval"):
        next(watch_nat(a, lambda: a, interval=0, clock=lambda: 0.0, sleep=sleep))


def test_watch_renders_text_and_json() -> None:
    a = load("nat-pat.proc.txt")
    change = NatChange(0.0, (a[0],), (a[1],), ())
    stamp = time.strftime("%H:%M:%S", time.localtime(0.0))
    assert watch_text(change) == [f"{stamp} + {line(a[0])}", f"{stamp} - {line(a[1])}"]
    doc = watch_document(change)
    assert doc["schema"] == 1 and set(doc) == {"schema", "added", "gone", "changed"}
    assert doc["changed"] == [] and len(doc["added"]) == 1 and len(doc["gone"]) == 1


addr = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
port = st.one_of(st.none(), st.integers(1, 65535))


@given(
    o=st.tuples(addr, port, addr, port), t=st.tuples(addr, port, addr, port), timeout=st.integers(0, 10**6)
)
def test_format_parse_roundtrip(
    o: tuple[str, int | None, str, int | None], t: tuple[str, int | None, str, int | None], timeout: int
) -> None:
    orig, tr = NatTuple(*o), NatTuple(*t)
    if (tr.sport is None) != (orig.sport is None) or (tr.dport is None) != (orig.dport is None):
        return
    snat = tr.src != orig.src or tr.sport != orig.sport
    dnat = tr.dst != orig.dst or tr.dport != orig.dport
    if not (snat or dnat):
        return
    kind = "both" if snat and dnat else ("snat" if snat else "dnat")
    e = NatEntry(
        "tcp", "ESTABLISHED", kind, tr.sport != orig.sport or tr.dport != orig.dport, orig, tr, timeout
    )
    assert parse_line(format_line(e)) == e
    assert matches(e, host=orig.src) and matches(e, host=tr.dst)
