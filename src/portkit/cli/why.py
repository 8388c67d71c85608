"""``portkit why`` (the four-cause diagnosis) and ``portkit trace`` (a traceroute aimed at a port).

Only the standard library and light portkit modules are imported at the top; the
gathering machinery is imported inside ``run`` (start-up time).
"""

from __future__ import annotations

import argparse
from typing import Any

from portkit.cli.common import (
    add_netns_options,
    add_output_options,
    address_arg,
    number_arg,
    subparser,
    typed_arg,
)
from portkit.errors import ExitCode, InputError

WHY_DESCRIPTION = """\
Explain why TARGET:PORT can or cannot be reached, and what to change.

portkit walks the whole path from where it runs and names the cause:
nothing listens, a firewall rule blocks it (outbound here, forward on a router, inbound on
the server), NAT/port forwarding points at the wrong place, or the service is bound to
127.0.0.1 only. Each finding has a stable code, the evidence (rule with table/chain/handle,
socket line, probe result, last hop that answered) and a fix you can paste.

Run it on the client, on the server (with --from CLIENT), or on the router that forwards
the port: each host sees a different part of the path.
"""

WHY_EPILOG = """\
codes: REACHABLE FILTERED_ON_PATH NOT_LISTENING LOOPBACK_ONLY BOUND_TO_OTHER_ADDRESS
       FIREWALL_INBOUND_DROP FIREWALL_INBOUND_REJECT FIREWALL_OUTBOUND FIREWALL_FORWARD
       FORWARD_TARGET_NOT_LISTENING FORWARD_TARGET_UNREACHABLE NO_ROUTE NAME_NOT_RESOLVED
       EXPOSED_DESPITE_INBOUND_DENY UNKNOWN
The first finding is the main cause (findings follow the path: client, routers, server).

snapshots: the facts gathered here can be written down and reasoned over elsewhere.
  --facts-out FILE  also writes what was gathered (JSON, "schema": 1, every fact the
                    diagnosis uses) to FILE; the diagnosis is printed as usual.
  --facts-out -     writes the snapshot to stdout *instead of* the diagnosis (for a
                    pipe: ssh host portkit why ... --facts-out - > h.json); the exit
                    status is still the diagnosis's. Not with --json (both use stdout).
  --facts-in FILE   reasons over a snapshot (a file, or - for stdin) with no I/O: no
                    packet is sent, no socket, route or rule is read. TARGET may be left
                    out; when given it must be the snapshot's target:port/proto.
                    --from, --timeout, --no-trace, -4 and -6 shape the gathering, so
                    they are refused with --facts-in.

exit status: 0 reachable, 1 not reachable (also a name that does not resolve), 2 bad input

examples:
  portkit why db.example.lan:5432            on the client
  portkit why 10.0.2.2:22 --from 10.0.1.7    on the server: would 10.0.1.7 get in?
  portkit why 203.0.113.5:8080               on the router that forwards 8080
  portkit why [fd00::2]:53/udp --json        {"schema": 1, "reachable": false, "findings": [...]}
  portkit why web:80 --lang ko               in Korean (or LANG=ko_KR.UTF-8)
  portkit why 10.0.2.2:22 --facts-out s.json record the facts, then later / elsewhere:
  portkit why --facts-in s.json --json       the same diagnosis, from the snapshot alone
"""

TRACE_DESCRIPTION = """\
Traceroute aimed at the port itself (like tcptraceroute, mtr --tcp --port): TCP connects
(or UDP datagrams) to TARGET:PORT with rising TTL. Each router's ICMP time-exceeded is
recorded, until the destination answers (open or closed) or the probes die. "The probes
die after hop N" locates a filter on the path. Needs no privilege (IP_RECVERR).
"""

TRACE_EPILOG = """\
exit status: 0 the port answered open, 1 closed/filtered/no answer, 2 bad input

examples:
  portkit trace 10.0.2.2:443
  portkit trace [fd00::2]:53/udp --json
  portkit trace web:80 --max-ttl 12 --timeout 0.5
"""


def _lang(text: str) -> str:
    if text not in ("en", "ko"):
        raise argparse.ArgumentTypeError(f"invalid language {text!r}; valid ones are: en, ko")
    return text


def _from_text(text: str) -> str:
    """--from: an address (checked now) or a host name (checked now, resolved when gathering)."""
    from portkit.engine.endpoint import check_name, parse_address

    t = text.strip(" ")
    if ":" in t or t[:1].isdigit():
        return str(address_arg(t))
    if parse_address(t) is not None:
        return t
    return check_name(t, what="--from host")


_from_arg = typed_arg(_from_text, "--from")
_seconds = number_arg("timeout", 0.05, 60, unit="seconds")
_ttl = number_arg("max TTL", 1, 64, integer=True)
_tries = number_arg("number of tries", 1, 5, integer=True)


