"""The foundation: errors map to exit codes, JSON documents carry the schema.

The layering (the import graph) is held by tests/unit/test_import_graph.py.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress

import pytest

from portkit.cli.main import main
from portkit.errors import ExitCode, FileFormatError, InputError, PortkitError, PrivilegeError
from portkit.model.fields import internal
from portkit.render.jsonout import document, to_jsonable
from portkit.render.table import Cell, render_table


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Inner:
    addr: ipaddress.IPv4Address
    c: Color


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    items: tuple[Inner, ...]
    private: int = internal(default=0)  # not in JSON


def test_document_has_schema_and_converts_dataclasses() -> None:
    doc = document(thing=Outer("x", (Inner(ipaddress.IPv4Address("10.0.0.1"), Color.RED),)))
    assert doc == {"schema": 1, "thing": {"name": "x", "items": [{"addr": "10.0.0.1", "c": "red"}]}}


def test_to_jsonable_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        to_jsonable(object())


def test_error_exit_codes() -> None:
    assert InputError("x").exit_code == ExitCode.BAD_INPUT
    assert int(ExitCode.BAD_INPUT) == 2
    assert PrivilegeError("x").exit_code == 3
    err = FileFormatError("p.yaml", "unknown key 'prot'", line=4)
    assert str(err) == "p.yaml:4: unknown key 'prot'"
    assert isinstance(err, PortkitError)


def test_table_alignment_and_no_color_when_plain() -> None:
    out = render_table(["A", "BB"], [["1", Cell("22", "red")], ["333", "4"]], right=(0,))
    assert out.splitlines() == ["  A  BB", "  1  22", "333  4"]
    assert "\x1b" not in out


def test_version_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


def test_lazy_api_reexport() -> None:
    import portkit
    from portkit import api

    assert portkit.list_sockets is api.list_sockets
    with pytest.raises(AttributeError):
        portkit.no_such_function  # noqa: B018
