"""The lab fixture against the real kernel: hosts, links, services, firewall, teardown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from portkit.errors import FileFormatError, SystemRefused
from portkit.lab import plan, state
from portkit.lab.pytest_plugin import LabFactory, LabHandle
from portkit.lab.system import is_runner

pytestmark = pytest.mark.root

TWO_HOSTS: dict[str, Any] = {
    "name": "fixture",
    "hosts": {
        "a": {},
        "b": {
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:80", "kind": "http"},
                {"proto": "tcp", "listen": "[::]:7", "kind": "echo"},
                {"proto": "tcp", "listen": "10.0.60.3:22", "kind": "banner", "banner": "SSH-2.0-test"},
                {"proto": "tcp", "listen": "0.0.0.0:9", "kind": "silent"},
                {"proto": "tcp", "listen": "127.0.0.1:3306", "kind": "banner", "banner": "5.7.0-mysql"},
                {"proto": "udp", "listen": "0.0.0.0:7", "kind": "echo"},
                {"proto": "udp", "listen": "[fd00:60::3]:5353", "kind": "banner", "banner": "hi"},
                {"proto": "udp", "listen": "0.0.0.0:9", "kind": "silent"},
            ]
        },
    },
    "links": [
        {"name": "lan", "ends": {"a": ["10.0.60.2/24", "fd00:60::2/64"], "b": ["10.0.60.3/24", "10.0.60.4/24", "fd00:60::3/64"]}},
    ],
}


@pytest.fixture(scope="module")
def two(lab_module: LabFactory) -> LabHandle:
    return lab_module(TWO_HOSTS)


def test_names_are_unique_and_follow_the_scheme(two: LabHandle, lab: LabFactory) -> None:
    other = lab(TWO_HOSTS)  # the same scenario twice at once: no collision
    assert other.name != two.name
    assert two.name.startswith("fixture-")
    assert two.netns("a") == f"pk-{two.name}-a"
    assert os.path.exists(f"/run/netns/{two.netns('a')}")
    out = two.run("a", ["ip", "-o", "link", "show", "lan"], check=True).stdout
    assert ": lan@" in out
    assert two.address("b") == "10.0.60.3"
    assert two.address("b", family=6) == "fd00:60::3"
    with pytest.raises(KeyError):
        two.address("a", link="wan")


def test_tcp_service_kinds(two: LabHandle) -> None:
    b4 = two.address("b")
    http = two.probe("a", b4, 80, send=b"GET / HTTP/1.0\r\n\r\n")
    assert http.state == "open" and http.data.startswith(b"HTTP/1.0 200 OK")
    assert two.probe("a", b4, 22).data == b"SSH-2.0-test\r\n"
    assert two.probe("a", b4, 9).state == "open" and two.probe("a", b4, 9).data == b""
    # A bind to one address: the host's other address refuses.
    assert two.probe("a", "10.0.60.4", 22).state == "refused"
    assert two.probe("a", b4, 81).state == "refused"


def test_dual_stack_bind_on_any6(two: LabHandle) -> None:
    for addr in (two.address("b"), two.address("b", 6)):
        r = two.probe("a", addr, 7, send=b"hello")
        assert (r.state, r.data) == ("open", b"hello")


def test_loopback_bind(two: LabHandle) -> None:
    inside = two.probe("b", "127.0.0.1", 3306)
    assert (inside.state, inside.data) == ("open", b"5.7.0-mysql\r\n")
    assert two.probe("a", two.address("b"), 3306).state == "refused"
    assert two.probe("a", "127.0.0.1", 3306).state == "refused"


def test_udp_kinds(two: LabHandle) -> None:
    b4 = two.address("b")
    echo = two.probe("a", b4, 7, proto="udp", send=b"x1")
    assert (echo.state, echo.data) == ("open", b"x1")
    banner = two.probe("a", two.address("b", 6), 5353, proto="udp")
    assert (banner.state, banner.data) == ("open", b"hi\r\n")
    assert two.probe("a", b4, 9, proto="udp", timeout=0.3).state == "timeout"
    # Closed UDP ports: ICMP port unreachable every time, also in a fast burst (rate limits off).

    def burst() -> int:
        """400 datagrams to 400 closed ports within a few ms; count the port-unreachables."""
        import socket
        import time

        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(400)]
        try:
            for port, s in enumerate(socks, start=10000):
                s.connect((b4, port))
            for s in socks:
                s.send(b"x")
                s.setblocking(False)
            pending, refused = set(socks), 0
            deadline = time.monotonic() + 10  # poll until every error is in, or give up
            while pending and time.monotonic() < deadline:
                for s in list(pending):
                    try:
                        s.recv(16)
                    except ConnectionRefusedError:
                        refused += 1
                        pending.discard(s)
                    except BlockingIOError:
                        pass
                if pending:
                    time.sleep(0.02)
            return refused
        finally:
            for s in socks:
                s.close()

    assert two.call("a", burst) == 400  # with the default per-destination limit: about 6


def test_namespace_settings(two: LabHandle) -> None:
    cat = two.run("a", ["cat", "/proc/sys/net/ipv4/icmp_ratelimit", "/proc/sys/net/ipv6/icmp/ratelimit"], check=True)
    assert cat.stdout.split() == ["0", "0"]
    addrs = two.run("a", ["ip", "-6", "-o", "addr", "show", "dev", "lan"], check=True).stdout
    assert "fd00:60::2/64" in addrs and "tentative" not in addrs
    assert ",UP," in two.run("a", ["ip", "-o", "link", "show", "lo"], check=True).stdout
    assert two.run("a", ["getent", "ahostsv4", "b"], check=True).stdout.split()[0] == "10.0.60.3"
    assert two.run("a", ["getent", "ahostsv6", "b"], check=True).stdout.split()[0] == "fd00:60::3"
    assert two.run("a", ["getent", "hosts", "b.lan"]).returncode == 0
    resolv = two.run("a", ["cat", "/etc/resolv.conf"], check=True).stdout
    assert "nameserver 127.0.0.1" in resolv
    # Nothing outside the lab is known: a name not in the lab's hosts file fails fast.
    assert two.run("a", ["getent", "hosts", "debian.org"], timeout=10).returncode != 0


def test_nft_and_portkit_and_call(lab: LabFactory) -> None:
    h = lab(TWO_HOSTS)
    assert h.probe("a", h.address("b"), 80).state == "open"
    h.nft("b", "table inet t { chain input { type filter hook input priority 0; tcp dport 80 reject with tcp reset; }\n}\n")
    assert h.probe("a", h.address("b"), 80).state == "refused"
    with pytest.raises(SystemRefused):
        h.nft("b", "table inet t { this is not nft }")
    r = h.portkit("a", "--version")
    assert r.returncode == 0 and "portkit" in r.stdout
    ino_a = h.call("a", lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert ino_a == os.stat(f"/run/netns/{h.netns('a')}").st_ino


def test_bridge_routes_and_forwarding(lab: LabFactory) -> None:
    h = lab(
        {
            "name": "routed",
            "hosts": {
                "c1": {"routes": [{"to": "10.0.62.0/24", "via": "10.0.61.1"}, {"to": "default", "via": "fd00:61::1"}]},
                "c2": {"routes": [{"to": "default", "via": "10.0.61.1"}]},
                "r": {"forward": True},
                "s": {
                    "routes": [{"to": "default", "via": "10.0.62.1"}, {"to": "default", "via": "fd00:62::1"}],
                    "services": [{"proto": "tcp", "listen": "[::]:80", "kind": "http"}],
                },
            },
            "links": [
                {
                    "name": "lan",
                    "bridge": True,
                    "ends": {"c1": ["10.0.61.11/24", "fd00:61::11/64"], "c2": ["10.0.61.12/24"], "r": ["10.0.61.1/24", "fd00:61::1/64"]},
                },
                {"name": "wan", "ends": {"r": ["10.0.62.1/24", "fd00:62::1/64"], "s": ["10.0.62.2/24", "fd00:62::2/64"]}},
            ],
        }
    )
    for client in ("c1", "c2"):
        assert h.probe(client, "10.0.62.2", 80).state == "open"
    assert h.probe("c1", "fd00:62::2", 80).state == "open"
    assert h.probe("c1", "10.0.61.12", 1).state == "refused"  # the bridge joins the clients too
    bridge_ports = subprocess.run(
        ["ip", "-n", f"pk-{h.name}.lan", "-o", "link", "show", "master", "lan"], capture_output=True, text=True, check=True
    ).stdout
    names = [line.split(": ")[1].split("@")[0] for line in bridge_ports.splitlines()]
    assert len(names) == 3 and all(n.startswith("pk") and len(n) <= 15 for n in names)


def _leftovers(name: str) -> list[str]:
    found = [ns for ns in os.listdir("/run/netns") if ns.startswith(f"pk-{name}-") or ns.startswith(f"pk-{name}.")]
    found += [d for d in os.listdir("/etc/netns") if d.startswith(f"pk-{name}-")] if os.path.isdir("/etc/netns") else []
    if state.read(name) is not None:
        found.append(state.state_path(name))
    return found


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def test_teardown_removes_everything() -> None:
    bridged = {**TWO_HOSTS, "links": [{**TWO_HOSTS["links"][0], "bridge": True}]}
    factory = LabFactory()
    try:
        h = factory(bridged)
        ports = {plan.port_name(h.name, "lan", host) for host in ("a", "b")}
        assert not ports & _root_links()  # lab interfaces never appear among the host's own
        assert subprocess.run(["ip", "-n", f"pk-{h.name}.lan", "link", "show", next(iter(ports))]).returncode == 0
        runner = state.read(h.name)
        assert runner is not None
        pid = runner["runners"]["b"]["pid"]
        assert is_runner(pid, h.name, "b")
        sleeper = h.popen("a", ["sleep", "300"])
    finally:
        factory.teardown()
    assert _leftovers(h.name) == []
    assert not is_runner(pid, h.name)
    assert sleeper.poll() is not None
    assert not ports & _root_links()


def test_failed_up_leaves_nothing() -> None:
    bad = {**TWO_HOSTS, "hosts": {**TWO_HOSTS["hosts"], "a": {"firewall": "table inet t { nonsense }"}}}
    factory = LabFactory()
    try:
        with pytest.raises(FileFormatError, match=r"hosts\.a\.firewall: nft rejects line 1"):
            factory(bad)
        name = factory.handles[-1].name
    finally:
        factory.teardown()
    assert _leftovers(name) == []


def test_teardown_when_the_test_fails(tmp_path: Path) -> None:
    """A failing test that uses the fixture still leaves no namespace, file or process."""
    marker = tmp_path / "name"
    test = tmp_path / "test_inner.py"
    test.write_text(
        textwrap.dedent(
            f"""
            def test_fails(lab):
                h = lab({TWO_HOSTS!r})
                open({str(marker)!r}, "w").write(h.name)
                assert h.probe("a", "10.0.60.3", 80).state == "open"
                raise AssertionError("deliberate")
            """
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "portkit.lab.pytest_plugin", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "deliberate" in r.stdout
    name = marker.read_text()
    assert _leftovers(name) == []
    assert not any(is_runner(int(p), name) for p in os.listdir("/proc") if p.isdigit())


def test_echo_under_load(two: LabHandle) -> None:
    """Megabytes through one echo connection and 800 connections at once."""
    import socket

    server = two.address("b")

    def bulk() -> int:
        payload = bytes(range(256)) * 16384  # 4 MiB
        with socket.create_connection((server, 7), timeout=10) as s:
            got = bytearray()
            sent = 0
            s.setblocking(True)
            while sent < len(payload) or len(got) < len(payload):
                if sent < len(payload):
                    sent += s.send(payload[sent : sent + 262144])
                s.settimeout(0.001 if sent < len(payload) else 10)
                try:
                    chunk = s.recv(1 << 20)
                    got += chunk
                except TimeoutError:
                    pass
                s.settimeout(10)
            assert bytes(got) == payload
            return len(got)

    def many() -> int:
        conns = [socket.create_connection((server, 7), timeout=10) for _ in range(800)]
        try:
            for i, c in enumerate(conns):
                c.sendall(b"%d" % i)
            return sum(c.recv(16) == b"%d" % i for i, c in enumerate(conns))
        finally:
            for c in conns:
                c.close()

    assert two.call("a", bulk) == 4 * 1024 * 1024
    assert two.call("a", many) == 800


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody")
def test_fixture_skips_with_a_reason_without_root() -> None:
    import tempfile

    d = tempfile.mkdtemp(prefix="pk-labskip-")
    try:
        os.chmod(d, 0o755)
        test = Path(d) / "test_inner.py"
        test.write_text("def test_needs_a_lab(lab):\n    lab({'hosts': {'a': {}}, 'links': []})\n")
        os.chmod(test, 0o644)
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "pytest", "-rs", "-q",
             "-p", "portkit.lab.pytest_plugin", "-p", "no:cacheprovider", str(test)],
            capture_output=True, text=True, cwd=d, timeout=120,
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert "1 skipped" in r.stdout, r.stdout + r.stderr
    assert "lab needs root" in r.stdout