def _common(p: argparse.ArgumentParser) -> None:
    fam = p.add_mutually_exclusive_group()
    fam.add_argument(
        "-4", dest="family", action="store_const", const=4, help="use the name's IPv4 address only"
    )
    fam.add_argument(
        "-6", dest="family", action="store_const", const=6, help="use the name's IPv6 address only"
    )
    p.add_argument(
        "--lang",
        type=_lang,
        metavar="{en,ko}",
        help="language of the story (default: from LANG); JSON is always English",
    )
    add_netns_options(p)
    add_output_options(p)


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "why",
        help="explain why a port cannot be reached",
        description=WHY_DESCRIPTION,
        epilog=WHY_EPILOG,
    )
    p.add_argument(
        "target",
        nargs="?",
        metavar="TARGET:PORT[/tcp|/udp]",
        help="e.g. 10.0.2.2:80, db.lan:5432, [fd00::2]:53/udp (optional with --facts-in)",
    )
    p.add_argument(
        "--from",
        dest="from_addr",
        type=_from_arg,
        metavar="ADDR|NAME",
        help="the client's address or host name (resolved as the target is): one of this host's (send from it) or another host's (judge its packets here)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds to wait for each probe (default 1)",
    )
    p.add_argument(
        "--no-trace", dest="trace", action="store_false", help="do not trace the path when the probe dies"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also show skipped checks and the trace hops")
    snap = p.add_mutually_exclusive_group()
    snap.add_argument(
        "--facts-out",
        metavar="FILE|-",
        help="also write the gathered facts as a JSON snapshot to FILE ('-': to stdout, instead of the diagnosis)",
    )
    snap.add_argument(
        "--facts-in",
        metavar="FILE|-",
        help="reason over a snapshot written by --facts-out (FILE, or - for stdin) instead of gathering: no I/O",
    )
    _common(p)
    p.set_defaults(func=run_why)

    t = subparser(
        sub,
        "trace",
        help="traceroute aimed at a port: where on the path it dies",
        description=TRACE_DESCRIPTION,
        epilog=TRACE_EPILOG,
    )
    t.add_argument("target", metavar="TARGET:PORT[/tcp|/udp]", help="e.g. 10.0.2.2:443, [fd00::2]:53/udp")
    t.add_argument("--max-ttl", type=_ttl, default=30, metavar="N", help="give up after N hops (default 30)")
    t.add_argument(
        "--timeout", type=_seconds, default=1.0, metavar="S", help="seconds to wait for each hop (default 1)"
    )
    t.add_argument("--tries", type=_tries, default=2, metavar="N", help="probes per silent hop (default 2)")
    t.add_argument(
        "--method",
        choices=("auto", "recverr", "raw"),
        default="auto",
        help="how ICMP answers are read: the sockets' error queue (recverr, no privilege), a raw ICMP "
        "socket (raw, root), or both when root (auto, default)",
    )
    _common(t)
    t.set_defaults(func=run_trace)


def run_why(args: argparse.Namespace) -> int:
    from portkit.i18n import translator
    from portkit.ops import why as ops
    from portkit.ops.vantage import run_from
    from portkit.render.output import Output
    from portkit.render.why import why_json, why_text

    out = Output.from_args(args)
    if args.facts_in is not None:
        _refuse_gathering_options(args)
        facts = ops.read_facts(args.facts_in)
        if args.target is not None:
            ops.check_snapshot_target(facts, args.target)
    else:
        if args.target is None:
            raise InputError("give TARGET:PORT[/tcp|/udp] to diagnose, or --facts-in FILE to read a snapshot")
        if args.facts_out == "-" and out.json:
            raise InputError("--facts-out - and --json both write to stdout: choose one (or give --facts-out a FILE)")
        if args.facts_out is not None:
            ops.check_facts_out(args.facts_out)
        timeout = 1.0 if args.timeout is None else args.timeout
        facts = run_from(
            args.netns,
            args.netns_pid,
            lambda: ops.why_facts(
                args.target, from_addr=args.from_addr, timeout=timeout, trace=args.trace, family=args.family
            ),
        )
        if args.facts_out is not None:
            ops.dump_facts(facts, args.facts_out)
    d = ops.diagnose_facts(facts)
    if args.facts_out == "-":
        pass  # stdout carries the snapshot alone; the exit status still says reachable or not
    elif out.json:
        out.emit_json(why_json(d))
    else:
        out.write(why_text(d, translator(args.lang), color=out.color, verbose=args.verbose))
    return int(ExitCode.OK if d.reachable else ExitCode.NO)


def _refuse_gathering_options(args: argparse.Namespace) -> None:
    given = [
        name
        for name, used in (
            ("--from", args.from_addr is not None),
            ("--timeout", args.timeout is not None),
            ("--no-trace", not args.trace),
            ("-4" if args.family == 4 else "-6", args.family is not None),
            ("--netns", args.netns is not None),
            ("--netns-pid", args.netns_pid is not None),
        )
        if used
    ]
    if given:
        raise InputError(
            f"{given[0]} shapes the gathering, and --facts-in reads facts gathered already: leave {given[0]} out"
        )


def run_trace(args: argparse.Namespace) -> int:
    from portkit.i18n import translator
    from portkit.ops.vantage import run_from
    from portkit.ops.why import trace
    from portkit.render.output import Output
    from portkit.render.why import trace_json, trace_text

    out = Output.from_args(args)
    t = run_from(
        args.netns,
        args.netns_pid,
        lambda: trace(
            args.target,
            max_ttl=args.max_ttl,
            timeout=args.timeout,
            tries=args.tries,
            family=args.family,
            method=args.method,
        ),
    )
    if out.json:
        out.emit_json(trace_json(t))
    else:
        out.write(trace_text(t, translator(args.lang), color=out.color))
    return int(ExitCode.OK if t.state == "open" else ExitCode.NO)
