"""``portkit nat``: the kernel's translation table (conntrack): what each flow became."""

from __future__ import annotations

import argparse
from typing import Any

from portkit.cli.common import add_netns_options, add_output_options, port_arg, seconds_arg, subparser
from portkit.errors import ExitCode, InputError

EPILOG = """\
examples:
  portkit nat                         every translated flow (SNAT, PAT, DNAT)
  portkit nat --port 8080 --proto tcp flows with port 8080 on either side
  portkit nat --host 10.0.0.0/8       flows touching that network
  portkit nat --watch                 live: + new flow, ~ state change, - flow gone
  portkit nat --netns pk-lab-router --json

A flow is shown as  client -> what it became -> where it went.  Kinds: SNAT (source
address rewritten), PAT (source port rewritten too), DNAT (destination rewritten, i.e. a
port forward), SNAT+DNAT. Exit status: 0 flows shown, 1 none match, 3 not root,
130 --watch ended by Ctrl-C.
"""


_seconds = seconds_arg("interval", 3600)


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "nat",
        help="show the kernel's NAT/PAT translation table (conntrack)",
        description="Show what the kernel translated: for each NATed flow, the original tuple and what it became.",
        epilog=EPILOG,
    )
    p.add_argument("--port", type=port_arg, metavar="PORT", help="only flows with PORT on either side")
    p.add_argument("--host", metavar="ADDR|CIDR", help="only flows touching this address or network")
    p.add_argument("--proto", metavar="PROTO", help="only this protocol: tcp, udp, icmp, ...")
    p.add_argument("--watch", action="store_true", help="keep watching and print changes as they happen")
    p.add_argument(
        "--interval", type=_seconds, default=1.0, metavar="S", help="--watch refresh interval (default 1 s)"
    )
    p.add_argument(
        "--source",
        choices=("auto", "proc", "tool"),
        default="auto",
        help="read /proc/net/nf_conntrack (proc) or run 'conntrack -L' (tool); auto: proc if present",
    )
    add_netns_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from portkit.ops.forward import nat_entries, watch_nat
    from portkit.render.nat import nat_document, render_nat, watch_document, watch_text
    from portkit.render.output import Output

    if args.interval <= 0:
        raise InputError(f"invalid --interval {args.interval:g}; use a positive number of seconds")
    out = Output.from_args(args)

    def read() -> tuple[Any, ...]:
        return nat_entries(
            port=args.port,
            host=args.host,
            proto=args.proto,
            netns=args.netns,
            netns_pid=args.netns_pid,
            source=args.source,
        )

    entries = read()
    if out.json:
        out.emit_json(nat_document(entries))
    elif not entries and (args.port or args.host or args.proto):
        out.write("no translated flow matches the filters (--port, --host, --proto)")
    else:
        out.write(render_nat(entries, color=out.color))
    if not args.watch:
        return ExitCode.OK if entries else ExitCode.NO
    try:
        for change in watch_nat(entries, read, interval=args.interval):
            if out.json:
                out.emit_json(watch_document(change))
            else:
                for text in watch_text(change):
                    out.write(text)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED  # Ctrl-C ends --watch: 130, as everywhere, and no traceback
    return ExitCode.INTERRUPTED  # not reached: the watch ends only by Ctrl-C
