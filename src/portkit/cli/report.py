"""``portkit report`` (the default command), ``portkit ls`` and ``portkit who``.

Only the standard library and light portkit modules are imported here; the socket
machinery is imported inside ``run`` so that ``portkit who 1`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from operator import itemgetter
from typing import Any

from portkit.cli.common import (
    add_netns_options,
    add_output_options,
    address_arg,
    pid_arg,
    port_arg,
    seconds_arg,
    subparser,
    typed_arg,
)
from portkit.errors import ExitCode, InputError

REPORT_EPILOG = """\
exposure: loopback  reachable from this host only (127.0.0.0/8, ::1)
          all       every interface (0.0.0.0, or :: which on Linux also takes IPv4 unless v6only)
          address   one specific address

examples:
  portkit                       the report of this host
  portkit report --netns web    the report of the 'ip netns' namespace 'web'
  portkit report --json         {"schema": 1, "sockets": [...], "notes": [...]}
"""

LS_EPILOG = """\
states: ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE CLOSE_WAIT
        LAST_ACK LISTEN CLOSING NEW_SYN_RECV BOUND_INACTIVE, and UNCONN for bound UDP sockets
        (half-open connections are selected by NEW_SYN_RECV or SYN_RECV and, as in /proc
        and ss, shown as SYN_RECV)

examples:
  portkit ls                    listening TCP and bound UDP sockets
  portkit ls --all --tcp        every TCP socket, with peers
  portkit ls --state TIME_WAIT --port 443
  portkit ls --process nginx -6
"""

WHO_EPILOG = """\
exit status: 0 someone holds the port, 1 nobody does (or a --kill left it held)

examples:
  portkit who 8080              who holds 8080 (TCP or UDP)
  portkit who 53/udp
  portkit who 8080 --kill       SIGTERM the holders after asking; --yes skips the question
  portkit who 8080 --kill --signal INT --timeout 10 --force
"""


_pid_arg = pid_arg
_seconds_arg = seconds_arg("timeout", 86400, allow_zero=True)


def _signal_name(text: str) -> str:
    """A signal as typed: a name (TERM, SIGTERM) or an ASCII number; ops.parse_signal maps it."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9+]{1,12}", text.strip(" ")):
        raise InputError(f"invalid signal {text[:20]!r}: give a signal name such as TERM, INT, HUP, KILL (or its number)")
    return text.strip(" ")


def _address_arg(text: str | None) -> str | None:
    from portkit.engine.endpoint import parse_address
    from portkit.errors import TargetError

    if text is None:
        return None
    ip = parse_address(text.strip(" "), what="--from address")
    if ip is None:
        raise TargetError(f"invalid --from address {text!r}; give an IPv4 or IPv6 address")
    return str(ip)


def _add_family(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-4", dest="family", action="store_const", const="ipv4", help="IPv4 sockets only")
    g.add_argument("-6", dest="family", action="store_const", const="ipv6", help="IPv6 sockets only")


def _add_protos(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets (default: TCP and UDP)")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets (default: TCP and UDP)")


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "report",
        help="the host port report: every open door and who is behind it (default command)",
        description="Every listening TCP and bound UDP socket, IPv4 and IPv6, sorted by port: address,\n"
        "service, port class, exposure, pid, process and user, then notes worth a look\n"
        "(databases or remote desktops open on all interfaces, listeners in the ephemeral range).",
        epilog=REPORT_EPILOG,
    )
    _add_protos(p)
    _add_family(p)
    p.add_argument(
        "--from",
        dest="inbound_from",
        type=address_arg,
        metavar="ADDR",
        help="judge the INBOUND column for a new connection from ADDR (default: an outside "
        "address, 192.0.2.1 or 2001:db8::1, arriving on the default route's interface)",
    )
    p.add_argument(
        "--containers",
        action="store_true",
        help="add the sockets inside every running container's network namespace, marked with the container",
    )
    add_output_options(p)
    add_netns_options(p)
    p.set_defaults(func=run_report)

    p = subparser(
        sub,
        "ls",
        help="the socket table, with filters",
        description="List TCP/UDP sockets with their holding processes (all of them, for sockets shared\n"
        "by pre-forked workers). Default: listening TCP and bound, unconnected UDP sockets.",
        epilog=LS_EPILOG,
    )
    _add_protos(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-l", "--listen", action="store_true", help="listening/bound sockets only (the default)")
    g.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    g.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        help="only sockets in STATE (repeat or comma-separate for several)",
    )
    p.add_argument("--port", type=port_arg, metavar="N", help="local or remote port N")
    p.add_argument("--pid", type=_pid_arg, metavar="N", help="sockets held by process N")
    p.add_argument("--process", metavar="NAME", help="sockets held by a process whose name starts with NAME")
    _add_family(p)
    add_output_options(p)
    add_netns_options(p)
    p.set_defaults(func=run_ls)

    p = subparser(
        sub,
        "who",
        help="which process holds this port ('address already in use')",
        description="Which processes hold PORT (TCP and UDP unless PORT/tcp or PORT/udp): pid, command\n"
        "line, user, bind address and since when. --kill ends them, after asking.",
        epilog=WHO_EPILOG,
    )
    p.add_argument("port", metavar="PORT[/tcp|/udp]", help="the port, optionally with its protocol")
    p.add_argument("--kill", action="store_true", help="send SIGTERM (or --signal) to every holder")
    p.add_argument("--signal", type=typed_arg(_signal_name, "signal"), metavar="NAME", help="signal for --kill: TERM (default), INT, HUP, KILL, ...")
    p.add_argument(
        "--timeout", type=_seconds_arg, metavar="SECONDS", help="wait this long for the holders to end (default 5)"
    )
    p.add_argument("--force", action="store_true", help="after --timeout, SIGKILL the holders still running")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before killing")
    add_output_options(p)
    add_netns_options(p)
    p.set_defaults(func=run_who)


