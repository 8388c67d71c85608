"""QA of ``portkit who`` input: a port with a slash but no protocol is bad input, not port 80."""

from __future__ import annotations

import subprocess
import sys

import pytest

from portkit.errors import PortSpecError
from portkit.ops.inspect import parse_port_proto


@pytest.mark.parametrize(
    ("text", "want"),
    [("80", (80, None)), ("53/udp", (53, "udp")), ("8080/TCP", (8080, "tcp")), (" 22 ", (22, None))],
)
def test_port_proto_accepts(text: str, want: tuple[int, str | None]) -> None:
    assert parse_port_proto(text) == want


@pytest.mark.parametrize("text", ["80/", "/tcp", "80/sctp", "80//tcp", "abc", "0", "65536", ""])
def test_port_proto_refuses(text: str) -> None:
    with pytest.raises(PortSpecError):
        parse_port_proto(text)


def test_who_trailing_slash_is_one_line_exit_2() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "portkit", "who", "80/"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "portkit: invalid protocol '' in '80/'; valid protocols are: tcp, udp\n"
