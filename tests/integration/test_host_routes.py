"""backends/host.py routes in a throwaway namespace: the netlink lookup gives what
``ip -j route get`` gives, for unicast via a gateway, local, blackhole, unreachable,
a source address and the forwarding question (``from SRC iif DEV``)."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from portkit.backends import host
from tests.conftest import needs_tool

pytestmark = [pytest.mark.root, needs_tool("ip")]


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"pk-host-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        ip(name, "link", "set", "lo", "up")
        ip(name, "link", "add", "pk0", "type", "veth", "peer", "name", "pk1")
        for dev, addr, addr6 in (("pk0", "10.99.0.1/24", "fd99::1/64"), ("pk1", "10.98.0.1/24", "fd98::1/64")):
            ip(name, "addr", "add", addr, "dev", dev)
            ip(name, "-6", "addr", "add", addr6, "dev", dev, "nodad")
            ip(name, "link", "set", dev, "up")
        ip(name, "route", "add", "default", "via", "10.99.0.254")
        ip(name, "-6", "route", "add", "default", "via", "fd99::fe")
        ip(name, "route", "add", "blackhole", "10.97.0.0/16")
        ip(name, "route", "add", "unreachable", "10.96.0.0/16")
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


CASES = [
    ("192.0.2.77", None, None),  # default route via the gateway
    ("10.99.0.9", None, None),  # on-link
    ("10.98.0.1", None, None),  # local
    ("10.97.1.1", None, None),  # blackhole
    ("10.96.1.1", None, None),  # unreachable: the kernel's words
    ("2001:db8::5", None, None),
    ("fd98::1", None, None),
    ("192.0.2.77", "10.98.0.1", None),  # from a local source
    ("192.0.2.77", "192.0.2.200", None),  # from a source that is not ours: Invalid argument
    ("10.99.0.9", "10.98.0.50", "pk1"),  # forwarded: came in on pk1
]


@pytest.mark.parametrize(("dest", "source", "iif"), CASES)
def test_netlink_and_ip_agree(ns: str, dest: str, source: str | None, iif: str | None) -> None:
    by_ip = host._ip_route_get(dest, source, iif, ns, 5.0)
    by_netlink = host._in_netns(ns, lambda: host._netlink_route(dest, source, iif, 2.0))
    assert by_netlink is not None  # netlink answered itself (no fallback to ip)
    assert by_netlink == by_ip
    assert host.route_get(dest, source=source, iif=iif, netns=ns) == host._fact(by_ip)


def test_the_answers(ns: str) -> None:
    r = host.route_get("192.0.2.77", netns=ns)
    assert (r.kind, r.dev, r.gateway, r.source) == ("unicast", "pk0", "10.99.0.254", "10.99.0.1")
    assert host.route_get("10.98.0.1", netns=ns).kind == "local"
    assert host.route_get("10.97.1.1", netns=ns).kind == "none"
    r = host.route_get("10.96.1.1", netns=ns)
    assert r.kind == "none" and r.error is not None
    assert host.route_dev("192.0.2.77", netns=ns) == "pk0"
    assert host.route_dev("10.98.0.1", netns=ns) == "lo"
    assert host.route_dev("10.97.1.1", netns=ns) is None
    assert host.default_route_dev(netns=ns) == "pk0"
    assert host.default_route_dev(family=6, netns=ns) == "pk0"
    assert set(host.interface_addresses(netns=ns)["pk1"]) >= {"10.98.0.1", "fd98::1"}
    local = host.local_addresses(netns=ns)
    assert {ipaddress.ip_address(a) for a in ("10.99.0.1", "10.98.0.1", "fd99::1", "fd98::1", "127.0.0.1")} <= local
    assert ipaddress.ip_address("10.99.0.254") not in local
