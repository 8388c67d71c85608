"""The userspace forwarder on loopback: integrity, failures, back-pressure, filters, signals."""

from __future__ import annotations

import hashlib
import random
import re
import resource
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.forward_helpers import HOST, echo_target, forwarder, free_port

MiB = 1 << 20


def _payloads(n: int, max_size: int, seed: int) -> list[memoryview]:
    rng = random.Random(seed)
    base = memoryview(rng.randbytes(max_size + 65536))
    sizes = [0, 1, max_size] + [rng.randint(0, max_size) for _ in range(n - 3)]
    return [base[(off := rng.randint(0, 65535)) : off + size] for size in sizes]


@dataclass
class _Conn:
    index: int
    data: memoryview
    sent: int = 0
    received: int = 0
    shut: bool = False
    hasher: Any = field(default_factory=hashlib.sha256)


def _echo_many(port: int, payloads: list[memoryview], timeout: float = 120.0) -> tuple[int, list[int]]:
    """Send every payload on its own connection, all at once; SHA-256 what comes back.

    Returns (mismatches, received sizes)."""
    sel = selectors.DefaultSelector()
    conns: dict[socket.socket, _Conn] = {}
    for i, data in enumerate(payloads):
        new = socket.socket()
        new.setblocking(False)
        new.connect_ex((HOST, port))
        conns[new] = _Conn(i, data)
        sel.register(new, selectors.EVENT_READ | selectors.EVENT_WRITE)
    got_hash: dict[int, str] = {}
    got_size: dict[int, int] = {}
    buf = bytearray(256 * 1024)
    deadline = time.monotonic() + timeout
    while conns and time.monotonic() < deadline:
        for key, ev in sel.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            s = sock
            c = conns[s]
            if ev & selectors.EVENT_WRITE and not c.shut:
                try:
                    c.sent += s.send(c.data[c.sent : c.sent + 256 * 1024])
                except BlockingIOError:
                    pass
                if c.sent >= len(c.data):
                    s.shutdown(socket.SHUT_WR)
                    c.shut = True
                    sel.modify(s, selectors.EVENT_READ)
            if ev & selectors.EVENT_READ:
                try:
                    n = s.recv_into(buf)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    n = 0
                if n:
                    c.hasher.update(memoryview(buf)[:n])
                    c.received += n
                else:
                    got_hash[c.index] = c.hasher.hexdigest()
                    got_size[c.index] = c.received
                    sel.unregister(s)
                    s.close()
                    del conns[s]
    for left in conns:
        left.close()
    mismatches = sum(1 for i, d in enumerate(payloads) if got_hash.get(i) != hashlib.sha256(d).hexdigest())
    return mismatches, [got_size.get(i, -1) for i in range(len(payloads))]


def _log_bytes(log: str) -> list[tuple[int, int]]:
    return sorted(
        (int(a), int(b)) for a, b in re.findall(r": (\d+) B up, (\d+) B down, [\d.]+ s \(closed\)", log)
    )


@pytest.mark.slow
def test_integrity_1000_concurrent_tcp_connections() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    payloads = _payloads(1000, 4 * MiB, seed=6)
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}", "--stats", "5") as fwd:
        mismatches, sizes = _echo_many(port, payloads)
        assert mismatches == 0
        assert sizes == [len(p) for p in payloads]
        # one log line per connection, with the bytes each way
        log = fwd.wait_log("(closed)", count=1000)
        assert _log_bytes(log) == sorted((len(p), len(p)) for p in payloads)
        assert fwd.proc.poll() is None


def test_integrity_copy_path_and_ipv6() -> None:
    """The plain copy loop (non-Linux path, or when the pipe budget is spent) and [::1]."""
    payloads = _payloads(60, 2 * MiB, seed=7)
    port = free_port()
    with echo_target() as (tport, _), forwarder("--no-splice", "--workers", "1", f"{port}:{tport}") as fwd:
        assert _echo_many(port, payloads) == (0, [len(p) for p in payloads])
        fwd.wait_log("(closed)", count=60)
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        p6 = probe.getsockname()[1]
    with echo_target() as (tport, _), forwarder(f"[::1]:{p6}:127.0.0.1:{tport}"):
        s = socket.create_connection(("::1", p6), timeout=5)
        s.sendall(b"over v6")
        assert s.recv(100) == b"over v6"
        s.close()


