"""trace_port's windowing, retries and stop rules, driven by a fake network (no sockets)."""

from __future__ import annotations

import pytest

from portkit.drivers import trace as drv
from portkit.errors import InputError
from portkit.model.trace import HOP_DESTINATION, HOP_TIME_EXCEEDED, HOP_UNREACHABLE, TraceHop


class FakePath:
    """Routers at TTL 1..n-1, the destination at n; ``drop_after`` silences TTLs beyond it."""

    def __init__(self, n: int, *, answer: str = "syn-ack", drop_after: int | None = None, lossy: set[int] | None = None) -> None:
        self.n = n
        self.answer = answer
        self.drop_after = drop_after
        self.lossy = set(lossy or ())  # TTLs whose first probe is lost
        self.rounds: list[list[int]] = []

    def __call__(self, address: str, port: int, proto: str, ttls: list[int], timeout: float, source: str | None) -> dict[int, TraceHop]:
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
    assert r.reached and r.state == "closed" and r._reason == "conn-refused"


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
    assert r._reason == "admin-prohibited" and r._reason_from == "10.0.3.1"


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


@pytest.mark.parametrize(("kw", "word"), [({"proto": "sctp"}, "protocol"), ({"max_ttl": 0}, "TTL"), ({"window": 99}, "window")])
def test_bad_arguments(kw: dict[str, object], word: str) -> None:
    with pytest.raises(InputError, match=word):
        drv.trace_port("10.0.9.9", 80, **kw)  # type: ignore[arg-type]
