"""Helpers for the forward/nat integration tests: an echo target and a forwarder, each in its
own process (a 1,000-connection test keeps every process far from the 20,000-file limit)."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

PY = sys.executable
HOST = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def echo_target(tcp: int | None = 0, udp: int | None = None) -> Iterator[tuple[int, int]]:
    argv = [PY, "-m", "portkit.drivers.forwarder_echo"]
    if tcp is not None:
        argv += ["--tcp", str(tcp)]
    if udp is not None:
        argv += ["--udp", str(udp)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        _ready, t, u = p.stdout.readline().split()
        yield int(t), int(u)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


class Forwarder:
    """``python -m portkit forward ARGS`` in a child process; stderr (the log) kept in a file."""

    def __init__(self, args: list[str], *, cwd: str | None = None) -> None:
        self._log = tempfile.NamedTemporaryFile("w+", prefix="pk-fwd-log-", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "portkit", "forward", *args],
            stderr=self._log,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )

    def wait_ready(self, n: int = 1, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.log().count(" forwarding ") >= n:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"forwarder exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"forwarder not ready: {self.log()}")

    def log(self) -> str:
        return pathlib.Path(self._log.name).read_text()

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            log = self.log()
            if log.count(text) >= count:
                return log
            time.sleep(0.02)
        raise AssertionError(f"{text!r} x{count} not in log: {self.log()[-3000:]}")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        os.unlink(self._log.name)
        return self.proc.returncode


@contextmanager
def forwarder(*args: str, ready: int = 1) -> Iterator[Forwarder]:
    f = Forwarder(list(args))
    try:
        f.wait_ready(ready)
        yield f
    finally:
        f.stop()