def test_udp_datagrams_counted_sizes_kept_sessions_capped_and_idle() -> None:
    port = free_port(socket.SOCK_DGRAM)
    with (
        echo_target(tcp=None, udp=0) as (_, uport),
        forwarder(f"{port}:{uport}/udp", "--udp-idle", "1", "--udp-max-sessions", "20") as fwd,
    ):
        rng = random.Random(8)
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
        sent = received = 0
        for c in clients:
            c.settimeout(5)
        for rnd in range(25):
            expect = {}
            for i, c in enumerate(clients):
                size = rng.choice([0, 1, 512, 1472, 9000, 65000, rng.randint(2, 60000)])
                data = (f"{i}:{rnd}:".encode() + rng.randbytes(size))[:size] if size else b""
                c.sendto(data, (HOST, port))
                expect[i] = data
                sent += 1
            for i, c in enumerate(clients):
                data, _ = c.recvfrom(65535)
                assert data == expect[i], f"client {i} round {rnd}: {len(data)} != {len(expect[i])} bytes"
                received += 1
        assert sent == received == 500
        # a 21st client finds the session table full: its datagrams are dropped and logged
        extra = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        extra.settimeout(0.5)
        extra.sendto(b"one too many", (HOST, port))
        with pytest.raises(TimeoutError):
            extra.recvfrom(100)
        fwd.wait_log("session table full (20)")
        # sessions end after 1 s idle, one log line each with bytes and datagrams
        log = fwd.wait_log("(idle)", count=20, timeout=5)
        assert re.search(
            r"udp 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+: \d+ B up \(25 datagrams\), \d+ B down \(25 datagrams\)",
            log,
        )
        # ...and freed slots accept new clients again
        extra.sendto(b"now", (HOST, port))
        assert extra.recvfrom(100)[0] == b"now"
        for c in [*clients, extra]:
            c.close()


def test_target_down_then_back() -> None:
    tport = free_port()
    port = free_port()
    with forwarder(f"{port}:{tport}", "--connect-timeout", "2") as fwd:
        for _ in range(3):
            c = socket.create_connection((HOST, port), timeout=5)
            t0 = time.monotonic()
            try:
                assert c.recv(10) == b""  # closed at once
            except ConnectionResetError:
                pass
            assert time.monotonic() - t0 < 1.0
            c.close()
        log = fwd.wait_log("target down (Connection refused), client closed", count=3)
        assert f"-> 127.0.0.1:{tport}" in log
        with echo_target(tcp=tport):
            c = socket.create_connection((HOST, port), timeout=5)
            c.sendall(b"back")
            assert c.recv(10) == b"back"
            c.close()
        assert fwd.proc.poll() is None


def test_slow_reader_keeps_forwarder_memory_bounded() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}") as fwd:
        before = fwd.rss_kib()
        c = socket.create_connection((HOST, port))
        c.setblocking(False)
        chunk = b"z" * (1 << 20)
        pushed = 0
        stalled_since = None
        while pushed < 2048 * MiB:
            try:
                pushed += c.send(chunk)
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
        # Nobody reads the echo: the pipes and socket buffers fill, then everything stops.
        assert pushed < 256 * MiB, f"{pushed} bytes went in although nobody reads"
        grew = fwd.rss_kib() - before
        assert grew < 16 * 1024, f"forwarder grew by {grew} KiB"
        c.close()


def test_half_close_is_propagated_and_reply_after_eof_arrives() -> None:
    srv = socket.create_server((HOST, 0))
    tport = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        total = 0
        while data := conn.recv(65536):
            total += len(data)
        conn.sendall(f"got {total} after your EOF".encode())  # the other direction still flows
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = free_port()
    with forwarder(f"{port}:{tport}") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        c.sendall(b"x" * 100000)
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while data := c.recv(100):
            reply += data
        assert reply == b"got 100000 after your EOF"
        c.close()
        fwd.wait_log("100000 B up, 25 B down")
    srv.close()


@pytest.mark.parametrize(
    ("opts", "admitted"),
    [
        (["--allow", "10.0.0.0/8"], False),
        (["--allow", "127.0.0.1"], True),
        (["--allow", "127.0.0.0/8", "--deny", "127.0.0.1/32"], False),
        (["--deny", "192.0.2.0/24"], True),
    ],
)
def test_allow_deny(opts: list[str], admitted: bool) -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(*opts, f"{port}:{tport}") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        try:
            c.sendall(b"hi")
            got = c.recv(10)
        except ConnectionResetError:
            got = b""
        c.close()
        assert (got == b"hi") is admitted
        if not admitted:
            fwd.wait_log("refused by --allow/--deny, closed")


