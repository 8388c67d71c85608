"""engine/endpoint: endpoints, port specs, targets and injected name resolution."""

from __future__ import annotations

from typing import Any

import pytest

from portkit.engine.endpoint import (
    MAX_CIDR_ADDRESSES,
    Endpoint,
    parse_endpoint,
    parse_port,
    parse_ports,
    parse_target,
    resolve_addresses,
)
from portkit.errors import ExitCode, PortSpecError, ResolveError, TargetError

HOSTS = {"web.lab": [(4, "10.0.0.2"), (6, "fd00::2")], "v6only.lab": [(6, "fd00::3")]}


def fake_resolver(name: str, family: int | None) -> list[tuple[int, str]]:
    if name not in HOSTS:
        raise ResolveError(name, "Name or service not known")
    return [p for p in HOSTS[name] if family is None or p[0] == family]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.2:22", Endpoint("10.0.0.2", 22, "tcp")),
        ("10.0.0.2:53/udp", Endpoint("10.0.0.2", 53, "udp")),
        ("web.lab:443/TCP", Endpoint("web.lab", 443, "tcp")),
        ("[fd00::2]:80", Endpoint("fd00::2", 80, "tcp")),
        ("[FD00:0::2]:53/udp", Endpoint("fd00::2", 53, "udp")),
        (" localhost:65535 ", Endpoint("localhost", 65535, "tcp")),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


def test_parse_endpoint_default_proto() -> None:
    assert parse_endpoint("h:1", default_proto="udp").proto == "udp"
    assert str(Endpoint("fd00::2", 80, "tcp")) == "[fd00::2]:80/tcp"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10.0.0.2", "missing :PORT"),
        ("10.0.0.2:0", "ports are 1-65535"),
        ("10.0.0.2:70000", "ports are 1-65535"),
        ("10.0.0.2:no-such-service", "a port is a number"),
        ("10.0.0.2:22/sctp", "valid ones are tcp, udp"),
        ("fd00::2:80", "brackets"),
        ("[fd00::2:80", "[fd00::2]:80"),
        ("[nothex]:80", "invalid IPv6 address"),
        (":80", "host is missing"),
        ("bad_host!:80", "invalid host"),
    ],
)
def test_parse_endpoint_errors(text: str, fragment: str) -> None:
    with pytest.raises((TargetError, PortSpecError)) as exc:
        parse_endpoint(text)
    assert fragment in str(exc.value)
    assert exc.value.exit_code == ExitCode.BAD_INPUT


def test_parse_ports() -> None:
    assert parse_ports("22") == (22,)
    assert parse_ports("80,22, 8000-8002,22") == (22, 80, 8000, 8001, 8002)
    assert parse_ports("-") == tuple(range(1, 65536))
    assert parse_ports("1-65535") == tuple(range(1, 65536))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("0-70000", "ports are 1-65535"),
        ("5-", "a range needs both ends"),
        ("-5", "a range needs both ends"),
        ("10-5", "10 is above 5"),
        ("22,,80", "empty item"),
        ("", "empty port specification"),
        ("no-such-service", "a port is a number"),
        ("0", "ports are 1-65535"),
    ],
)
def test_parse_ports_errors(spec: str, fragment: str) -> None:
    with pytest.raises(PortSpecError) as exc:
        parse_ports(spec)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_port_names_value() -> None:
    with pytest.raises(PortSpecError, match="70000"):
        parse_port("70000")


def test_parse_target_kinds() -> None:
    assert parse_target("10.0.0.2").kind == "address"
    assert parse_target("[fd00::2]").text == "fd00::2"
    assert parse_target("web.lab").kind == "name"
    net = parse_target("10.0.0.0/30")
    assert net.kind == "network"
    assert list(net.addresses()) == ["10.0.0.1", "10.0.0.2"]
    assert list(parse_target("10.0.0.7/32").addresses()) == ["10.0.0.7"]
    assert list(parse_target("fd00::/126").addresses()) == ["fd00::1", "fd00::2", "fd00::3"]
    assert next(iter(parse_target("10.0.0.5/24").addresses())) == "10.0.0.1"  # host bits ignored, like nmap


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10.0.0.0/33", "prefix length must be 0-32"),
        ("fd00::/129", "0-128"),
        ("10.0.0.0/x", "prefix length"),
        ("300.1.1.1/24", "not an IPv4 or IPv6 address"),
        ("10.0.0.0/8", f"at most {MAX_CIDR_ADDRESSES}"),
        ("bad name", "invalid target"),
        ("", "empty target"),
    ],
)
def test_parse_target_errors(text: str, fragment: str) -> None:
    with pytest.raises(TargetError) as exc:
        parse_target(text)
    assert fragment in str(exc.value)


def test_resolve_with_injected_resolver() -> None:
    assert resolve_addresses("web.lab", fake_resolver) == ["10.0.0.2", "fd00::2"]
    assert resolve_addresses("web.lab", fake_resolver, 6) == ["fd00::2"]
    assert resolve_addresses("10.0.0.9", fake_resolver) == ["10.0.0.9"]  # no lookup for addresses
    with pytest.raises(ResolveError, match="no IPv4 address"):
        resolve_addresses("v6only.lab", fake_resolver, 4)
    with pytest.raises(ResolveError, match=r"cannot resolve host name 'nope\.lab'") as exc:
        resolve_addresses("nope.lab", fake_resolver)
    assert exc.value.exit_code == 2
    with pytest.raises(TargetError, match="-4 asks for IPv4"):
        resolve_addresses("fd00::1", fake_resolver, 4)


def test_system_resolver_names_the_missing_family(monkeypatch: pytest.MonkeyPatch) -> None:
    # glibc answers a hosts-file name that has only IPv4 addresses, asked for AF_INET6, with
    # EAI_AGAIN: "-6 v4only" was reported as "Temporary failure in name resolution"
    import socket

    from portkit.drivers import prober

    def fake_getaddrinfo(name: str, port: object, family: int = 0, *rest: object) -> list[Any]:
        if family == socket.AF_INET6:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.3", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(ResolveError, match="no IPv6 address found"):
        resolve_addresses("v4only", prober.system_resolver, 6)
    assert resolve_addresses("v4only", prober.system_resolver, 4) == ["10.0.0.3"]
    with pytest.raises(ResolveError, match="not a valid IPv4 address"):
        prober.system_resolver("10.0.0.300", None)
    with pytest.raises(ResolveError, match="ranges are not supported"):
        prober.system_resolver("10.0.0.1-5", None)
