"""QA of the forward config parser: an error in an entry names the file line of that entry."""

from __future__ import annotations

import pytest

from portkit.engine.forwardspec import parse_config
from portkit.errors import FileFormatError


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "allow: [127.0.0.0/8]\nforwards:\n  - '1:2'\n  - {listen: 1, to: x}\n",
            4,
            "forwards[2]: unknown key 'listen'",
        ),
        ("forwards:\n  - '1:2'\n\n  - spec: '70000:1'\n", 4, "forwards[2]: listen port 70000"),
        ("- '1:2'\n- '1:3'\n", 2, "forwards[2]: 127.0.0.1:1/tcp is already used by forwards[1]"),
        ("forwards:\n  - spec: '1:2'\n    allow: [nonsense]\n", 2, "invalid CIDR block 'nonsense'"),
    ],
)
def test_entry_errors_carry_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(FileFormatError) as info:
        parse_config(text, "fwd.yaml")
    assert info.value.line == line and words in str(info.value)
    assert str(info.value).startswith(f"fwd.yaml:{line}: ")


def test_top_level_errors_keep_working() -> None:
    with pytest.raises(FileFormatError, match="unknown key 'forward'"):
        parse_config("forward: ['1:2']\n", "fwd.yaml")
    with pytest.raises(FileFormatError, match=r"fwd.yaml:3: not valid YAML"):
        parse_config("forwards:\n  - [\n", "fwd.yaml")


def test_bind_lport_tport_gets_a_hint_with_the_four_field_form() -> None:
    from portkit.engine.forwardspec import parse_spec
    from portkit.errors import PortSpecError

    with pytest.raises(PortSpecError) as info:
        parse_spec("0.0.0.0:8080:2988")
    assert "e.g. 0.0.0.0:8080:127.0.0.1:2988" in str(info.value)
    # LPORT:THOST:TPORT (as ssh -L) still reads as such
    spec = parse_spec("8080:10.0.0.2:80")
    assert (spec.bind, spec.listen_port, spec.target_host, spec.target_port) == ("127.0.0.1", 8080, "10.0.0.2", 80)