def test_sigterm_stops_accepting_and_drains() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}", "--drain", "30") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        c.sendall(b"a")
        assert c.recv(1) == b"a"
        fwd.proc.send_signal(signal.SIGTERM)
        fwd.wait_log("draining 1 open connections")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=2)
        c.sendall(b"still relayed")  # the open connection keeps working while draining
        assert c.recv(100) == b"still relayed"
        assert fwd.proc.poll() is None
        c.close()
        assert fwd.proc.wait(10) == 0
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}", "--drain", "0.5") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        c.sendall(b"a")
        assert c.recv(1) == b"a"
        t0 = time.monotonic()
        fwd.proc.send_signal(signal.SIGTERM)
        assert fwd.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        assert "drain time over: closing 1 connections still open" in fwd.log()
        c.close()


def test_sighup_reloads_config(tmp_path: pytest.TempPathFactory) -> None:
    p1, p2 = free_port(), free_port()
    cfg = tmp_path / "fwd.yaml"  # type: ignore[operator]
    with echo_target() as (tport, _):
        cfg.write_text(f'forwards: ["{p1}:{tport}"]\n')
        with forwarder("--config", str(cfg)) as fwd:
            c = socket.create_connection((HOST, p1), timeout=5)
            cfg.write_text(f'forwards: ["{p2}:{tport}"]\n')
            fwd.proc.send_signal(signal.SIGHUP)
            fwd.wait_log("reloaded: 1 forwards")
            s = socket.create_connection((HOST, p2), timeout=5)
            s.sendall(b"new")
            assert s.recv(10) == b"new"
            s.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((HOST, p1), timeout=2)
            c.sendall(b"old")  # the connection accepted before the reload is untouched
            assert c.recv(10) == b"old"
            c.close()
            cfg.write_text("forwards: [oops:]\n")
            fwd.proc.send_signal(signal.SIGHUP)
            fwd.wait_log("reload failed, keeping the running configuration")
            s = socket.create_connection((HOST, p2), timeout=5)
            s.close()


def test_connect_timeout_when_the_target_never_answers() -> None:
    """A listener whose accept queue is full drops SYNs: the target 'never answers'."""
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(0)
    tport = silent.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue (nobody ever accepts)
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex((HOST, tport))
        fillers.append(f)
    time.sleep(0.2)
    port = free_port()
    with forwarder(f"{port}:{tport}", "--connect-timeout", "1", "--stats", "0.2") as fwd:
        c = socket.create_connection((HOST, port), timeout=10)
        t0 = time.monotonic()
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - t0
        assert 0.7 < waited < 5, waited
        fwd.wait_log("target down (no answer within 1 s), client closed")
        fwd.wait_log("stats: 0 open, 1 accepted, 1 failed")
        c.close()
    for f in fillers:
        f.close()
    silent.close()


def test_many_forwards_tcp_and_udp_in_one_process() -> None:
    p1, p2, p3 = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    with (
        echo_target(tcp=0, udp=0) as (tport, uport),
        forwarder(
            f"{p1}:{tport}", f"127.0.0.1:{p2}:127.0.0.1:{tport}/tcp", f"{p3}:{uport}/udp", ready=3
        ) as fwd,
    ):
        for p in (p1, p2):
            c = socket.create_connection((HOST, p), timeout=5)
            c.sendall(b"tcp")
            assert c.recv(10) == b"tcp"
            c.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.sendto(b"udp", (HOST, p3))
        assert u.recvfrom(10)[0] == b"udp"
        u.close()
        assert fwd.log().count(" forwarding ") == 3


def test_ctrl_c_exits_130_after_draining_and_sigterm_exits_0() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}") as fwd:
        fwd.proc.send_signal(signal.SIGINT)
        assert fwd.proc.wait(15) == 130
        log = fwd.wait_log("portkit: interrupted")
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
        assert log.strip().splitlines()[-1] == "portkit: interrupted: stopped forwarding"
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}") as fwd:
        fwd.proc.send_signal(signal.SIGTERM)
        assert fwd.proc.wait(15) == 0
        assert "interrupted" not in fwd.log()


def test_second_ctrl_c_closes_open_connections_without_waiting_for_the_drain() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}", "--drain", "600") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        try:
            c.sendall(b"a")
            assert c.recv(1) == b"a"
            fwd.proc.send_signal(signal.SIGINT)
            fwd.wait_log("draining 1 open connections")
            assert fwd.proc.poll() is None  # the first Ctrl-C drains
            fwd.proc.send_signal(signal.SIGINT)
            # Well inside the 600 s drain: only the second Ctrl-C can end it this soon.
            assert fwd.proc.wait(30) == 130
            log = fwd.log()
            assert "interrupted again: closing open connections now" in log
            assert "Traceback" not in log
        finally:
            c.close()


