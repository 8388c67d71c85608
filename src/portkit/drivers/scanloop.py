"""The one scanner loop: what the connect, SYN and UDP scans share, with per-kind hooks.

Theory of operation. A scan is a list of work items (``host_index << 16 | port``). The loop
repeats, until every item is judged:

1. **send**: while the congestion window has room (and ``--rate`` allows), take the next
   item, a retransmission first, and hand it to the kind's ``send``; at most ``kind.batch``
   probes go out between two polls, so answers are read promptly and their RTTs are not
   inflated. ``send`` answers with what became of the probe (see below); ``flush`` ends the
   batch (the SYN kind keeps its bookkeeping per batch, not per probe).
2. **next round**: once nothing is queued or in flight, :class:`SilenceTracker` says which
   silent ports deserve another round and which are concluded (``kind.silent``).
3. **receive**: wait for answers, no longer than the oldest probe's deadline
   (``kind.deadline``) or the next send the rate allows, and judge them.
4. **expire**: time out overdue probes; :meth:`ScanLoop.timed_out` retransmits or concludes.

Then cancel and progress. The timing rules (RTT timeouts, window, retries, silence) are
:mod:`portkit.engine.timing`; the loop and its helpers (:meth:`ScanLoop.replied`,
:meth:`ScanLoop.sample`, :meth:`ScanLoop.timed_out`) do the bookkeeping they need, so a
kind only talks to its sockets. Hooks on the hot path (``send``, ``receive``) may be
closures over local variables: a closure cell is read faster than an attribute, and the
loop runs once per probe on a 65,535-port scan.

What ``send(item, tryno, now)`` returns:

* ``None``: the probe is in flight (the kind holds it in ``inflight``);
* a :class:`Verdict`: a first try answered within the send itself (a connect on a LAN):
  the loop records it and feeds the window once per batch;
* :data:`REPLIED`: sent and already judged by the kind (with :meth:`ScanLoop.replied`);
* :data:`LOCAL`: judged at once by the local kernel (no route, our own firewall), not sent;
* :data:`BLOCKED`: could not be sent now (no buffers, no files): queued again, batch ends;
* :data:`RESEND`: a stale error surfaced on this send: queued again at once.
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Callable, Sequence, Sized
from typing import Protocol

from portkit.drivers.scanner_common import Probe, Progress, ScanOutcome
from portkit.engine.timing import CongestionWindow, RetryPolicy, RttEstimator, SilenceTracker, TimingProfile
from portkit.model.cancel import Cancel
from portkit.model.probe import PortState, Reason, Verdict

# What became of a probe, besides None (in flight) and a verdict (answered at once);
# compared by identity, never rendered.
REPLIED = Verdict(PortState.FILTERED, Reason.ERROR, "replied")
LOCAL = Verdict(PortState.FILTERED, Reason.ERROR, "local")
BLOCKED = Verdict(PortState.FILTERED, Reason.ERROR, "blocked")
RESEND = Verdict(PortState.FILTERED, Reason.ERROR, "resend")

SendHook = Callable[[int, int, float], "Verdict | None"]
ReceiveHook = Callable[[float], float]


class ScanKind(Protocol):
    """How one kind of scan (connect, SYN, UDP) sends probes and reads their answers."""

    @property
    def batch(self) -> int:
        """Probes sent between two polls."""
        ...

    @property
    def inflight(self) -> Sized:
        """The probes sent and not yet judged or timed out."""
        ...

    @property
    def send(self) -> SendHook:
        """``send(item, tryno, now)``: one probe; see the module docstring for the result."""
        ...

    @property
    def receive(self) -> ReceiveHook:
        """``receive(wait) -> now``: wait up to ``wait`` seconds, judge what arrived."""
        ...

    def flush(self, now: float) -> None:
        """The send batch that started at ``now`` is over."""
        ...

    def deadline(self) -> float | None:
        """When the oldest probe in flight times out (None: nothing in flight)."""
        ...

    def expire(self, now: float) -> None:
        """Time out the overdue probes, each with :meth:`ScanLoop.timed_out`."""
        ...

    def close(self) -> None:
        """Release the kind's sockets; the scan is over (finished, failed or interrupted)."""
        ...


