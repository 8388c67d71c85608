"""``portkit free`` (free ports to use) and ``portkit info`` (what a port number means)."""

from __future__ import annotations

import argparse
from typing import Any

from portkit.cli.common import add_output_options, number_arg, subparser, typed_arg
from portkit.errors import ExitCode, InputError

FREE_EPILOG = """\
By default ports come from 1024 up to just below the OS ephemeral range
(net.ipv4.ip_local_port_range), skipping ports named in /etc/services and in portkit's
own table. A port is returned only if it binds on 0.0.0.0 and on :: at that moment.
Exit status: 0 when COUNT ports were found, 1 when fewer were.

examples:
  portkit free                  one free TCP port
  portkit free --count 3 --range 8000-8100
  portkit free --udp --json     {"schema": 1, "ports": [...]}
"""

INFO_EPILOG = """\
classes: well-known 0-1023, registered 1024-49151, dynamic/private 49152-65535 (IANA);
the OS ephemeral range (Linux default 32768-60999) is a different thing.

examples:
  portkit info 3389
  portkit info ssh              -> 22
"""


def _range_text(text: str) -> str:
    """``A-B`` with both ends ASCII port numbers (ops.inspect_extra.parse_range checks the order)."""
    from portkit.engine.endpoint import parse_port, shown

    low_s, sep, high_s = text.strip(" ").partition("-")
    where = f" in range {shown(text)!r} (a range is LOW-HIGH, e.g. 8000-8100)"
    if not sep:
        raise InputError(f"invalid range {shown(text)!r}: a range is LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 8000-8100")
    return f"{parse_port(low_s, where=where)}-{parse_port(high_s, where=where)}"


def _info_query(text: str) -> str:
    """A port number 0-65535 in ASCII digits, or a service name (ASCII)."""
    from portkit.engine.endpoint import parse_port, shown

    t = text.strip(" ")
    num, slash, proto = t.partition("/")
    if slash and proto.lower() in ("tcp", "udp") and num.isascii() and num.isdigit():
        t = num  # "53/udp" asks about port 53, as "host:53/udp" names it
    if any(c.isdigit() for c in t) and all(c.isdigit() for c in t):
        try:
            return str(parse_port(t, allow_zero=True))
        except InputError:
            raise InputError(
                f"invalid port {shown(t)!r}; valid ports are 0-65535 (or a service name such as ssh)"
            ) from None
    if not t.isascii() or not t.isprintable() or len(t) > 64:
        raise InputError(f"invalid port or service {shown(text)!r}: give a port number 0-65535 or a service name such as ssh")
    return t


_count_arg = number_arg("count", 1, 1000, integer=True)


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "free",
        help="free ports to use",
        description="Ports that nothing uses and that bind right now on 0.0.0.0 and ::.",
        epilog=FREE_EPILOG,
    )
    p.add_argument("--count", type=_count_arg, default=1, metavar="N", help="how many ports (default 1)")
    p.add_argument("--range", dest="port_range", type=typed_arg(_range_text, "range"), metavar="A-B", help="search ports A to B (inclusive)")
    p.add_argument("--udp", action="store_true", help="UDP ports instead of TCP")
    add_output_options(p)
    p.set_defaults(func=run_free)

    p = subparser(
        sub,
        "info",
        help="what a port number (or service name) means",
        description="The class of a port, the services registered for it per protocol (/etc/services,\n"
        "nmap-services when nmap is installed, portkit's own table), a short note for common\n"
        "ones, and whether it falls inside this OS's ephemeral range.",
        epilog=INFO_EPILOG,
    )
    p.add_argument("query", type=typed_arg(_info_query, "query"), metavar="PORT|SERVICE", help="a port number 0-65535 or a service name such as ssh")
    add_output_options(p)
    p.set_defaults(func=run_info)


def run_free(args: argparse.Namespace) -> int:
    import sys

    from portkit.ops.inspect import free_ports
    from portkit.render.info import free_document, free_text
    from portkit.render.output import Output

    free = free_ports(args.count, args.port_range, "udp" if args.udp else "tcp")
    out = Output.from_args(args)
    if out.json:
        out.emit_json(free_document(free))
    elif free.ports:
        out.write(free_text(free))
    if len(free.ports) < args.count:
        low, high = free.port_range
        sys.stderr.write(
            f"portkit: only {len(free.ports)} of {args.count} free {free.proto} ports found in {low}-{high}\n"
        )
        return ExitCode.NO
    return ExitCode.OK


def run_info(args: argparse.Namespace) -> int:
    from portkit.i18n import translator
    from portkit.ops.inspect import port_info
    from portkit.render.info import info_document, info_text
    from portkit.render.output import Output

    info = port_info(args.query)
    out = Output.from_args(args)
    if out.json:
        out.emit_json(info_document(info))
    else:
        out.write(info_text(info, color=out.color, tr=translator(None)))
    return ExitCode.OK
