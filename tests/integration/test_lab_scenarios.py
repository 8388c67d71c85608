"""Each shipped scenario does, across real namespaces, what its comments claim."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from portkit.lab.pytest_plugin import LabFactory, LabHandle
from tests.conftest import needs_tool

pytestmark = pytest.mark.root

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"


def test_inbound_rules(lab: LabFactory) -> None:
    h = lab(LABS / "inbound-rules.yaml")
    server = h.address("server")
    for client in ("client1", "client2"):
        http = h.probe(client, server, 80, send=b"GET / HTTP/1.0\r\n\r\n")
        assert http.state == "open" and http.data.startswith(b"HTTP/1.0 200 OK")
        # 22 listens (the server itself gets the banner) but the last rule refuses it.
        assert h.probe(client, server, 22).state == "unreachable"
    assert h.probe("server", "127.0.0.1", 22).data.startswith(b"SSH-2.0-")
    rules = h.run("server", ["nft", "list", "chain", "inet", "filter", "input"], check=True).stdout
    m = re.search(r"counter packets (\d+) bytes \d+ reject", rules)
    assert m and int(m.group(1)) >= 2, rules


def test_loopback_only(lab: LabFactory) -> None:
    h = lab(LABS / "loopback-only.yaml")
    inside = h.probe("server", "127.0.0.1", 3306)
    assert (inside.state, inside.data) == ("open", b"5.7.0-mysql\r\n")
    assert h.probe("client", h.address("server"), 3306).state == "refused"
    assert h.probe("client", "127.0.0.1", 3306).state == "refused"  # the client's own loopback
    assert h.probe("client", h.address("server"), 80).state == "open"


def _conntrack(h: LabHandle, host: str, *args: str) -> list[str]:
    r = h.run(host, ["conntrack", "-L", *args], check=True)
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def _tuples(line: str) -> list[dict[str, str]]:
    """The original and reply tuples of one ``conntrack -L`` line."""
    fields = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
    return [dict(fields[0:4]), dict(fields[4:8])]


@needs_tool("conntrack")
def test_port_forward(lab: LabFactory) -> None:
    h = lab(LABS / "port-forward.yaml")
    outside = h.address("router", link="wan")
    r = h.probe("client", outside, 8080, send=b"through the forward")
    assert (r.state, r.data) == ("open", b"through the forward")
    # The inside host is not reachable from outside except through the forward.
    assert h.probe("client", h.address("inside"), 2988).state == "unreachable"
    lines = _conntrack(h, "router", "-p", "tcp", "--orig-port-dst", "8080")
    assert lines, "no conntrack entry for the forward"
    orig, reply = _tuples(lines[0])
    assert (orig["src"], orig["dst"], orig["dport"]) == (h.address("client"), outside, "8080")
    assert (reply["src"], reply["sport"], reply["dst"]) == (h.address("inside"), "2988", h.address("client"))


@needs_tool("conntrack")
def test_nat_pat_translates_a_colliding_source_port(lab: LabFactory) -> None:
    h = lab(LABS / "nat-pat.yaml")
    server = h.address("server")
    wan = h.address("router", link="wan")

    def open_from_port_40000() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 40000))
        s.settimeout(5)
        s.connect((server, 7))
        s.sendall(b"hi")
        assert s.recv(16) == b"hi"
        return s

    socks = [h.call(c, open_from_port_40000) for c in ("client1", "client2")]
    try:
        lines = _conntrack(h, "router", "-p", "tcp", "--dport", "7")
        mapping = {}
        for line in lines:
            orig, reply = _tuples(line)
            assert orig["sport"] == "40000" and reply["dst"] == wan
            mapping[orig["src"]] = int(reply["dport"])
        assert set(mapping) == {h.address("client1"), h.address("client2")}, lines
        # One connection keeps 40000; the other had to be given another router port.
        assert sorted(p == 40000 for p in mapping.values()) == [False, True], mapping
        # The server sees both connections coming from the router's outside address.
        ss = h.run("server", ["ss", "-Htn", "state", "established", "sport", "= :7"], check=True).stdout
        peers = sorted(ln.split()[-1] for ln in ss.splitlines())
        assert peers == sorted(f"{wan}:{p}" for p in mapping.values())
    finally:
        for s in socks:
            s.close()


def test_dual_stack(lab: LabFactory) -> None:
    h = lab(LABS / "dual-stack.yaml")
    for family in (4, 6):
        addr = h.address("server", family)
        http = h.probe("client", addr, 80, send=b"GET / HTTP/1.0\r\n\r\n")
        assert http.state == "open" and http.data.startswith(b"HTTP/1.0 200"), (family, http)
        assert h.probe("client", addr, 22).data.startswith(b"SSH-2.0-")
        udp = h.probe("client", addr, 53, proto="udp", send=b"q")
        assert (udp.state, udp.data) == ("open", b"q")
    names = h.run("client", ["getent", "ahosts", "server"], check=True).stdout
    assert h.address("server", 4) in names and h.address("server", 6) in names
