"""Bulk flows handed from the epoll loop to blocking splice threads (drivers/forwarder_bulk).

The forwarder runs in-process with ``bulk_read=1`` so every flow that moves a byte is handed
over (the default waits for one 256 KiB read), which makes the hand-off deterministic."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from portkit.drivers.forwarder import Forwarder
from portkit.engine.forwardspec import parse_spec
from portkit.model.forward import ForwardOptions
from tests.integration.forward_helpers import HOST, echo_target, free_port

MiB = 1 << 20


@contextmanager
def inproc(
    target_port: int, *, bulk_threads: int, drain: float = 10.0
) -> Iterator[tuple[Forwarder, int, list[str]]]:
    log: list[str] = []
    port = free_port()
    fwd = Forwarder(
        [parse_spec(f"{port}:{target_port}")],
        ForwardOptions(drain=drain),
        log=log.append,
        workers=1,
        bulk_threads=bulk_threads,
        bulk_read=1,
    )
    fwd.start()
    t = threading.Thread(target=fwd.run, daemon=True)
    t.start()
    try:
        yield fwd, port, log
    finally:
        fwd.request_stop()
        t.join(30)
        assert not t.is_alive()


def _read_all(s: socket.socket) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    while chunk := s.recv(1 << 18):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def test_bulk_flow_on_threads_keeps_half_close_bytes_and_log() -> None:
    """Client sends 8 MiB and shuts down writing; the target sees EOF only through the
    forwarder's shutdown, then answers 3 MiB after it; every byte checked."""
    data = os.urandom(8 * MiB)
    reply = os.urandom(3 * MiB)
    seen: dict[str, object] = {}
    with socket.create_server((HOST, 0)) as ls:
        tport = ls.getsockname()[1]

        def target() -> None:
            c, _ = ls.accept()
            with c:
                seen["got"] = _read_all(c)  # returns at EOF: the half-close came through
                c.sendall(reply)

        tt = threading.Thread(target=target, daemon=True)
        tt.start()
        with inproc(tport, bulk_threads=2) as (fwd, port, log):
            with socket.create_connection((HOST, port)) as c:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
                assert _read_all(c) == (len(reply), hashlib.sha256(reply).hexdigest())
            tt.join(30)
            assert seen["got"] == (len(data), hashlib.sha256(data).hexdigest())
            w = fwd.workers[0]
            assert w.bulk_started == 1
            assert fwd.bulk_budget is not None and fwd.bulk_budget.peak == 2
        line = next(x for x in log if " B up, " in x)
        assert f"{len(data)} B up, {len(reply)} B down" in line and "(closed)" in line
        assert fwd.bulk_budget.in_use == 0
        assert fwd.workers[0].pool.in_use == 0  # both pipes went back


def test_thread_cap_is_respected_and_flows_beyond_it_stay_in_the_loop() -> None:
    """Cap 2 threads = one bulk flow: while it is open, five more flows are relayed by the loop."""
    payloads = [os.urandom(n) for n in (4 * MiB, 3 * MiB, 2 * MiB, MiB, 1)]
    with echo_target() as (tport, _), inproc(tport, bulk_threads=2) as (fwd, port, log):
        first = socket.create_connection((HOST, port))
        first.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += first.recv(16)
        assert fwd.workers[0].bulk_started == 1  # on threads, and it stays open
        results: dict[int, tuple[int, str]] = {}

        def run(i: int) -> None:
            with socket.create_connection((HOST, port)) as s:

                def send() -> None:
                    s.sendall(payloads[i])
                    s.shutdown(socket.SHUT_WR)

                st = threading.Thread(target=send, daemon=True)
                st.start()
                results[i] = _read_all(s)
                st.join()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == {i: (len(p), hashlib.sha256(p).hexdigest()) for i, p in enumerate(payloads)}
        budget = fwd.bulk_budget
        assert budget is not None and budget.limit == 2 and budget.peak == 2
        assert fwd.workers[0].bulk_started == 1  # the others were refused threads: loop only
        first.shutdown(socket.SHUT_WR)
        assert _read_all(first) == (0, hashlib.sha256(b"").hexdigest())
        first.close()
    assert sum(" B up, " in x and "(closed)" in x for x in log) == len(payloads) + 1


def test_drain_ends_a_bulk_flow_that_outlives_it() -> None:
    """An open, idle handed-off flow: the drain runs out, the threads are woken and joined."""
    with echo_target() as (tport, _), inproc(tport, bulk_threads=4, drain=0.3) as (fwd, port, log):
        c = socket.create_connection((HOST, port))
        c.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += c.recv(4096)
        assert fwd.stats_line().endswith("1 bulk flows on threads")
    # inproc() requested the stop and joined the forwarder's thread
    assert any("drain time over" in x for x in log)
    assert any("(stopped)" in x for x in log)
    assert fwd.bulk_budget is not None and fwd.bulk_budget.in_use == 0
    assert c.recv(10) == b""  # the client was closed (reset or EOF) rather than left hanging
    c.close()
