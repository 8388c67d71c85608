"""``portkit check``: is this endpoint open, closed or filtered - and why."""

from __future__ import annotations

import argparse
from typing import Any

from portkit.cli.common import add_netns_options, add_output_options, number_arg, seconds_arg, subparser
from portkit.errors import ExitCode, InputError

DESCRIPTION = """\
Probe one or more endpoints and say, in nmap's words, what each one is:

  open      something accepted (reason syn-ack; for UDP udp-response)
  closed    the host answered that nothing listens (conn-refused, or reset with
            --syn; for UDP an ICMP port-unreach)
  filtered  a firewall dropped the probe (no-response) or answered with an ICMP
            error: admin-prohibited, host-unreach, port-unreach ... and who sent it
  open|filtered  UDP only: silence, which an open UDP port and a firewall both give

ICMP errors are read from the socket's error queue (IP_RECVERR), so portkit tells an
admin-prohibited REJECT from a dead route where 'nc -vz' only says "No route to host".
"""

EPILOG = """\
examples:
  portkit check 10.0.0.2:22                 one TCP port
  portkit check db.internal:5432 [fd00::2]:80 cache:11211/udp
  portkit check 10.0.0.2 -p 22,80,443       a host and a port list
  portkit check example.lan:443 --banner    also read what the service says (or its TLS)
  portkit check 10.0.0.2:80 --syn           raw SYN probe (root): closed reads "reset"
  portkit check "[fe80::1%eth0]:22"         a link-local address names its interface

exit status: 0 every endpoint is open, 1 any is not, 2 bad input or a name that does
not resolve, 3 --syn without root, 130 interrupted.
"""


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "check",
        help="is a port open, closed or filtered, and why",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "endpoints", nargs="+", metavar="TARGET:PORT[/tcp|/udp]", help="endpoints; or a bare TARGET with -p"
    )
    p.add_argument("-p", "--ports", metavar="SPEC", help="ports for bare targets: 22,80,8000-8010")
    p.add_argument("-u", "--udp", action="store_true", help="probe UDP where an endpoint names no protocol")
    p.add_argument(
        "--syn", action="store_true", help="send raw SYNs instead of connecting (root / CAP_NET_RAW)"
    )
    p.add_argument(
        "--banner", action="store_true", help="for open TCP ports, read the first line (or detect TLS)"
    )
    p.add_argument(
        "--timeout", type=seconds_arg("timeout", 60), metavar="SECONDS", help="how long one probe waits (default 1, then adaptive)"
    )
    p.add_argument(
        "--retries",
        type=number_arg("number of retries", 0, 20, integer=True),
        metavar="N",
        default=1,
        help="retransmissions of an unanswered probe (default 1)",
    )
    fam = p.add_mutually_exclusive_group()
    fam.add_argument(
        "-4", dest="family", action="store_const", const=4, help="use IPv4 addresses of names only"
    )
    fam.add_argument(
        "-6", dest="family", action="store_const", const=6, help="use IPv6 addresses of names only"
    )
    add_netns_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _expand(args: argparse.Namespace) -> list[str]:
    from portkit.engine.endpoint import parse_ports

    proto = "udp" if args.udp else "tcp"
    out: list[str] = []
    ports = parse_ports(args.ports) if args.ports else None
    for text in args.endpoints:
        bare = text.strip()
        if bare.startswith("[") and "]" not in bare:
            raise InputError(f"invalid endpoint {text!r}: the '[' needs its ']', e.g. [fd00::2]:80")
        has_port = (bare.startswith("[") and "]:" in bare) or (
            not bare.startswith("[") and bare.count(":") == 1
        )
        if not has_port and ports is None and ":" in bare and not bare.startswith("["):
            raise InputError(f"invalid endpoint {text!r}: put an IPv6 address in brackets, e.g. [fd00::2]:80")
        if has_port:
            out.append(text if "/" in text.rpartition(":")[2] or proto == "tcp" else f"{text}/{proto}")
        elif ports is None:
            raise InputError(f"{text!r} has no port: write {text}:PORT or add -p PORTS")
        else:
            host = f"[{bare.strip('[]')}]" if ":" in bare else bare
            out.extend(f"{host}:{p}/{proto}" for p in ports)
    return out


def run(args: argparse.Namespace) -> int:
    from portkit.ops.probe import check
    from portkit.ops.vantage import run_from
    from portkit.render.output import Output
    from portkit.render.probe import check_json, check_table

    out = Output.from_args(args)
    targets = _expand(args)
    report = run_from(
        args.netns,
        args.netns_pid,
        lambda: check(
            targets,
            timeout=args.timeout,
            retries=args.retries,
            banner=args.banner,
            syn=args.syn,
            family=args.family,
        ),
    )
    if out.json:
        out.emit_json(check_json(report))
    else:
        out.write(check_table(report, color=out.color))
    return int(ExitCode.OK if report.all_open else ExitCode.NO)
