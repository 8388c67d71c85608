"""Helpers shared by the command modules: common options and argparse behaviour.

Every option that takes a number, a port, an address, an interface or a protocol uses one
of the ``*_arg`` callables below as its argparse ``type=``; each delegates to the one pure
parser of that kind of value (:mod:`portkit.parse.scalars`, :mod:`portkit.engine.endpoint`), so ``--confirm nan``, ``--port ²``
and ``--iif 'eth0;drop'`` are refused by the parser with one line naming the value and what
would be valid (exit 2), before any command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from portkit.errors import ExitCode, InputError

# Values that start with '-' but are no option: "-1", "-0.5", "-nan", "-inf". argparse would
# take them for options ("expected one argument"); as values they get the range message.
_NEGATIVE_VALUE = re.compile(r"-(?:[0-9.].*|nan|inf|infinity)", re.IGNORECASE)


def one_line(text: str) -> str:
    """``text`` with every unprintable character (newline, ESC, a bidi override) escaped as
    Python writes it (``\\n``, ``\\x1b``, ``\\u202e``): an error message stays one line and
    cannot drive the terminal, whatever value it quotes.

    >>> one_line("bad port '80\\n': use 1-65535 \\x1b[2J")
    "bad port '80\\\\n': use 1-65535 \\\\x1b[2J"
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(one_line(f"{self.prog}: error: {message} (see '{self.prog} --help')") + "\n")
        raise SystemExit(ExitCode.BAD_INPUT)

    def _parse_optional(self, arg_string: str) -> Any:
        if _NEGATIVE_VALUE.fullmatch(arg_string) and arg_string not in self._option_string_actions:
            return None  # a value (a negative number), so the type= callable can refuse it
        return super()._parse_optional(arg_string)


def typed_arg(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names it in "invalid <name> value" otherwise
    return convert


def number_arg(
    what: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    low_open: bool = False,
    unit: str = "",
) -> Callable[[str], Any]:
    """argparse ``type=`` for a number in [low, high] (``low_open``: above low): NaN,
    infinities, signs, exponents, Unicode digits and out-of-range values are refused."""
    from portkit.parse.scalars import parse_number

    def parse(text: str) -> float | int:
        v = parse_number(text, what=what, low=low, high=high, integer=integer, low_open=low_open, unit=unit)
        return int(v) if integer else v

    return typed_arg(parse, what)


def seconds_arg(what: str, high: float, *, low: float = 0.0, allow_zero: bool = False) -> Callable[[str], Any]:
    """argparse ``type=`` for a duration: above ``low`` (or from it with ``allow_zero``)."""
    return number_arg(what, low, high, low_open=not allow_zero, unit="seconds")


def _path(text: str) -> str:
    if not text.strip():
        raise InputError(f"invalid file name {text!r}: give the path of a file")
    return text


#: a file path the user names (``--policy FILE``): an empty or blank name is refused,
#: never read as "the default"
path_arg = typed_arg(_path, "file name")


def _port(text: str) -> int:
    from portkit.errors import PortSpecError
    from portkit.parse.scalars import parse_port, shown

    try:
        return parse_port(text)
    except PortSpecError:
        raise PortSpecError(f"invalid port {shown(text)!r}; valid ports are 1-65535 (ASCII digits)") from None


def _pid(text: str) -> int:
    from portkit.parse.scalars import parse_number

    return int(parse_number(text, what="pid", low=1, high=4194304, integer=True))


def _iface(text: str) -> str:
    from portkit.parse.scalars import check_ifname

    return check_ifname(text)


def _address(text: str) -> str:
    from portkit.engine.endpoint import parse_address, shown

    ip = parse_address(text)
    if ip is None:
        raise InputError(f"invalid address {shown(text)!r}: give an IPv4 or IPv6 address, e.g. 10.0.0.2 or fd00::2")
    return str(ip)


port_arg = typed_arg(_port, "port")  # one port 1-65535 (``--port N``)
pid_arg = typed_arg(_pid, "pid")  # a process id 1-4194304 (the kernel's pid_max limit)
iface_arg = typed_arg(_iface, "interface")  # an interface name (kernel rules, conservative set)
address_arg = typed_arg(_address, "address")  # an IPv4 dotted quad or an IPv6 literal


def _iface_pattern(text: str) -> str:
    from portkit.parse.scalars import check_ifname

    return check_ifname(text, pattern=True)


iface_pattern_arg = typed_arg(_iface_pattern, "interface")  # a name, or a prefix and '*' (veth*)


def proto_arg(choices: tuple[str, ...], *, numbers: bool = False) -> Callable[[str], str]:
    """argparse ``type=`` for a protocol name out of ``choices`` (case-insensitive), or with
    ``numbers`` an IP protocol number 0-255 in ASCII digits."""
    from portkit.parse.scalars import is_ascii_number, shown

    def parse(text: str) -> str:
        v = text.strip(" ").lower()
        if numbers and is_ascii_number(v) and len(v) <= 3 and int(v) <= 255:
            return str(int(v))
        if v not in choices:
            extra = " or a protocol number 0-255" if numbers else ""
            raise InputError(f"invalid protocol {shown(text)!r}: valid ones are {', '.join(choices)}{extra}")
        return v

    return typed_arg(parse, "protocol")


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
    g.add_argument("--netns", metavar="NAME", help="look inside the named network namespace (as 'ip netns' names it), or container:NAME (a container name or id prefix)")
    g.add_argument(
        "--netns-pid",
        metavar="PID",
        type=pid_arg,
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