class ScanLoop:
    """The shared state of one scan and the loop that drives a :class:`ScanKind`."""

    def __init__(
        self,
        items: Sequence[int],
        profile: TimingProfile,
        rtts: list[RttEstimator],
        cwnd: CongestionWindow,
        *,
        silent: Verdict,
        on_progress: Progress | None = None,
        cancel: Cancel | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items = items
        self.profile = profile
        self.rtts = rtts  # one per host index
        self.cwnd = cwnd
        self.retry = RetryPolicy(profile.max_retries)
        self.silence = SilenceTracker(len(rtts))
        self.host_replies = self.silence.replies  # answers per host, for silence and snapshots
        self.silent = silent  # the verdict of a port that never answered
        self.on_progress = on_progress
        self.cancel = cancel
        self.clock = clock
        self.outcome = ScanOutcome()
        self.results = self.outcome.results
        self.retries: deque[tuple[int, int]] = deque()  # (item, tryno)
        self.inflight: Sized = ()

    # -- helpers for the kinds --------------------------------------------------------------

    def sample(self, hi: int, tryno: int, rtt: float) -> None:
        """An answer arrived ``rtt`` seconds after the probe: a first try's RTT is a sample,
        a retransmission's answer tells the retry policy that retries pay."""
        if tryno == 0:
            self.rtts[hi].sample(rtt)
        else:
            self.retry.on_answer(tryno)

    def replied(
        self, hi: int, port: int, verdict: Verdict, sent_at: float, retransmitted: bool, now: float
    ) -> None:
        """A probe (already out of ``inflight``) was answered: record it, feed the window."""
        self.host_replies[hi] += 1
        self.cwnd.on_reply(sent_at, retransmitted, len(self.inflight), now)
        self.results[(hi, port)] = verdict

    def judge(self, hi: int, port: int, verdict: Verdict) -> None:
        """A verdict that is no answer from the host (the local kernel refused)."""
        self.results[(hi, port)] = verdict

    def timed_out(
        self, item: int, tryno: int, sent_at: float, replies_at_send: int, hsnap: int, now: float
    ) -> None:
        """A probe (already out of ``inflight``) got no answer: retransmit, or conclude.

        ``replies_at_send`` and ``hsnap`` are the window's and the host's reply counters when
        it was sent."""
        hi = item >> 16
        self.cwnd.on_timeout(sent_at, replies_at_send, len(self.inflight), now)
        self.silence.on_timeout(hi, item, hsnap)
        if self.retry.should_retry(tryno):
            self.retries.append((item, tryno + 1))
        elif self.silence.conclude(hi, item):
            self.results[(hi, item & 0xFFFF)] = self.silent

    # -- the loop ---------------------------------------------------------------------------

    def run(self, kind: ScanKind) -> ScanOutcome:
        """Scan every item with ``kind``; Ctrl-C or ``cancel`` leaves a partial outcome."""
        try:
            self._loop(kind)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        return self.outcome

    def _loop(self, kind: ScanKind) -> None:
        items = self.items
        total = len(items)
        results = self.results
        outcome = self.outcome
        cwnd = self.cwnd
        silence = self.silence
        host_replies = self.host_replies
        retries = self.retries
        silent = self.silent
        cancel = self.cancel
        on_progress = self.on_progress
        inflight = self.inflight = kind.inflight
        send, receive, flush, deadline = kind.send, kind.receive, kind.flush, kind.deadline
        batch_size = kind.batch
        mono = self.clock
        rate_gap = 1.0 / self.profile.rate if self.profile.rate else 0.0
        next_send = 0.0
        last_progress = 0.0
        next_index = 0
        sent = 0
        try:
            while True:
                now = mono()
                # 1. send while the window allows; at most a batch before polling again
                batch = batch_size
                window = cwnd.window
                quick = 0  # first tries answered within send(): fed to the window once per batch
                while len(inflight) + quick < window and (retries or next_index < total) and batch:
                    batch -= 1
                    if rate_gap:
                        if now < next_send:
                            break
                        next_send = max(next_send + rate_gap, now - 0.05)
                    if retries:
                        item, tryno = retries.popleft()
                    else:
                        item = items[next_index]
                        tryno = 0
                        next_index += 1
                    verdict = send(item, tryno, now)
                    if verdict is None:
                        sent += 1
                    elif verdict is BLOCKED:
                        retries.appendleft((item, tryno))
                        break
                    elif verdict is RESEND:
                        retries.appendleft((item, tryno))
                        batch += 1
                    elif verdict is REPLIED:
                        sent += 1
                    elif verdict is not LOCAL:
                        sent += 1
                        quick += 1
                        hi = item >> 16
                        host_replies[hi] += 1
                        results[(hi, item & 0xFFFF)] = verdict
                if quick:
                    cwnd.on_replies(quick)
                flush(now)
                if len(inflight) > outcome.window_peak:
                    outcome.window_peak = len(inflight)
                # 2. all sent and judged: another round for the suspects, or the end
                if not inflight and not retries and next_index >= total:
                    again, final = silence.next_round()
                    for hi, item in final:
                        results[(hi, item & 0xFFFF)] = silent
                    if not again:
                        break
                    retries.extend((item, 0) for _hi, item in again)
                    continue
                # 3. wait for answers, no longer than the oldest probe's deadline
                wait = 0.0
                due = deadline()
                if due is not None:
                    wait = max(0.0, due - now)
                if len(inflight) < cwnd.window and (retries or next_index < total):
                    # more to send: now, or when the rate allows
                    wait = (
                        0.0
                        if not rate_gap
                        else max(0.0, min(wait if due is not None else 1.0, next_send - now))
                    )
                now = receive(wait)
                # 4. time out overdue probes
                kind.expire(now)
                if cancel is not None and cancel.is_set():
                    outcome.interrupted = True
                    break
                if on_progress is not None and now - last_progress > 0.1:
                    last_progress = now
                    # suspects (silent while their host was silent too) wait for a last
                    # round, but their tries are spent: count them, or a firewalled
                    # host's bar stands still for the whole scan
                    on_progress(min(total, len(results) + len(silence.suspects)), total)
        finally:
            outcome.probes_sent = sent
            kind.close()
            if on_progress is not None:
                on_progress(len(results), total)


class FdProbes:
    """The in-flight bookkeeping of a kind that holds one socket per probe (connect, UDP):
    ``inflight`` by file descriptor, ``order`` in send order for the timeouts, one epoll."""

    batch = 64

    def __init__(self, loop: ScanLoop) -> None:
        self.loop = loop
        self.ep = select.epoll()
        self.inflight: dict[int, Probe] = {}  # fd -> probe
        self.order: deque[Probe] = deque()  # probes in send order (answered ones popped lazily)

    def flush(self, now: float) -> None:
        del now  # per-probe bookkeeping: nothing to close at the end of a batch

    def deadline(self) -> float | None:
        if not self.order:
            return None
        head = self.order[0]
        return head.sent + self.loop.rtts[head.hi].timeout()

    def expire(self, now: float) -> None:
        order, inflight, ep = self.order, self.inflight, self.ep
        rtts, timed_out = self.loop.rtts, self.loop.timed_out
        while order:
            probe = order[0]
            if probe.done:
                order.popleft()
                continue
            if now < probe.sent + rtts[probe.hi].timeout():
                break
            order.popleft()
            s = probe.sock
            fd = s.fileno()
            del inflight[fd]
            ep.unregister(fd)
            s.close()
            probe.done = True
            timed_out(probe.hi << 16 | probe.port, probe.tryno, probe.sent, probe.replies, probe.hsnap, now)

    def close(self) -> None:
        for probe in self.inflight.values():
            probe.sock.close()
        self.inflight.clear()
        self.ep.close()
