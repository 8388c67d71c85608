"""QA of lab scenario validation: TCP services that the kernel would refuse to bind side by
side are a scenario error (file, line, exit 2), caught before anything is created."""

from __future__ import annotations

from typing import Any

import pytest

from portkit.errors import FileFormatError
from portkit.lab.scenario import load


def scenario(*services: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "qa",
        "hosts": {"a": {"services": list(services)}, "b": {}},
        "links": [{"name": "lan", "ends": {"a": ["10.0.97.1/24", "fd00:97::1/64"], "b": ["10.0.97.2/24"]}}],
    }


def tcp(listen: str, **kw: Any) -> dict[str, Any]:
    return {"proto": "tcp", "listen": listen, "kind": "echo", **kw}


@pytest.mark.parametrize(
    ("services", "words"),
    [
        (
            (tcp("0.0.0.0:80"), tcp("10.0.97.1:80")),
            "service tcp 10.0.97.1:80 overlaps services.0 (tcp 0.0.0.0:80)",
        ),
        (
            (tcp("127.0.0.1:80"), tcp("0.0.0.0:80")),
            "service tcp 0.0.0.0:80 overlaps services.0 (tcp 127.0.0.1:80)",
        ),
        ((tcp("[::]:80"), tcp("[::1]:80")), "service tcp [::1]:80 overlaps services.0 (tcp [::]:80)"),
        ((tcp("[::]:80", v6only=False), tcp("0.0.0.0:80")), "overlaps services.0 (tcp [::]:80)"),
        ((tcp("[::]:80", v6only=True), tcp("[fd00:97::1]:80")), "overlaps services.0"),
    ],
)
def test_overlapping_tcp_binds_are_refused(services: tuple[dict[str, Any], ...], words: str) -> None:
    with pytest.raises(FileFormatError, match="overlaps") as info:
        load(scenario(*services))
    assert words in str(info.value) and "hosts.a.services.1.listen" in str(info.value)


@pytest.mark.parametrize(
    "services",
    [
        (tcp("0.0.0.0:80"), tcp("[::]:80")),  # [::] becomes v6-only next to an IPv4 twin
        (tcp("127.0.0.1:80"), tcp("[::]:80")),
        (tcp("10.0.97.1:80"), tcp("127.0.0.1:80")),  # two specific addresses
        (tcp("0.0.0.0:80"), tcp("0.0.0.0:81")),
        (
            {"proto": "udp", "listen": "0.0.0.0:53"},
            {"proto": "udp", "listen": "10.0.97.1:53"},
        ),  # SO_REUSEADDR
        (tcp("0.0.0.0:7"), {"proto": "udp", "listen": "0.0.0.0:7"}),
    ],
)
def test_binds_the_kernel_allows_pass(services: tuple[dict[str, Any], ...]) -> None:
    assert len(load(scenario(*services)).hosts[0].services) == 2


def test_a_binary_file_is_bad_input_not_an_internal_error(tmp_path: Any) -> None:
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"name: x\n\xd0\xff\xfe binary")
    with pytest.raises(FileFormatError, match="not UTF-8 text"):
        load(blob)