def _tr() -> Any:
    from portkit.i18n import translator

    return translator(None)


def _warn_incomplete(incomplete: bool, pids: list[int | None]) -> None:
    if incomplete and os.geteuid() != 0 and any(p is None for p in pids):
        from portkit.render.output import warn

        warn("process names of other users' sockets need root; showing what this user may see")


def _protos(args: argparse.Namespace) -> tuple[bool, bool]:
    if not args.tcp and not args.udp:
        return True, True
    return bool(args.tcp), bool(args.udp)


def run_report(args: argparse.Namespace) -> int:
    from portkit.ops.inspect import report
    from portkit.render.output import Output
    from portkit.render.sockets import report_text, table_document

    tcp, udp = _protos(args)
    table = report(
        netns=args.netns,
        netns_pid=args.netns_pid,
        family=args.family,
        tcp=tcp,
        udp=udp,
        inbound_from=_address_arg(args.inbound_from),
        containers=args.containers,
    )
    out = Output.from_args(args)
    _warn_incomplete(table.owners_incomplete, [e.pid for e in table.sockets])
    if out.json:
        out.emit_json(table_document(table))
    else:
        out.write(report_text(table.sockets, table.notes, color=out.color, tr=_tr()))
    return ExitCode.OK


def run_ls(args: argparse.Namespace) -> int:
    from portkit.ops.inspect import collect_sockets
    from portkit.render.output import Output
    from portkit.render.sockets import ls_text, rows_json

    tcp, udp = _protos(args)
    states = None
    if args.state:
        states = [s for chunk in args.state for s in chunk.split(",") if s.strip()]
        if not states:
            raise InputError("invalid state ''; give a state name such as LISTEN or ESTABLISHED")
    got = collect_sockets(
        tcp=tcp,
        udp=udp,
        listening=True,
        all_states=bool(args.all),
        states=states,
        port=args.port,
        pid=args.pid,
        process=args.process,
        family=args.family,
        netns=args.netns,
        netns_pid=args.netns_pid,
    )
    rows = got.rows
    if len(rows) < 100_000:  # sorting is cheap next to the dump
        rows.sort(key=itemgetter(3, 0, 1, 2, 6))  # port, proto, family, address, state
    out = Output.from_args(args)
    _warn_incomplete(got.owners_incomplete, [r[7] for r in rows])
    if out.json:
        text = rows_json(rows, got.notes)
        if out.stream.isatty():
            import json

            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        out.stream.write(text + "\n")
        out.stream.flush()
    else:
        out.write(ls_text(rows, got.notes, color=out.color, tr=_tr()))
    return ExitCode.OK


def _confirm(question: str) -> bool:
    """Ask on the controlling terminal (or stdin when it is one); refuse without a terminal."""
    try:
        tty = open("/dev/tty", "r+")  # noqa: SIM115 - closed below
    except OSError:  # no controlling terminal: try stdin, else refuse
        tty = None
    if tty is not None:
        with tty:
            tty.write(question)
            tty.flush()
            answer = tty.readline()
    elif sys.stdin is not None and sys.stdin.isatty():
        sys.stderr.write(question)
        sys.stderr.flush()
        answer = sys.stdin.readline()
    else:
        raise InputError("refusing to kill without confirmation: there is no terminal to ask on; add --yes")
    return answer.strip().lower() in ("y", "yes")


def run_who(args: argparse.Namespace) -> int:
    from portkit.ops.inspect import kill_holders, parse_port_proto, who
    from portkit.ops.kill import parse_signal
    from portkit.render.output import Output
    from portkit.render.sockets import kill_text, who_document, who_text

    port, proto = parse_port_proto(args.port)
    if not args.kill and (args.signal is not None or args.timeout is not None or args.force):
        raise InputError("--signal, --timeout and --force apply only with --kill")
    sig = parse_signal("TERM" if args.signal is None else args.signal)
    rep = who(port, proto, netns=args.netns, netns_pid=args.netns_pid)
    out = Output.from_args(args)
    tr = _tr()
    _warn_incomplete(rep.owners_incomplete, [h.pid for h in rep.holders])
    outcomes = None
    if args.kill and rep.holders:
        pids = sorted({p.pid for h in rep.holders for p in h.processes})
        if pids and not args.yes:
            names = ", ".join(f"{p.pid} ({p.name})" for h in rep.holders for p in h.processes)
            names = ", ".join(dict.fromkeys(names.split(", ")))
            if not out.json:
                out.write(who_text(rep, color=out.color, tr=tr))
            if not _confirm(tr("Send {signal} to {procs}? [y/N] ").format(signal=sig.name, procs=names)):
                sys.stderr.write("portkit: nothing killed\n")
                return ExitCode.NO
        outcomes = kill_holders(rep, signal=sig.name, timeout=5.0 if args.timeout is None else args.timeout, force=args.force)
    if out.json:
        out.emit_json(who_document(rep, outcomes))
    else:
        if outcomes is None or args.yes:
            out.write(who_text(rep, color=out.color, tr=tr))
        if outcomes:
            out.write(kill_text(outcomes, tr=tr))
    if not rep.holders:
        return ExitCode.NO
    if outcomes is not None and not all(o.exited for o in outcomes):
        return ExitCode.NO
    return ExitCode.OK
