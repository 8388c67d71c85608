"""The one scanner loop (drivers/scanloop.py) driven by a fake kind over a simulated link.

No sockets: the fake kind's ``send`` schedules (or drops) an answer on a fake clock, its
``receive`` moves the clock on to the next answer (or to the end of the wait) and delivers
what is due, its ``expire`` times out overdue probes with ``ScanLoop.timed_out``. So the
retransmissions, the window, timeouts, cancel and the per-kind results are checked
deterministically, with the real timing engine.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sized
from dataclasses import dataclass, field

import pytest

from portkit.drivers.scanloop import BLOCKED, LOCAL, REPLIED, RESEND, ScanKind, ScanLoop
from portkit.drivers.scanner_common import FILTERED_SILENT, ScanOutcome
from portkit.engine.timing import CongestionWindow, RttEstimator, TimingProfile
from portkit.model.probe import PortState, Reason, Verdict

CLOSED = Verdict(PortState.CLOSED, Reason.CONN_REFUSED)
OPEN = Verdict(PortState.OPEN, Reason.SYN_ACK)
LOCAL_REFUSAL = Verdict(PortState.FILTERED, Reason.NET_UNREACH)

# What the simulated host does with try ``tryno`` of ``item``: answer after a delay, answer
# inside send() itself ("quick"), or drop (None). Or one of the loop's send results.
Answer = tuple[float, Verdict] | str | Verdict | None
Network = Callable[[int, int], Answer]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sent:
    item: int
    tryno: int
    at: float
    replies: int
    hsnap: int


@dataclass
class FakeKind:
    loop: ScanLoop
    clock: Clock
    network: Network
    batch: int = 8
    inflight: dict[int, Sent] = field(default_factory=dict)
    log: list[tuple[int, int]] = field(default_factory=list)  # every (item, tryno) given to send
    peak_at_send: int = 0
    closed: bool = False
    flushes: int = 0
    max_sends_between_polls: int = 0
    _since_poll: int = 0
    on_send: Callable[[int], None] | None = None
    _due: list[tuple[float, int, int, Verdict]] = field(default_factory=list)

    def send(self, item: int, tryno: int, now: float) -> Verdict | None:
        self.log.append((item, tryno))
        self._since_poll += 1
        self.max_sends_between_polls = max(self.max_sends_between_polls, self._since_poll)
        if self.on_send is not None:
            self.on_send(len(self.log))
        answer = self.network(item, tryno)
        if answer in ("blocked", "resend", "local"):
            if answer == "local":
                self.loop.judge(item >> 16, item & 0xFFFF, LOCAL_REFUSAL)
                return LOCAL
            return BLOCKED if answer == "blocked" else RESEND
        if isinstance(answer, Verdict):  # answered within send()
            if tryno:
                self.loop.retry.on_answer(tryno)
                self.loop.replied(item >> 16, item & 0xFFFF, answer, now, True, now)
                return REPLIED
            return answer
        loop = self.loop
        self.inflight[item] = Sent(item, tryno, now, loop.cwnd.replies, loop.host_replies[item >> 16])
        self.peak_at_send = max(self.peak_at_send, len(self.inflight))
        if isinstance(answer, tuple):
            delay, verdict = answer
            heapq.heappush(self._due, (now + delay, item, tryno, verdict))
        return None

    def flush(self, now: float) -> None:
        self.flushes += 1

    def deadline(self) -> float | None:
        if not self.inflight:
            return None
        head = min(self.inflight.values(), key=lambda p: p.at)
        return head.at + self.loop.rtts[head.item >> 16].timeout()

    def receive(self, wait: float) -> float:
        self._since_poll = 0
        until = self.clock.now + wait
        if self._due and self._due[0][0] < until:
            until = max(self.clock.now, self._due[0][0])
        self.clock.now = until
        while self._due and self._due[0][0] <= until:
            _at, item, tryno, verdict = heapq.heappop(self._due)
            probe = self.inflight.get(item)
            if probe is None or probe.tryno != tryno:
                continue  # a late answer to a copy that already timed out
            del self.inflight[item]
            self.loop.sample(item >> 16, tryno, until - probe.at)
            self.loop.replied(item >> 16, item & 0xFFFF, verdict, probe.at, tryno > 0, until)
        return until

    def expire(self, now: float) -> None:
        for probe in sorted(self.inflight.values(), key=lambda p: p.at):
            if now >= probe.at + self.loop.rtts[probe.item >> 16].timeout():
                del self.inflight[probe.item]
                self.loop.timed_out(probe.item, probe.tryno, probe.at, probe.replies, probe.hsnap, now)

    def close(self) -> None:
        self.closed = True


PROFILE = TimingProfile(initial_rtt=0.2, min_rtt=0.05, max_rtt=0.5, max_retries=3, lan_min_rtt=None)


def scan(
    network: Network,
    items: list[int],
    profile: TimingProfile = PROFILE,
    *,
    hosts: int = 1,
    cancel: threading.Event | None = None,
    progress: list[tuple[int, int]] | None = None,
    on_send: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> tuple[ScanOutcome, FakeKind, ScanLoop]:
    clock = clock or Clock()
    rtts = [RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt) for _ in range(hosts)]
    cwnd = CongestionWindow(profile.min_window, profile.max_window, float(profile.initial_window))
    loop = ScanLoop(
        items,
        profile,
        rtts,
        cwnd,
        silent=FILTERED_SILENT,
        cancel=cancel,
        on_progress=None if progress is None else (lambda d, t: progress.append((d, t))),
        clock=clock,
    )
    kind = FakeKind(loop, clock, network, on_send=on_send)
    checked: ScanKind = kind  # the fake keeps the Protocol the real kinds keep
    return loop.run(checked), kind, loop


def test_every_port_gets_its_answer() -> None:
    items = list(range(1, 201))
    out, kind, loop = scan(lambda item, _t: (0.001, OPEN if item % 10 == 0 else CLOSED), items)
    assert len(out.results) == 200 and not out.interrupted
    assert all(out.results[(0, p)] == (OPEN if p % 10 == 0 else CLOSED) for p in items)
    assert out.probes_sent == 200 and len(kind.log) == 200
    assert loop.cwnd.replies == 200 and loop.host_replies == [200]
    assert kind.closed and kind.flushes > 0
    assert loop.rtts[0].samples == 200


def test_quick_answers_count_as_replies_and_grow_the_window() -> None:
    items = list(range(1, 101))
    out, kind, loop = scan(lambda _i, _t: CLOSED, items)
    assert out.results == {(0, p): CLOSED for p in items}
    assert out.probes_sent == 100 and not kind.inflight
    assert loop.cwnd.replies == 100 and loop.host_replies == [100]
    assert loop.cwnd.window > PROFILE.initial_window


def test_lost_first_try_is_retransmitted_and_retries_pay() -> None:
    # port 7 loses its first SYN; the rest answer at once
    def net(item: int, tryno: int) -> Answer:
        if item == 7 and tryno == 0:
            return None
        return (0.001, OPEN if item == 7 else CLOSED)

    out, kind, loop = scan(net, list(range(1, 51)))
    assert out.results[(0, 7)] == OPEN
    assert [t for i, t in kind.log if i == 7] == [0, 1]
    assert out.probes_sent == 51
    assert loop.retry.max_successful_try == 1  # an answer to a retransmission
    assert loop.cwnd.backoffs == 1  # ...which is congestion: the window backed off


def test_dropped_port_among_answers_is_filtered_after_its_tries() -> None:
    out, kind, loop = scan(lambda item, _t: None if item == 9 else (0.001, CLOSED), list(range(1, 41)))
    assert out.results[(0, 9)] == FILTERED_SILENT
    # nothing retransmitted was ever answered: one retry (min(max_retries, 0 + 1))
    assert [t for i, t in kind.log if i == 9] == [0, 1]
    assert out.probes_sent == 41
    # the first timeout came while neighbours answered (a filter): no back-off; the lone
    # retransmission timed out while nothing else answered, which is one back-off
    assert loop.cwnd.backoffs == 1


def test_retries_follow_the_highest_answered_try() -> None:
    # port 3 answers only its second copy, so the dropped port 5 gets two retries
    def net(item: int, tryno: int) -> Answer:
        if item == 3:
            return (0.001, OPEN) if tryno == 1 else None
        if item == 5:
            return None
        return (0.001, CLOSED)

    out, kind, loop = scan(net, [3, *range(6, 30), 5])
    assert out.results[(0, 3)] == OPEN and out.results[(0, 5)] == FILTERED_SILENT
    assert [t for i, t in kind.log if i == 3] == [0, 1]
    assert [t for i, t in kind.log if i == 5] == [0, 1, 2]
    assert loop.retry.allowed_retries() == 2


def test_a_silent_host_times_out_everything_with_no_extra_round() -> None:
    items = list(range(1, 31))
    progress: list[tuple[int, int]] = []
    out, _kind, loop = scan(lambda _i, _t: None, items, progress=progress)
    assert out.results == {(0, p): FILTERED_SILENT for p in items}
    assert out.probes_sent == 60  # two tries each, and no second round (the host never spoke)
    assert loop.cwnd.backoffs == 0  # silence from the start is no congestion
    assert progress[-1] == (30, 30)


def test_a_host_that_comes_back_gets_its_silent_ports_again() -> None:
    # the host is away for 0.3 s: ports 1-5 (the whole window) time out twice in silence,
    # so they are suspects, not filtered; the host then answers the rest, and the suspects
    # get a new round (tryno 0 again), which is answered
    clock = Clock()
    back = clock.now + 0.3
    profile = TimingProfile(
        initial_rtt=0.2, min_rtt=0.05, max_rtt=0.5, max_retries=3, lan_min_rtt=None,
        initial_window=5, min_window=1, max_window=5,
    )  # fmt: skip

    def net(_item: int, _tryno: int) -> Answer:
        return None if clock.now < back else (0.001, CLOSED)

    items = [*range(1, 6), *range(100, 140)]
    out, kind, _loop = scan(net, items, profile, clock=clock)
    assert out.results == {(0, p): CLOSED for p in items}
    assert [t for i, t in kind.log if i == 1] == [0, 1, 0]


def test_window_bounds_what_is_in_flight() -> None:
    profile = TimingProfile(
        initial_rtt=0.2, min_rtt=0.05, max_rtt=0.5, max_retries=1, lan_min_rtt=None,
        initial_window=4, min_window=2, max_window=6,
    )  # fmt: skip
    out, kind, loop = scan(lambda _i, _t: (0.01, CLOSED), list(range(1, 301)), profile)
    assert len(out.results) == 300
    assert kind.peak_at_send <= 6 and out.window_peak <= 6
    assert out.window_peak == 6  # slow start reached the cap
    assert loop.cwnd.window == 6


def test_batch_limits_probes_between_polls() -> None:
    # a window of 64 but a batch of 8: never more than 8 sends without a poll in between
    out, kind, _loop = scan(lambda _i, _t: (0.1, CLOSED), list(range(1, 41)))
    assert out.probes_sent == 40
    assert kind.max_sends_between_polls == 8


def test_blocked_and_resend_are_queued_again() -> None:
    seen: dict[int, int] = {}

    def net(item: int, _tryno: int) -> Answer:
        seen[item] = seen.get(item, 0) + 1
        if item == 4 and seen[item] == 1:
            return "blocked"
        if item == 6 and seen[item] <= 2:
            return "resend"
        return (0.001, CLOSED)

    out, kind, _loop = scan(net, list(range(1, 11)))
    assert out.results == {(0, p): CLOSED for p in range(1, 11)}
    assert [t for i, t in kind.log if i == 4] == [0, 0]  # same try, sent again
    assert [t for i, t in kind.log if i == 6] == [0, 0, 0]
    assert out.probes_sent == 10  # what the kind could not send is not counted


def test_local_refusal_is_judged_but_not_counted_as_sent() -> None:
    out, _kind, loop = scan(lambda item, _t: "local" if item == 2 else (0.001, CLOSED), [1, 2, 3])
    assert out.results[(0, 2)] == LOCAL_REFUSAL
    assert out.probes_sent == 2 and loop.host_replies == [2]


def test_retransmission_answered_within_send_is_replied_by_the_kind() -> None:
    out, kind, loop = scan(lambda item, t: None if item == 1 and t == 0 else CLOSED, list(range(1, 30)))
    assert out.results[(0, 1)] == CLOSED
    assert [t for i, t in kind.log if i == 1] == [0, 1]
    assert out.probes_sent == 30 and loop.cwnd.replies == 29


def test_cancel_stops_with_partial_results() -> None:
    cancel = threading.Event()

    def on_send(n: int) -> None:
        if n == 200:
            cancel.set()

    items = list(range(1, 1001))
    out, kind, _loop = scan(lambda _i, _t: (0.01, CLOSED), items, cancel=cancel, on_send=on_send)
    assert out.interrupted and kind.closed
    assert 0 < len(out.results) < 1000
    assert out.probes_sent < 1000


def test_ctrl_c_inside_a_hook_leaves_a_partial_outcome() -> None:
    def on_send(n: int) -> None:
        if n == 15:
            raise KeyboardInterrupt

    progress: list[tuple[int, int]] = []
    out, kind, _loop = scan(lambda _i, _t: CLOSED, list(range(1, 100)), on_send=on_send, progress=progress)
    assert out.interrupted and kind.closed
    assert len(out.results) == 14
    assert progress[-1] == (14, 99)


def test_an_error_in_a_hook_propagates_after_close() -> None:
    def net(item: int, _tryno: int) -> Answer:
        if item == 3:
            raise OSError(22, "boom")
        return CLOSED

    clock = Clock()
    loop = ScanLoop(
        [1, 2, 3], PROFILE, [RttEstimator()], CongestionWindow(), silent=FILTERED_SILENT, clock=clock
    )
    kind = FakeKind(loop, clock, net)
    with pytest.raises(OSError):
        loop.run(kind)
    assert kind.closed and loop.outcome.probes_sent == 2


def test_rate_spaces_the_sends() -> None:
    profile = TimingProfile(
        initial_rtt=0.2, min_rtt=0.05, max_rtt=0.5, max_retries=1, lan_min_rtt=None, rate=100.0
    )
    times: list[float] = []
    clock_ref: list[Clock] = []

    def net(_item: int, _tryno: int) -> Answer:
        return (0.001, CLOSED)

    def on_send(_n: int) -> None:
        times.append(clock_ref[0].now)

    clock = Clock()
    clock_ref.append(clock)
    rtts = [RttEstimator(profile.initial_rtt, profile.min_rtt, profile.max_rtt)]
    cwnd = CongestionWindow(profile.min_window, profile.max_window, float(profile.initial_window))
    loop = ScanLoop(list(range(1, 21)), profile, rtts, cwnd, silent=FILTERED_SILENT, clock=clock)
    kind = FakeKind(loop, clock, net, on_send=on_send)
    out = loop.run(kind)
    assert len(out.results) == 20
    # 100 probes/s: a first burst of 50 ms' worth (the loop starts behind), then 10 ms apart
    burst = times.count(times[0])
    assert 6 <= burst <= 7
    gaps = [b - a for a, b in zip(times[burst - 1 :], times[burst:], strict=False)]
    assert min(gaps) >= 0.01 - 1e-9
    assert times[-1] - times[0] >= (20 - burst) * 0.01 - 1e-6


def test_two_hosts_keep_their_own_rtt_and_replies() -> None:
    items = [hi << 16 | p for p in range(1, 21) for hi in (0, 1)]
    out, _kind, loop = scan(lambda item, _t: (0.002 if item >> 16 else 0.02, CLOSED), items, hosts=2)
    assert len(out.results) == 40 and loop.host_replies == [20, 20]
    assert loop.rtts[0].srtt is not None and loop.rtts[1].srtt is not None
    assert loop.rtts[0].srtt > loop.rtts[1].srtt


def test_kinds_satisfy_the_protocol() -> None:
    # the fd-per-probe kinds can be built without a network (an epoll, no socket)
    from portkit.drivers.scanner import ConnectKind, _Host
    from portkit.drivers.udpscan import UdpKind

    loop = ScanLoop([], PROFILE, [RttEstimator()], CongestionWindow(), silent=FILTERED_SILENT)
    kinds: list[ScanKind] = [
        ConnectKind(loop, [_Host("127.0.0.1", 2)], 100, record_rtt=False),
        UdpKind(loop, ["127.0.0.1"], record_rtt=False),
    ]
    for k in kinds:
        assert isinstance(k.inflight, Sized) and k.deadline() is None
        out = ScanLoop([], PROFILE, [RttEstimator()], CongestionWindow(), silent=FILTERED_SILENT).run(k)
        assert out.results == {} and out.probes_sent == 0
