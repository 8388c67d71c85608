"""Helpers shared by the command modules: common options and argparse behaviour."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from portkit.errors import ExitCode


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(ExitCode.BAD_INPUT)


def port_arg(text: str) -> int:
    """argparse ``type=`` for one port number 1-65535 (``--port N``)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}; valid ports are 1-65535")
    return int(text)


def add_output_options(p: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    """--json and --color, the same on every command."""
    p.add_argument(
        "--json",
        action="store_true",
        help=json_help or "print one JSON document (with \"schema\": 1) instead of a table",
    )
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the table: auto (on a TTY only, default), always or never",
    )


def add_netns_options(p: argparse.ArgumentParser) -> None:
    """--netns NAME / --netns-pid PID: look inside another network namespace."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--netns", metavar="NAME", help="look inside the named network namespace (as 'ip netns' names it)")
    g.add_argument(
        "--netns-pid",
        metavar="PID",
        type=int,
        help="look inside the network namespace of process PID (e.g. a container)",
    )


def subparser(sub: Any, name: str, *, help: str, description: str, epilog: str | None = None) -> Parser:
    """Add a subcommand parser with portkit's error behaviour and raw text help."""
    p: Parser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p
