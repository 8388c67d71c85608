"""Pure parsers of the probe domain: the error queue, nmap-services, banners, grouping."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from portkit.engine.scanplan import group_ports, profile_for
from portkit.model.probe import PortResult, PortState, Reason
from portkit.parse.banner import ECHO, client_hello, describe_reply, describe_tls, first_line, http_probe
from portkit.parse.nmap_services import parse_nmap_services, top_by_frequency
from portkit.parse.sockerr import icmp_reason, parse_sock_extended_err, state_for
from portkit.registry.top_ports import OWN_TOP_TCP, own_top_ports
from portkit.registry.udp_payloads import udp_payload


def ee_bytes(err: int, origin: int, typ: int, code: int, offender: bytes) -> bytes:
    return struct.pack("=IBBBBII", err, origin, typ, code, 0, 0, 0) + offender


def sockaddr_in(addr: str) -> bytes:
    return struct.pack("=H", 2) + b"\x00\x00" + ipaddress.IPv4Address(addr).packed + b"\x00" * 8


def sockaddr_in6(addr: str) -> bytes:
    return struct.pack("=H", 10) + b"\x00" * 6 + ipaddress.IPv6Address(addr).packed + b"\x00" * 4


def test_sock_extended_err_ipv4_admin_prohibited() -> None:
    ee = parse_sock_extended_err(ee_bytes(113, 2, 3, 13, sockaddr_in("10.0.0.2")))
    assert (ee.errno, ee.origin, ee.type, ee.code, ee.offender) == (113, 2, 3, 13, "10.0.0.2")
    assert ee.is_icmp and ee.family == 4
    assert icmp_reason(4, ee.type, ee.code) is Reason.ADMIN_PROHIBITED


def test_sock_extended_err_ipv6_and_mapped() -> None:
    ee = parse_sock_extended_err(ee_bytes(13, 3, 1, 1, sockaddr_in6("fd00::1")))
    assert ee.offender == "fd00::1" and ee.family == 6
    assert icmp_reason(6, 1, 1) is Reason.ADMIN_PROHIBITED
    mapped = parse_sock_extended_err(ee_bytes(111, 3, 1, 4, sockaddr_in6("::ffff:10.1.2.3")))
    assert mapped.offender == "10.1.2.3"


def test_sock_extended_err_local_origin_and_short() -> None:
    ee = parse_sock_extended_err(ee_bytes(90, 1, 0, 0, b""))
    assert not ee.is_icmp and ee.offender is None
    with pytest.raises(ValueError):
        parse_sock_extended_err(b"\x00" * 8)


@pytest.mark.parametrize(
    ("fam", "typ", "code", "reason"),
    [
        (4, 3, 0, Reason.NET_UNREACH),
        (4, 3, 1, Reason.HOST_UNREACH),
        (4, 3, 2, Reason.PROTO_UNREACH),
        (4, 3, 3, Reason.PORT_UNREACH),
        (4, 3, 9, Reason.NET_PROHIBITED),
        (4, 3, 10, Reason.HOST_PROHIBITED),
        (4, 3, 13, Reason.ADMIN_PROHIBITED),
        (4, 11, 0, Reason.ICMP_OTHER),
        (6, 1, 0, Reason.NET_UNREACH),
        (6, 1, 3, Reason.HOST_UNREACH),
        (6, 1, 4, Reason.PORT_UNREACH),
        (6, 4, 1, Reason.PROTO_UNREACH),
    ],
)
def test_icmp_reasons_match_nmap(fam: int, typ: int, code: int, reason: Reason) -> None:
    assert icmp_reason(fam, typ, code) is reason


def test_state_for_port_unreach_depends_on_protocol() -> None:
    assert state_for("udp", Reason.PORT_UNREACH) is PortState.CLOSED
    assert state_for("tcp", Reason.PORT_UNREACH) is PortState.FILTERED  # like nmap -sS
    assert state_for("udp", Reason.ADMIN_PROHIBITED) is PortState.FILTERED


NMAP_SERVICES = """\
# comment
tcpmux\t1/tcp\t0.001995\t# TCP Port Service Multiplexer
http\t80/tcp\t0.484143\t# World Wide Web HTTP
unknown\t8888/tcp\t0.002\t
domain\t53/udp\t0.213496\t# Domain Name Server
ssh\t22/tcp\t0.182286\t# Secure Shell Login
broken line
bad\tx/tcp\t0.1
"""


def test_nmap_services_top_ports() -> None:
    entries = parse_nmap_services(NMAP_SERVICES)
    assert len(entries) == 5
    assert top_by_frequency(entries, 3, "tcp") == (80, 22, 8888)  # "unknown" counts, as in nmap
    assert top_by_frequency(entries, 5, "udp") == (53,)


def test_own_top_ports() -> None:
    assert own_top_ports(3) == OWN_TOP_TCP[:3]
    top = own_top_ports(1000)
    assert len(top) == 1000 and len(set(top)) == 1000
    assert own_top_ports(65535, "udp")[-1] in range(1, 65536)


def test_udp_payloads() -> None:
    assert udp_payload(53)[2:4] == b"\x01\x00"  # a DNS query with recursion desired
    assert len(udp_payload(123)) == 48 and udp_payload(123)[0] & 0x07 == 3  # NTP client mode
    assert udp_payload(161)[0] == 0x30  # an SNMP BER sequence
    assert udp_payload(9) == b""


def test_banner_first_line() -> None:
    assert first_line(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\nmore") == "SSH-2.0-OpenSSH_9.2p1 Debian"
    assert first_line(b"\r\n\r\n220 mail ESMTP\r\n") == "220 mail ESMTP"
    assert first_line(b"\x00\x01bin\x02") == "..bin."
    assert first_line(b"") is None
    assert len(first_line(b"x" * 1000) or "") == 200


def test_client_hello_is_a_tls_record() -> None:
    hello = client_hello("example.lab", b"r" * 32, b"k" * 32)
    assert hello[:3] == b"\x16\x03\x01"
    assert int.from_bytes(hello[3:5], "big") == len(hello) - 5
    assert hello[5] == 1  # ClientHello
    assert b"example.lab" in hello
    assert b"10.0.0.2" not in client_hello("10.0.0.2", b"r" * 32, b"k" * 32)  # no SNI for addresses
    with pytest.raises(ValueError):
        client_hello(None, b"short", b"k" * 32)


def server_hello(version: int, supported: int | None) -> bytes:
    ext = b""
    if supported is not None:
        ext = struct.pack("!HHH", 0x002B, 2, supported)
    body = (
        struct.pack("!H", version)
        + b"r" * 32
        + b"\x00"
        + b"\x13\x01"
        + b"\x00"
        + struct.pack("!H", len(ext))
        + ext
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def test_describe_tls() -> None:
    assert describe_tls(server_hello(0x0303, 0x0304)) == "TLS 1.3"
    assert describe_tls(server_hello(0x0303, None)) == "TLS 1.2"
    assert describe_tls(b"\x15\x03\x03\x00\x02\x02\x28") == "TLS (alert)"
    assert describe_tls(b"HTTP/1.1 400 Bad Request\r\n") is None
    assert describe_tls(b"\x16\x03") is None


def test_an_echoed_client_hello_is_not_tls() -> None:
    # found in the lab: an echo service sent our ClientHello back and was called "TLS 1.0"
    hello = client_hello("example.lab", b"r" * 32, b"k" * 32)
    assert describe_tls(hello) is None
    assert describe_reply(hello, hello) == ECHO
    assert describe_reply(hello, hello[:100]) == ECHO  # a partial echo
    get = http_probe("web.lab")
    assert get.startswith(b"GET / HTTP/1.0\r\n") and b"Host: web.lab" in get and get.endswith(b"\r\n\r\n")
    assert describe_reply(get, get) == ECHO
    assert describe_reply(get, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n") == "HTTP/1.0 200 OK"
    assert describe_reply(hello, server_hello(0x0303, 0x0304)) == "TLS 1.3"
    assert describe_reply(hello, b"") is None


def _row(port: int, state: PortState, reason: Reason, proto: str = "tcp") -> PortResult:
    return PortResult(port, proto, state, reason, None)


def test_group_ports_collapses_groups_over_25() -> None:
    rows = [_row(p, PortState.CLOSED, Reason.CONN_REFUSED) for p in range(1, 101)]
    rows += [_row(p, PortState.FILTERED, Reason.NO_RESPONSE) for p in range(200, 225)]  # exactly 25: listed
    rows += [_row(p, PortState.OPEN, Reason.SYN_ACK) for p in range(300, 340)]  # open: always listed
    shown, hidden = group_ports(rows)
    assert [(g.state, g.reason, g.count) for g in hidden] == [(PortState.CLOSED, Reason.CONN_REFUSED, 100)]
    assert len(shown) == 65 and shown[0].port == 200
    shown_all, hidden_all = group_ports(rows, collapse=False)
    assert len(shown_all) == len(rows) and hidden_all == ()


def test_profile_for_overrides() -> None:
    p = profile_for(timeout=0.3, retries=2, rate=100)
    assert (p.initial_rtt, p.min_rtt, p.max_rtt, p.max_retries, p.rate) == (0.3, 0.3, 0.3, 2, 100)
    d = profile_for()
    assert (d.initial_rtt, d.min_rtt, d.max_rtt, d.max_retries) == (0.5, 0.1, 1.25, 6)
