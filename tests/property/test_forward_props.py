"""Property tests: SPEC text round-trips, client filters agree with ipaddress."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from portkit.engine.forwardspec import client_allowed, format_spec, parse_spec
from portkit.model.forward import ForwardSpec

ports = st.integers(1, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).filter(lambda a: not a.is_link_local).map(str)  # link-local needs %iface
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,5}){0,2}\Z", fullmatch=True)


@given(
    bind=st.one_of(v4, v6),
    lport=ports,
    target=st.one_of(v4, v6, names),
    tport=ports,
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_spec_roundtrip(bind: str, lport: int, target: str, tport: int, proto: str) -> None:
    spec = ForwardSpec(bind, lport, target, tport, proto)
    assert parse_spec(format_spec(spec)) == spec


@given(st.text(max_size=30))
def test_parse_never_crashes_with_anything_but_input_errors(text: str) -> None:
    from portkit.errors import InputError

    try:
        parse_spec(text)
    except InputError as exc:
        assert "\n" not in str(exc) or "\n" in text


@given(addr=st.ip_addresses(v=4), base=st.ip_addresses(v=4), plen=st.integers(0, 32), deny=st.booleans())
def test_filter_matches_ipaddress(
    addr: ipaddress.IPv4Address, base: ipaddress.IPv4Address, plen: int, deny: bool
) -> None:
    net = ipaddress.ip_network(f"{base}/{plen}", strict=False)
    inside = addr in net
    if deny:
        assert client_allowed(str(addr), (), (net,)) is (not inside)
    else:
        assert client_allowed(str(addr), (net,), ()) is inside
