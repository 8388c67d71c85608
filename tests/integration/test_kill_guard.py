"""`who PORT --kill` never signals pid 1 of a PID namespace, portkit itself or its ancestors."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from portkit.backends.signals import ancestors, protected_reason
from tests.conftest import needs_tool

PORT = 7391

# pid 1 of the new PID namespace: listens, says so, then waits to be signalled.
LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    f"s.bind(('127.0.0.1', {PORT}))\n"
    "s.listen(4)\n"
    "import os\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(600)\n"
)


def _portkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"pk-kill-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _host_pid_of_ns_init(top: int) -> int:
    """The host pid of the descendant of ``top`` that ``unshare --fork`` made pid 1."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        todo = [top]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/status") as f:
                    nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo += [int(k) for k in f.read().split()]
            except (OSError, StopIteration):
                continue
            if pid != top and nspid[-1] == "1":
                return pid
        time.sleep(0.05)
    raise AssertionError("the PID namespace's init never appeared")


@pytest.mark.root
@needs_tool("ip")
@needs_tool("unshare")
def test_pid1_of_a_pid_namespace_is_not_signalled(netns: str) -> None:
    inner = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            LISTENER,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert inner.stdout is not None
        assert inner.stdout.readline().strip() == "1"  # it is pid 1 inside
        init = _host_pid_of_ns_init(inner.pid)
        assert protected_reason(init) == "it is pid 1 (init) of a PID namespace"
        who = _portkit("who", str(PORT), "--netns", netns, "--json")
        assert who.returncode == 0, who.stderr
        assert str(init) in who.stdout
        proc = _portkit("who", str(PORT), "--netns", netns, "--kill", "--yes", "--force", "--timeout", "0")
        assert proc.returncode == 4, (proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {init}" in lines[0] and "pid 1 (init)" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert inner.poll() is None and os.path.exists(f"/proc/{init}")
        with open(f"/proc/{init}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "R")  # not a zombie either
    finally:
        inner.kill()  # ours: `ip netns exec` execs unshare, and the ns dies with its init
        inner.wait(timeout=20)


def test_portkit_holding_the_port_itself_refuses() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portkit",
                "who",
                str(port),
                "--kill",
                "--yes",
                "--force",
                "--timeout",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(listener.fileno(),),
        )
        out, err = proc.communicate(timeout=60)
        # This test process (portkit's parent) and portkit both hold the port: whichever is
        # checked first is refused before any signal is sent, so both live on.
        assert proc.returncode == 4, (out, err)
        assert proc.returncode != -signal.SIGTERM and proc.returncode != -signal.SIGKILL
        lines = err.strip().splitlines()
        assert (
            len(lines) == 1 and "refusing to signal pid" in lines[0] and "nothing was signalled" in lines[0]
        ), err
        assert "portkit itself" in lines[0] or "ancestor" in lines[0], err
    finally:
        listener.close()


def test_protected_reason_for_self_ancestors_and_kernel_threads() -> None:
    me = os.getpid()
    assert protected_reason(me) == "it is portkit itself"
    assert os.getppid() in ancestors(me)
    assert protected_reason(os.getppid()) is not None
    assert protected_reason(1) == "it is pid 1 (init) of a PID namespace"
    assert protected_reason(0) is not None and protected_reason(-5) is not None
    with open("/proc/2/stat") as f:
        kthreadd = "kthreadd" in f.read()
    if kthreadd:
        assert protected_reason(2) == "it is a kernel thread"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert protected_reason(child.pid) is None  # a child of ours is fair game
    finally:
        child.kill()
        child.wait()
    assert protected_reason(child.pid) is None  # gone: nothing to protect


def test_protected_reason_reads_fixture_proc(tmp_path: os.PathLike[str]) -> None:
    root = str(tmp_path)

    def fake(pid: int, ppid: int, nspid: str, flags: int, comm: str = "x") -> None:
        os.makedirs(f"{root}/{pid}")
        with open(f"{root}/{pid}/status", "w") as f:
            f.write(f"Name:\t{comm}\nPPid:\t{ppid}\nNSpid:\t{nspid}\n")
        with open(f"{root}/{pid}/stat", "w") as f:
            f.write(f"{pid} ({comm}) S {ppid} 1 1 0 -1 {flags} 0 0 0\n")

    fake(10, 1, "10", 0x400000)
    fake(11, 10, "11 1", 0x400100)  # init of a nested PID namespace
    fake(12, 2, "12", 0x00208040, comm="kworker/0:1 (evil) x")
    fake(13, 10, "13", 0x400000, comm="a) S 2 1 1 0 -1 2129984")  # a name that mimics fields
    fake(14, 13, "14", 0x400000)
    assert protected_reason(10, proc=root, self_pid=99) is None
    assert protected_reason(11, proc=root, self_pid=99) == "it is pid 1 (init) of a PID namespace"
    assert protected_reason(12, proc=root, self_pid=99) == "it is a kernel thread"
    assert protected_reason(13, proc=root, self_pid=99) is None
    assert protected_reason(13, proc=root, self_pid=14).startswith("it is an ancestor")  # type: ignore[union-attr]
    assert protected_reason(14, proc=root, self_pid=14) == "it is portkit itself"
