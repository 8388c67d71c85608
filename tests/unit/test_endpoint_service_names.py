"""Service names work wherever a port does (issue 13 item 17)."""

from __future__ import annotations

import pytest

from portkit.engine.endpoint import parse_endpoint, parse_ports, service_port
from portkit.errors import InputError
from portkit.model.probe import Endpoint


def test_endpoint_takes_a_service_name() -> None:
    assert parse_endpoint("host:ssh") == Endpoint("host", 22, "tcp")
    assert parse_endpoint("10.0.0.2:domain/udp") == Endpoint("10.0.0.2", 53, "udp")
    assert parse_endpoint("[fd00::2]:HTTP") == Endpoint("fd00::2", 80, "tcp")


def test_service_name_must_exist_for_the_protocol() -> None:
    assert service_port("ssh", "udp") is None
    with pytest.raises(InputError):
        parse_endpoint("host:ssh/udp")
    with pytest.raises(InputError):
        parse_endpoint("host:no-such-service")


def test_port_lists_mix_names_numbers_and_ranges() -> None:
    assert parse_ports("ssh,http,8000-8001,http-alt") == (22, 80, 8000, 8001, 8080)
    with pytest.raises(InputError):
        parse_ports("ssh,nosuch")
