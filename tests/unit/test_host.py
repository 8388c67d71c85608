"""backends/host.py: tool lookup, name resolution, the route parser and local addresses
(no network: the resolver is faked, routes are the parser's and loopback's)."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from portkit.backends import host
from portkit.errors import ResolveError, SystemRefused
from portkit.model.diagnosis import RouteFact


def test_find_tool_uses_path_then_the_sbin_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "pk-fake-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert host.find_tool("pk-fake-tool") == str(tool)
    monkeypatch.setattr(host, "SBIN_DIRS", (str(tmp_path),))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert host.find_tool("pk-fake-tool") == str(tool)  # not on PATH, found in an sbin dir
    assert host.find_tool("pk-no-such-tool") is None
    with pytest.raises(SystemRefused, match=r"^the pk-no-such-tool command is not installed \(apt-get install pk-pkg\)$"):
        host.require_tool("pk-no-such-tool", package="pk-pkg")


def fake_getaddrinfo(table: dict[str, list[tuple[int, tuple[Any, ...]]]]) -> Any:
    def fake(name: str, port: object, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list[Any]:
        if flags & socket.AI_NUMERICHOST:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        p = port if isinstance(port, int) else 0
        return [(fam, type or socket.SOCK_STREAM, 6, "", (sa[0], p, *sa[2:])) for fam, sa in table[name]]

    return fake


def test_resolve_both_families_in_order_without_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[str, list[tuple[int, tuple[Any, ...]]]] = {
        "web.test": [(socket.AF_INET6, ("2001:db8::1", 0, 0, 0)), (socket.AF_INET, ("192.0.2.1", 0)), (socket.AF_INET, ("192.0.2.1", 0))],
        "192.0.2.9": [(socket.AF_INET, ("192.0.2.9", 0))],
    }
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    assert host.resolve("web.test", 80) == [(socket.AF_INET6, ("2001:db8::1", 80, 0, 0)), (socket.AF_INET, ("192.0.2.1", 80))]
    assert host.resolve("192.0.2.9", numeric=True) == [(socket.AF_INET, ("192.0.2.9", 0))]
    with pytest.raises(ResolveError, match=r"cannot resolve host name 'nope\.test': Name or service not known"):
        host.resolve("nope.test")
    with pytest.raises(ResolveError, match=r"'web\.test': not an IP address"):
        host.resolve("web.test", numeric=True)


def test_resolve_a_name_that_is_not_valid_idna_is_bad_input() -> None:
    with pytest.raises(ResolveError, match="not a valid host name"):
        host.resolve("a" * 64 + ".test")  # a label over 63 characters: UnicodeError from the idna codec


def test_the_callers_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from portkit.drivers.forwarder import default_resolver
    from portkit.drivers.prober import system_resolver
    from portkit.ops.why_gather import system_resolve

    table: dict[str, list[tuple[int, tuple[Any, ...]]]] = {"both.test": [(socket.AF_INET, ("192.0.2.1", 0)), (socket.AF_INET6, ("2001:db8::1", 0, 0, 0))]}
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    assert system_resolve("both.test") == (("192.0.2.1",), ("2001:db8::1",))
    assert system_resolver("both.test", None) == [(4, "192.0.2.1"), (6, "2001:db8::1")]
    assert default_resolver("both.test", 8080, socket.SOCK_DGRAM) == [(socket.AF_INET, ("192.0.2.1", 8080)), (socket.AF_INET6, ("2001:db8::1", 8080, 0, 0))]
    for call in (lambda: system_resolve("x.test"), lambda: system_resolver("x.test", None), lambda: default_resolver("x.test", 1, socket.SOCK_STREAM)):
        with pytest.raises(ResolveError):
            call()


def test_parse_route_get() -> None:
    text = '[{"dst":"10.71.3.2","gateway":"10.71.1.1","dev":"lan","prefsrc":"10.71.1.2","flags":[],"uid":0,"cache":[]}]'
    assert host.parse_route_get("10.71.3.2", text) == RouteFact("10.71.3.2", "unicast", dev="lan", source="10.71.1.2", gateway="10.71.1.1")
    assert host.parse_route_get("10.9.9.9", '[{"type":"blackhole","dst":"10.9.9.9","flags":[]}]') == RouteFact("10.9.9.9", "none", error="blackhole route")
    assert host.parse_route_get("10.9.9.9", "").kind == "none"


def test_loopback_routes_by_netlink_and_by_ip_agree() -> None:
    for dest in ("127.0.0.1", "127.3.4.5", "::1"):
        by_netlink = host.route_get(dest)
        assert by_netlink.kind == "local" and by_netlink.dev == "lo"
        if host.find_tool("ip"):
            assert host._fact(host._ip_route_get(dest, None, None, None, 5.0)) == by_netlink
            assert host._netlink_route(dest, None, None, 2.0) == host._ip_route_get(dest, None, None, None, 5.0)
        assert host.route_dev(dest) == "lo"


def test_an_unknown_input_interface_is_named() -> None:
    with pytest.raises(SystemRefused, match='Cannot find device "pk-nosuch0"'):
        host.route_get("127.0.0.1", source="127.0.0.1", iif="pk-nosuch0")


def test_local_addresses_hold_loopback_and_match_psutil() -> None:
    got = host.local_addresses()
    assert ipaddress.ip_address("127.0.0.1") in got
    if os.path.exists("/proc/net/if_inet6") and os.path.getsize("/proc/net/if_inet6"):
        assert ipaddress.ip_address("::1") in got
    by_psutil = set()
    for text in host._psutil_local_addresses():
        try:
            by_psutil.add(ipaddress.ip_address(text))
        except ValueError:
            continue  # a MAC address
    # the kernel's local routes are the addresses of interfaces that are up; IPv6 lists all
    assert {a for a in got if a.version == 4} <= by_psutil
    assert {a for a in got if a.version == 6} == {a for a in by_psutil if a.version == 6}


def test_local_addresses_fall_back_to_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_proc_local_addresses", lambda: None)
    monkeypatch.setattr(host, "_psutil_local_addresses", lambda: ["127.0.0.1", "00:11:22:33:44:55", "fe80::1"])
    assert host.local_addresses() == frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("fe80::1")})
