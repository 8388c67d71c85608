"""engine/timing: nmap's RTT estimator and the congestion window, as properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.engine.endpoint import parse_ports
from portkit.engine.scanplan import compact_ports
from portkit.engine.timing import CongestionWindow, RetryPolicy, RttEstimator, TimingProfile

rtts = st.floats(min_value=0.0, max_value=7.9, allow_nan=False)


def test_first_sample_rules() -> None:
    r = RttEstimator(initial_rtt=0.5, min_rtt=0.1, max_rtt=10.0)
    assert r.timeout() == 0.5  # no sample yet: the initial timeout
    r.sample(0.0001)
    assert r.srtt == 0.0001 and r.rttvar == 0.005  # rttvar clamped up to 5 ms
    r2 = RttEstimator(min_rtt=0.1, max_rtt=10.0)
    r2.sample(3.0)
    assert r2.rttvar == 2.0  # clamped down to 2 s
    assert r2.timeout() == 10.0  # 3 + 4*2 = 11, clamped to max


def test_update_uses_old_srtt_like_nmap() -> None:
    r = RttEstimator(min_rtt=0.001, max_rtt=10.0)
    r.sample(0.1)
    r.sample(0.2)
    assert abs(r.srtt - (0.1 + 0.1 / 8)) < 1e-12  # type: ignore[operator]
    assert abs(r.rttvar - (0.1 + (0.1 - 0.1) / 4)) < 1e-12


def test_samples_over_8s_are_ignored() -> None:
    r = RttEstimator()
    assert r.sample(8.5) is False
    assert r.srtt is None and r.samples == 0


@given(st.lists(rtts, min_size=1, max_size=60), st.floats(0.001, 0.5), st.floats(0.5, 10.0))
def test_timeout_always_within_bounds(samples: list[float], lo: float, hi: float) -> None:
    r = RttEstimator(initial_rtt=1.0, min_rtt=lo, max_rtt=hi, lan_min_rtt=None)
    for d in samples:
        r.sample(d)
        assert lo <= r.timeout() <= hi
        assert r.rttvar >= 0


@given(st.floats(1e-6, 0.002), st.integers(40, 200))
def test_lan_floor_only_after_enough_fast_samples(rtt: float, n: int) -> None:
    r = RttEstimator(min_rtt=0.1, max_rtt=1.25, lan_min_rtt=0.025)
    for i in range(n):
        if i == 10:
            assert r.timeout() == 0.1  # too few samples: nmap's floor
        r.sample(rtt)
    assert r.timeout() == 0.025
    r.sample(0.05)  # a slow reply: the LAN floor no longer holds
    for _ in range(3):
        r.sample(0.05)
    assert r.timeout() >= 0.1


@given(st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_timeout_covers_steady_rtt(a: float, b: float) -> None:
    """With a constant RTT the timeout converges to at least that RTT (no false timeouts)."""
    r = RttEstimator(min_rtt=0.001, max_rtt=5.0, lan_min_rtt=None)
    for _ in range(50):
        r.sample(a)
    assert r.timeout() >= a
    del b


ops = st.lists(
    st.tuples(st.sampled_from(["reply", "retx", "timeout", "silent"]), st.integers(0, 500)), max_size=200
)


@settings(max_examples=200)
@given(ops, st.integers(1, 64), st.integers(64, 5000))
def test_window_stays_within_bounds(events: list[tuple[str, int]], lo: int, hi: int) -> None:
    w = CongestionWindow(lo, hi, 64.0)
    now = 0.0
    for kind, inflight in events:
        now += 0.001
        if kind == "reply":
            w.on_reply(now - 0.0005, False, inflight, now)
        elif kind == "retx":
            w.on_reply(now - 0.0005, True, inflight, now)
        elif kind == "timeout":
            w.on_timeout(now - 0.1, w.replies - 1, inflight, now)  # others were answered meanwhile
        else:
            w.on_timeout(now - 0.1, w.replies, inflight, now)  # the host was silent
        assert lo <= w.window <= hi


def test_window_grows_and_backs_off() -> None:
    w = CongestionWindow(16, 4096, 64.0)
    for i in range(100):
        w.on_reply(i * 0.001, False, 10, i * 0.001 + 0.0001)
    assert w.window == 164  # slow start: +1 per answer
    grown = w.window
    # a timeout while other probes were answered: a filtered port, not congestion
    w.on_timeout(0.05, w.replies - 3, 100, 0.2)
    assert w.window == grown
    # a timeout during which the host said nothing: back off (once per round trip)
    w.on_timeout(0.15, w.replies, 100, 0.3)
    assert w.window == grown // 2 and w.backoffs == 1
    w.on_timeout(0.16, w.replies, 100, 0.31)  # sent before the back-off: same loss event
    assert w.backoffs == 1
    # an answer to a retransmission: the first copy was lost -> congestion
    w.on_reply(0.35, True, 100, 0.4)
    assert w.backoffs == 2 and w.ssthresh == 50


def test_retry_policy_follows_max_successful_try() -> None:
    p = RetryPolicy(max_retries=6)
    assert p.allowed_retries() == 1 and p.should_retry(0) and not p.should_retry(1)
    p.on_answer(3)
    assert p.allowed_retries() == 4
    p.on_answer(10)
    assert p.allowed_retries() == 6


def test_profile_validation() -> None:
    import pytest

    with pytest.raises(ValueError):
        TimingProfile(min_rtt=2.0, max_rtt=1.0)
    with pytest.raises(ValueError):
        TimingProfile(min_window=0)


@given(st.sets(st.integers(1, 65535), min_size=1, max_size=300))
def test_compact_ports_roundtrip(ports: set[int]) -> None:
    assert parse_ports(compact_ports(sorted(ports))) == tuple(sorted(ports))


def test_silence_tracker_rounds() -> None:
    from portkit.engine.timing import SilenceTracker

    t = SilenceTracker(hosts=2)
    snap = t.snapshot(0)
    t.on_reply(0)  # another port answered while item 1 waited: the host is alive
    t.on_timeout(0, 1, snap)
    assert t.conclude(0, 1) is True  # heard: filtered now
    snap2 = t.snapshot(0)
    t.on_timeout(0, 2, snap2)  # silent wait: nobody answered
    assert t.conclude(0, 2) is False  # a suspect
    t.on_reply(0)  # ...and later the host answered something
    again, final = t.next_round()
    assert again == [(0, 2)] and final == []
    t.on_timeout(0, 2, t.snapshot(0))
    assert t.conclude(0, 2) is False
    again, final = t.next_round()  # the host said nothing since: filtered
    assert again == [] and final == [(0, 2)]
    # a host that never answers anything never gets extra rounds
    t.on_timeout(1, 9, t.snapshot(1))
    assert t.conclude(1, 9) is False
    assert t.next_round() == ([], [(1, 9)])


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.booleans()), max_size=80))
def test_silence_tracker_is_bounded(events: list[tuple[int, int, bool]]) -> None:
    """However replies fall, no item gets more than max_rounds extra rounds."""
    from portkit.engine.timing import SilenceTracker

    t = SilenceTracker(hosts=3, max_rounds=2)
    extra: dict[int, int] = {}
    for host, item, answer in events:
        snap = t.snapshot(host)
        if answer:
            t.on_reply(host)
        t.on_timeout(host, item, snap)
        t.conclude(host, item)
        again, _final = t.next_round()
        for _h, it in again:
            extra[it] = extra.get(it, 0) + 1
    assert all(n <= 2 for n in extra.values())


@given(st.integers(0, 3000), st.floats(1.0, 5000.0), st.floats(16.0, 1e9))
def test_batched_replies_equal_single_replies(n: int, start: float, ssthresh: float) -> None:
    a = CongestionWindow(16, 8192, start)
    b = CongestionWindow(16, 8192, start)
    a.ssthresh = b.ssthresh = ssthresh
    for _ in range(n):
        a.on_reply(0.0, False, 0, 0.0)
    b.on_replies(n)
    assert a.replies == b.replies
    assert abs(a.cwnd - b.cwnd) <= 0.5 + 0.01 * a.cwnd  # congestion avoidance: sqrt(w^2 + 2n) in one step


def test_never_answering_target_is_not_backed_off_from() -> None:
    w = CongestionWindow(16, 4096, 64.0, blind_window=100)
    for i in range(200):
        w.on_timeout(i * 0.01, 0, 64, i * 0.01 + 0.5)
    assert w.backoffs == 0 and w.window == 100  # grew slowly, capped at blind_window


def test_a_silent_stretch_backs_off_once() -> None:
    w = CongestionWindow(16, 4096, 64.0)
    for i in range(50):
        w.on_reply(i * 0.001, False, 10, i * 0.001)
    before = w.window
    for i in range(100):  # the host goes quiet: one back-off, not a collapse to the minimum
        w.on_timeout(1.0 + i * 0.01, w.replies, 50, 1.5 + i * 0.01)
    assert w.backoffs == 1 and w.window == before // 2 + 99  # then slow growth while silent
    w.on_reply(3.0, False, 10, 3.0)  # it answers again; a new silence may back off again
    w.on_timeout(3.1, w.replies, 50, 3.6)
    assert w.backoffs == 2
