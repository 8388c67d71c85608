"""``portkit scan``: which ports of these hosts are open, fast and nmap-accurate."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from portkit.cli.common import add_netns_options, add_output_options, number_arg, seconds_arg, subparser
from portkit.errors import ExitCode

DESCRIPTION = """\
Scan TCP (or UDP) ports of hosts, addresses and CIDR blocks and report each port's
state with nmap's reason: open (syn-ack), closed (conn-refused / reset), filtered
(no-response, or the ICMP error and its sender), open|filtered (UDP silence).

How: a plain epoll loop of non-blocking connects (no privileges needed), or raw SYNs
with --syn (root; no handshake is completed). Timeouts adapt to measured round trips
(smoothed RTT + 4 x variance, like nmap), unanswered probes are retransmitted, and a
congestion window backs off when the host goes quiet - but not merely because a
firewall drops some ports, so a scan stays fast when thousands of ports are dropped.
The open-files limit is raised to its hard limit and the window kept below it.

Default: the 1000 most common TCP ports (nmap-services frequencies when nmap is
installed, else portkit's own list). CIDR blocks are swept for live hosts first
(ICMP echo + TCP 80/443 as root, connects to 80/443 otherwise); -Pn skips that.
Ctrl-C stops the scan and prints what was found so far.
"""

EPILOG = """\
examples:
  portkit scan 10.0.0.2                      top 1000 TCP ports
  portkit scan 10.0.0.2 -p-                  all 65535 TCP ports
  portkit scan db.lan -p 22,80,8000-8100 -6  only the name's IPv6 address
  portkit scan 10.0.0.0/24 --top 100         live hosts of a /24, top 100 ports
  portkit scan 10.0.0.2 --syn -p-            raw SYN scan (root)
  portkit scan 10.0.0.2 -sU -p 53,123,161    UDP with protocol payloads
  portkit scan 10.0.0.2 -oX out.xml          also write nmap XML (ndiff, python-libnmap)

output: open ports are listed; groups of more than 25 ports sharing a state and a
reason are summarised ("65000 closed (conn-refused)"); --all lists every port.
exit status: 0 the scan completed, 2 bad input or a target that did not resolve (the
others are still scanned), 3 --syn without root, 130 interrupted (partial results are
printed, "interrupted": true).
"""


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "scan",
        help="scan ports of hosts or networks (nmap-accurate)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "targets", nargs="+", metavar="TARGET", help="host names, IPv4/IPv6 addresses, CIDR blocks"
    )
    ports = p.add_mutually_exclusive_group()
    ports.add_argument("-p", "--ports", metavar="SPEC", help="22,80,8000-8100; '-' or 1-65535 for all")
    ports.add_argument(
        "-p-", dest="ports", action="store_const", const="-", help="all 65535 ports (same as -p -)"
    )
    ports.add_argument("--top", type=number_arg("number of ports", 1, 65535, integer=True), metavar="N", help="the N most commonly open ports (default 1000)")
    kind = p.add_argument_group("scan type")
    kind.add_argument(
        "--syn", "-sS", action="store_true", help="raw SYN scan, no handshake (root / CAP_NET_RAW)"
    )
    kind.add_argument("--connect", "-sT", action="store_true", help="TCP connect scan (the default)")
    kind.add_argument("--udp", "-sU", action="store_true", help="UDP scan (with --syn: TCP and UDP)")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 addresses of names only")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 addresses of names only")
    tm = p.add_argument_group("timing")
    tm.add_argument(
        "-Pn", "--no-ping", dest="no_ping", action="store_true", help="scan every address of a CIDR block"
    )
    tm.add_argument("--rate", type=number_arg("rate", 0, 10_000_000, low_open=True, unit="probes per second"), metavar="PPS", help="at most PPS probes per second")
    tm.add_argument(
        "--max-retries", type=number_arg("number of retries", 0, 50, integer=True), metavar="N", help="retransmissions of unanswered probes (default up to 6)"
    )
    tm.add_argument(
        "--timeout", type=seconds_arg("timeout", 60), metavar="SECONDS", help="fixed wait per probe instead of adaptive timeouts"
    )
    tm.add_argument("--processes", type=number_arg("number of processes", 1, 16, integer=True), metavar="N", help="worker processes (default: 2 on 2+ cores)")
    p.add_argument("--all", dest="all_ports", action="store_true", help="list every port, summarise nothing")
    p.add_argument(
        "-oX", dest="xml", metavar="FILE", help="also write nmap-compatible XML to FILE ('-' for stdout)"
    )
    add_netns_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _progress_bar() -> Any:
    """A rich progress bar on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def run(args: argparse.Namespace) -> int:
    from portkit.errors import InputError, map_file_error
    from portkit.ops.probe import scan
    from portkit.ops.vantage import run_from
    from portkit.render.output import Output, warn
    from portkit.render.probe import scan_json, scan_table

    if args.syn and args.connect:
        raise InputError("--syn and --connect (-sT) exclude each other: choose one scan type")
    out = Output.from_args(args)
    if args.xml == "-" and out.json:
        raise InputError("-oX - and --json both write to stdout: choose one (or give -oX a FILE)")
    xml_file: Any = None
    if args.xml and args.xml != "-":
        # opened before the scan, as nmap does: a typo in the path must not cost a long scan
        try:
            xml_file = open(args.xml, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise map_file_error(exc, args.xml, "-oX file", writing=True) from None
    bar = _progress_bar() if args.xml != "-" else None
    task: Any = None

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(task, completed=done, total=total)

    if bar is not None:
        bar.start()
        task = bar.add_task("scan", total=None)
    try:
        report = run_from(
            args.netns,
            args.netns_pid,
            lambda: scan(
                args.targets,
                ports=args.ports,
                top=args.top,
                udp=args.udp,
                syn=args.syn,
                family=args.family,
                no_ping=args.no_ping,
                rate=args.rate,
                max_retries=args.max_retries,
                timeout=args.timeout,
                all_ports=args.all_ports,
                processes=args.processes,
                on_progress=on_progress if bar is not None else None,
            ),
        )
    except BaseException:
        if xml_file is not None:  # no scan, no file: do not leave an empty one behind
            xml_file.close()
            os.unlink(args.xml)
        raise
    finally:
        if bar is not None:
            bar.stop()
    for line in report.warnings:
        warn(line)
    for problem in report.errors:
        sys.stderr.write(f"portkit: {problem.error} (target {problem.target!r} skipped)\n")
    if args.xml:
        from portkit.render.nmapxml import scan_xml

        xml = scan_xml(report, args="portkit scan " + " ".join(sys.argv[2:]))
        if args.xml == "-":
            sys.stdout.write(xml)
        else:
            try:
                with xml_file:
                    xml_file.write(xml)
            except OSError as exc:  # the scan result is printed already: the lost XML file is a warning
                warn(f"cannot write {args.xml}: {exc.strerror}")
    if args.xml != "-":
        if out.json:
            out.emit_json(scan_json(report))
        else:
            out.write(scan_table(report, color=out.color))
    if report.interrupted:
        return int(ExitCode.INTERRUPTED)
    if report.errors:
        return int(ExitCode.BAD_INPUT)
    return int(ExitCode.OK)