def _udp_sink() -> socket.socket:
    """A UDP target in this process: the test reads what the forwarder delivers to it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(10)
    return s


def _udp_client() -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((HOST, 0))
    c.settimeout(10)
    return c


def test_failed_reload_keeps_tcp_and_udp_running(tmp_path: pytest.TempPathFactory) -> None:
    """A reload that changes a UDP target and adds a port in use fails whole: UDP keeps flowing."""
    uport, tport_listen = free_port(socket.SOCK_DGRAM), free_port()
    old_sink, new_sink = _udp_sink(), _udp_sink()
    busy = socket.socket()  # the port the new configuration wants is held by someone else
    busy.bind((HOST, 0))
    busy.listen(1)
    cfg = tmp_path / "fwd.yaml"  # type: ignore[operator]
    with echo_target() as (tport, _):
        cfg.write_text(f'forwards: ["{uport}:{old_sink.getsockname()[1]}/udp", "{tport_listen}:{tport}"]\n')
        with forwarder("--config", str(cfg), ready=2) as fwd:
            live = _udp_client()
            live.sendto(b"before", (HOST, uport))
            assert old_sink.recvfrom(100)[0] == b"before"
            cfg.write_text(
                f'forwards: ["{uport}:{new_sink.getsockname()[1]}/udp", "{tport_listen}:{tport}",'
                f' "{busy.getsockname()[1]}:{tport}"]\n'
            )
            stop = threading.Event()
            sent = 0

            def keep_sending() -> None:  # live traffic while the reload is tried and refused
                nonlocal sent
                while not stop.is_set():
                    live.sendto(b"during", (HOST, uport))
                    sent += 1
                    stop.wait(0.01)

            sender = threading.Thread(target=keep_sending)
            sender.start()
            try:
                fwd.proc.send_signal(signal.SIGHUP)
                log = fwd.wait_log("reload failed, keeping the running configuration")
            finally:
                stop.set()
                sender.join()
            assert "address already in use" in log and "stopped forwarding" not in log
            live.sendto(b"after", (HOST, uport))
            got: list[bytes] = []
            while not got or got[-1] != b"after":
                got.append(old_sink.recvfrom(100)[0])
            assert set(got[:-1]) <= {b"during"} and len(got) - 1 >= sent // 2, (len(got), sent)
            fresh = _udp_client()  # a new session, too, still goes where the running config says
            fresh.sendto(b"fresh", (HOST, uport))
            assert old_sink.recvfrom(100)[0] == b"fresh"
            new_sink.settimeout(0)
            with pytest.raises(BlockingIOError):
                new_sink.recvfrom(100)
            with socket.create_connection((HOST, tport_listen), timeout=5) as t:
                t.sendall(b"tcp")
                assert t.recv(10) == b"tcp"
            live.close()
            fresh.close()
    for s in (old_sink, new_sink, busy):
        s.close()


def test_reload_moves_new_udp_sessions_but_not_live_ones(tmp_path: pytest.TempPathFactory) -> None:
    uport = free_port(socket.SOCK_DGRAM)
    old_sink, new_sink = _udp_sink(), _udp_sink()
    cfg = tmp_path / "fwd.yaml"  # type: ignore[operator]
    cfg.write_text(f'forwards: ["{uport}:{old_sink.getsockname()[1]}/udp"]\n')
    with forwarder("--config", str(cfg)) as fwd:
        live = _udp_client()
        live.sendto(b"one", (HOST, uport))
        data, upstream = old_sink.recvfrom(100)
        assert data == b"one"
        old_sink.sendto(b"reply", upstream)
        assert live.recvfrom(100)[0] == b"reply"
        cfg.write_text(f'forwards: ["{uport}:{new_sink.getsockname()[1]}/udp"]\n')
        fwd.proc.send_signal(signal.SIGHUP)
        fwd.wait_log("reloaded: 1 forwards")
        live.sendto(b"two", (HOST, uport))  # the live session keeps its target
        assert old_sink.recvfrom(100) == (b"two", upstream)
        old_sink.sendto(b"reply2", upstream)
        assert live.recvfrom(100)[0] == b"reply2"
        fresh = _udp_client()
        fresh.sendto(b"three", (HOST, uport))  # a new session goes to the new target
        assert new_sink.recvfrom(100)[0] == b"three"
        live.close()
        fresh.close()
    for s in (old_sink, new_sink):
        s.close()
