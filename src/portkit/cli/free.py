"""``portkit free`` (free ports to use) and ``portkit info`` (what a port number means)."""

from __future__ import annotations

import argparse
from typing import Any

from portkit.cli.common import add_output_options, subparser
from portkit.errors import ExitCode

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


def _count_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}; valid counts are 1-1000")
    return int(text)


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "free",
        help="free ports to use",
        description="Ports that nothing uses and that bind right now on 0.0.0.0 and ::.",
        epilog=FREE_EPILOG,
    )
    p.add_argument("--count", type=_count_arg, default=1, metavar="N", help="how many ports (default 1)")
    p.add_argument("--range", dest="port_range", metavar="A-B", help="search ports A to B (inclusive)")
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
    p.add_argument("query", metavar="PORT|SERVICE", help="a port number 0-65535 or a service name such as ssh")
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
