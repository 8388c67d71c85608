"""The command line names one command: only the module that owns it is imported."""

from __future__ import annotations

import argparse
import subprocess
import sys

from portkit.cli.main import COMMAND_OWNERS, build_parser
from tests.conftest import run_cli


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_command_has_its_owner() -> None:
    assert _commands(build_parser()) == set(COMMAND_OWNERS)
    for command in COMMAND_OWNERS:
        assert command in _commands(build_parser(command)), command


def test_a_named_command_imports_only_its_module() -> None:
    code = (
        "import sys; from portkit.cli.main import build_parser; build_parser('fw'); "
        "print(sorted(m for m in sys.modules if m.startswith('portkit.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "portkit.cli.fw" in out and "portkit.cli.scan" not in out and "portkit.cli.lab" not in out


def test_unknown_command_still_lists_them_all() -> None:
    proc = run_cli("nosuch")
    assert proc.code == 2
    assert "lab" in proc.stderr and "scan" in proc.stderr
