"""trace_port's windowing, retries and stop rules, driven by a fake network (no sockets)."""

from __future__ import annotations

import pytest

from portkit.drivers import trace as drv
from portkit.errors import InputError
from portkit.model.trace import HOP_DESTINATION, HOP_TIME_EXCEEDED, HOP_UNREACHABLE, TraceHop


class FakePath:
    """Routers at TTL 1..n-1, the destination at n; ``drop_after`` silences TTLs beyond it."""

    def __init__(
        self, n: int, *, answer: str = "syn-ack", drop_after: int | None = None, lossy: set[int] | None = None
    ) -> None:
        self.n = n
        self.answer = answer
        self.drop_after = drop_after
        self.lossy = set(lossy or ())  # TTLs whose first probe is lost
        self.rounds: list[list[int]] = []

    def __call__(
        self,
        address: str,
        port: int,
        proto: str,
        ttls: list[int],
        timeout: float,
        source: str | None,
        method: str = "recverr",
    ) -> dict[int, TraceHop]:
        self.rounds.append(list(ttls))
        out: dict[int, TraceHop] = {}
        for t in ttls:
            if t in self.lossy:
                self.lossy.discard(t)
                continue
            if self.drop_after is not None and t > self.drop_after:
                continue
            if t < self.n:
                out[t] = TraceHop(t, f"10.0.{t}.1", 0.1 * t, HOP_TIME_EXCEEDED, "time-exceeded")
            elif self.answer == "admin-prohibited":
                out[t] = TraceHop(t, f"10.0.{self.n - 1}.1", 0.5, HOP_UNREACHABLE, "admin-prohibited")
            else:
                out[t] = TraceHop(t, address, 0.5, HOP_DESTINATION, self.answer)
        return out


def test_reaches_open_port_and_stops_at_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakePath(3)
    monkeypatch.setattr(drv, "_round", net)
    r = drv.trace_port("10.0.9.9", 80, "tcp")
    assert r.reached and r.state == "open" and r.last_hop == "10.0.9.9"
    assert [h.ttl for h in r.hops] == [1, 2, 3]
    assert len(net.rounds) == 1


def test_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drv, "_round", FakePath(2, answer="conn-refused"))
    r = drv.trace_port("10.0.9.9", 81)
    assert r.reached and r.state == "closed" and r.reason == "conn-refused"


def test_udp_port_unreachable_is_closed_and_silence_is_open_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drv, "_round", FakePath(2, answer="port-unreach"))
    assert drv.trace_port("10.0.9.9", 53, "udp").state == "closed"
    monkeypatch.setattr(drv, "_round", FakePath(5, drop_after=2))
    r = drv.trace_port("10.0.9.9", 53, "udp", timeout=0.01)
    assert r.state == "open|filtered" and not r.reached


def test_probes_die_after_filtering_router(monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakePath(6, drop_after=2)
    monkeypatch.setattr(drv, "_round", net)
    r = drv.trace_port("10.0.9.9", 81, window=4, gap=3, tries=2)
    assert not r.reached and r.state == "filtered"
    assert r.last_hop == "10.0.2.1" and r.last_hop_ttl == 2
    assert [h.address for h in r.hops] == ["10.0.1.1", "10.0.2.1", None, None, None]
    # window 1-4, retry of the silent 3-4, then window 5-8 (only 2 after the last answer), retry 5-8
    assert net.rounds[0] == [1, 2, 3, 4] and net.rounds[1] == [3, 4]
    assert all(max(r_) <= 8 for r_ in net.rounds)


def test_icmp_prohibited_ends_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drv, "_round", FakePath(4, answer="admin-prohibited"))
    r = drv.trace_port("10.0.9.9", 22)
    assert not r.reached and r.state == "filtered"
    assert r.reason == "admin-prohibited" and r.reason_from == "10.0.3.1"


def test_a_lost_probe_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakePath(4, lossy={2})
    monkeypatch.setattr(drv, "_round", net)
    r = drv.trace_port("10.0.9.9", 80)
    assert r.reached and r.hops[1].address == "10.0.2.1"
    assert net.rounds[1] == [2]


def test_long_path_over_several_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drv, "_round", FakePath(12))
    r = drv.trace_port("10.0.9.9", 80, window=5)
    assert r.reached and len(r.hops) == 12


def test_max_ttl_bounds_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakePath(40)
    monkeypatch.setattr(drv, "_round", net)
    r = drv.trace_port("10.0.9.9", 80, max_ttl=10, window=8)
    assert not r.reached and max(max(x) for x in net.rounds) <= 10 and len(r.hops) <= 10


@pytest.mark.parametrize(
    ("kw", "word"), [({"proto": "sctp"}, "protocol"), ({"max_ttl": 0}, "TTL"), ({"window": 99}, "window")]
)
def test_bad_arguments(kw: dict[str, object], word: str) -> None:
    with pytest.raises(InputError, match=word):
        drv.trace_port("10.0.9.9", 80, **kw)  # type: ignore[arg-type]


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    import ipaddress
    import struct

    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return hdr + payload


def test_parse_icmp_time_exceeded_quoting_a_tcp_syn() -> None:
    import struct

    syn = struct.pack("!HHIIHHHH", 40000, 81, 1234, 0, 0x5002, 64240, 0, 0)
    quoted = _ipv4("10.0.1.2", "10.0.3.2", 6, syn)
    icmp = bytes([11, 0, 0, 0, 0, 0, 0, 0]) + quoted
    packet = _ipv4("10.0.1.1", "10.0.1.2", 1, icmp)
    q = drv.parse_icmp_error(packet, 4, "10.0.1.1")
    assert q == drv.IcmpQuote(11, 0, "10.0.1.1", "10.0.3.2", 6, 40000, 81)


def test_parse_icmpv6_port_unreachable_quoting_udp() -> None:
    import ipaddress
    import struct

    udp = struct.pack("!HHHH", 50000, 53, 10, 0) + b"\r\n"
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64,
                      ipaddress.IPv6Address("fd00:1::2").packed, ipaddress.IPv6Address("fd00:3::2").packed)  # fmt: skip
    icmp6 = bytes([1, 4, 0, 0, 0, 0, 0, 0]) + ip6 + udp
    q = drv.parse_icmp_error(icmp6, 6, "fd00:3::2")
    assert q == drv.IcmpQuote(1, 4, "fd00:3::2", "fd00:3::2", 17, 50000, 53)


def test_parse_icmp_ignores_other_messages_and_truncation() -> None:
    echo_reply = _ipv4("10.0.1.1", "10.0.1.2", 1, bytes([0, 0, 0, 0, 0, 1, 0, 1]) + b"x" * 8)
    assert drv.parse_icmp_error(echo_reply, 4, "10.0.1.1") is None
    assert drv.parse_icmp_error(b"\x45\x00", 4, "10.0.1.1") is None
    short = _ipv4("10.0.1.1", "10.0.1.2", 1, bytes([11, 0, 0, 0, 0, 0, 0, 0]) + b"\x45" + b"\x00" * 5)
    assert drv.parse_icmp_error(short, 4, "10.0.1.1") is None
    assert drv.parse_icmp_error(bytes([128, 0, 0, 0, 0, 0, 0, 0]), 6, "fd00::1") is None


def test_bad_method() -> None:
    with pytest.raises(InputError, match="method"):
        drv.trace_port("10.0.9.9", 80, method="magic")
