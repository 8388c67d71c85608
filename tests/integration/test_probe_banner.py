"""--banner against real servers on loopback: a talker, a TLS server, a silent one, HTTP."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portkit.drivers.prober import grab_banner
from portkit.parse.banner import ECHO

Handler = Callable[[socket.socket], None]


@pytest.fixture
def server() -> Iterator[Callable[[Handler], int]]:
    socks: list[socket.socket] = []

    def start(handle: Handler) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        socks.append(s)

        def loop() -> None:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with conn:
                try:
                    handle(conn)
                except (OSError, ssl.SSLError):
                    pass

        threading.Thread(target=loop, daemon=True).start()
        return int(s.getsockname()[1])

    yield start
    for s in socks:
        s.close()


def test_banner_of_a_talking_service(server: Callable[[Handler], int]) -> None:
    port = server(lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
    assert grab_banner("127.0.0.1", port, timeout=2) == "SSH-2.0-OpenSSH_9.2p1 Debian-2"


def test_silent_service_has_no_banner(server: Callable[[Handler], int]) -> None:
    def silent(c: socket.socket) -> None:
        c.settimeout(3)
        c.recv(4096)  # swallow the ClientHello, say nothing

    port = server(silent)
    assert grab_banner("127.0.0.1", port, timeout=0.3) is None


def test_http_answers_the_hello_with_an_error_line(server: Callable[[Handler], int]) -> None:
    def http(c: socket.socket) -> None:
        c.settimeout(3)
        c.recv(4096)
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    port = server(http)
    assert grab_banner("127.0.0.1", port, timeout=0.3) == "HTTP/1.1 400 Bad Request"


def test_http_server_that_waits_for_a_request() -> None:
    # like the lab's http kind or python's http.server: silent until a whole request came,
    # so the ClientHello alone drew nothing and --banner showed no banner on HTTP ports
    def http(c: socket.socket) -> None:
        with c:
            c.settimeout(3)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
            c.sendall(b"HTTP/1.0 200 OK\r\nServer: waiter\r\n\r\nhi")

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=http, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert grab_banner("127.0.0.1", int(s.getsockname()[1]), timeout=0.5) == "HTTP/1.0 200 OK"
    finally:
        s.close()


def test_echo_service_is_not_called_tls(server: Callable[[Handler], int]) -> None:
    # found in the lab: an echo service returned our ClientHello and was reported "TLS 1.0"
    def echo(c: socket.socket) -> None:
        c.settimeout(3)
        c.sendall(c.recv(4096))

    port = server(echo)
    assert grab_banner("127.0.0.1", port, timeout=0.3) == ECHO


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_tls_server_is_recognised_by_client_hello(server: Callable[[Handler], int], tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=portkit.test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    def tls(c: socket.socket) -> None:
        with ctx.wrap_socket(c, server_side=True) as t:
            t.settimeout(3)
            t.recv(1)

    port = server(tls)
    assert grab_banner("127.0.0.1", port, timeout=0.5, server_name="portkit.test") == "TLS 1.3"
