"""``portkit lab up|down|ls|status|exec``: networks of hosts in namespaces, to test and to learn."""

from __future__ import annotations

import argparse
import os
from typing import Any

from portkit.cli.common import add_output_options, subparser

DESCRIPTION = """\
A lab is a small network of hosts, each a Linux network namespace, joined by veth links
or bridges, with addresses, routes, services (echo, http, banner, silent), nftables rules
and NAT, described in one YAML scenario. Labs outlive the command: their state is kept
under /run/portkit/labs/, so 'portkit lab down NAME' works from any shell later.
Creating and removing labs needs root.
"""

EPILOG = """\
examples:
  sudo portkit lab up examples/labs/nat-pat.yaml
  sudo portkit lab exec nat-pat client1 -- portkit check server:80
  sudo portkit lab exec nat-pat router -- conntrack -L
  portkit lab ls
  portkit lab status nat-pat --json
  sudo portkit lab down nat-pat

shipped scenarios (examples/labs/): inbound-rules, loopback-only, port-forward, nat-pat,
dual-stack; each file's comments say what to try.
"""

SCHEMA_HELP = """\
examples:
  sudo portkit lab up nat-pat                          a shipped scenario, by name
  sudo portkit lab up examples/labs/port-forward.yaml --name pf2   a second copy beside the first
  sudo portkit lab up my-lab.yaml --json

scenario schema:
  name: demo                 # optional; the file's stem otherwise
  hosts:
    HOST:
      routes: [{to: default | CIDR, via: GATEWAY}]
      forward: true          # a router: IPv4/IPv6 forwarding on
      nat:
        masquerade: [{oif: LINK, family: 4}]              # source NAT/PAT (4, 6 or 0 = both)
        forwards: [{proto: tcp, port: 8080, to: "10.0.2.2:2988", iif: LINK}]   # DNAT
      services: [{proto: tcp|udp, listen: "ADDR:PORT", kind: echo|http|banner|silent, banner: TEXT}]
      firewall: |            # raw nftables text, loaded in that host
        table inet filter { ... }
  links:                     # a veth pair (2 ends) or a bridge (bridge: true, any number)
    - {name: lan, ends: {HOST: [10.0.1.2/24, "fd00:1::2/64"], HOST2: [10.0.1.1/24]}}
addresses must be private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) or in the
documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32).
"""


def register(sub: Any) -> None:
    p = subparser(sub, "lab", help="networks of hosts in namespaces (up, down, ls, status, exec)", description=DESCRIPTION, epilog=EPILOG)
    p.set_defaults(func=lambda args: _no_action(p))
    acts = p.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=type(p))

    up = subparser(acts, "up", help="bring a scenario up (idempotent)", description="Bring the lab of a scenario file up. Running it again on a lab that is up changes nothing; a changed scenario is rebuilt.", epilog=SCHEMA_HELP)
    up.add_argument("file", metavar="FILE", help="scenario YAML file, or the name of a shipped example (e.g. nat-pat)")
    up.add_argument("--name", help="lab name (default: the scenario's name:, or the file's stem)")
    up.add_argument(
        "--backend",
        choices=("iproute2", "pyroute2"),
        default="iproute2",
        help="build the network with 'ip -batch' (default, faster) or pyroute2's netlink calls",
    )
    add_output_options(up)
    up.set_defaults(func=run_up)

    down = subparser(acts, "down", help="remove a lab and everything it made", description="Kill the lab's services and remove its namespaces, links and files. Works from a fresh shell and after a failed 'up'.", epilog="examples:\n  sudo portkit lab down nat-pat\n  sudo portkit lab down examples/labs/nat-pat.yaml port-forward")
    down.add_argument("names", nargs="+", metavar="NAME", help="lab name (or its scenario file)")
    add_output_options(down)
    down.set_defaults(func=run_down)

    ls = subparser(acts, "ls", help="list the labs that are up", description="List the labs recorded under /run/portkit/labs/.", epilog="examples:\n  portkit lab ls\n  portkit lab ls --json")
    add_output_options(ls)
    ls.set_defaults(func=run_ls)

    st = subparser(acts, "status", help="hosts, addresses and services of a lab", description="Show a lab's hosts, namespaces, addresses and whether its services are alive. Exit status 0 when everything is up, 1 when something is missing.", epilog="examples:\n  portkit lab status nat-pat\n  portkit lab status nat-pat --json")
    st.add_argument("name", metavar="NAME")
    add_output_options(st)
    st.set_defaults(func=run_status)

    ex = subparser(
        acts,
        "exec",
        help="run a command inside a lab host",
        description="Run CMD inside HOST's namespace (names resolve from the lab's hosts file) and exit with its status. 'portkit' as CMD runs this same portkit.",
        epilog="examples:\n  sudo portkit lab exec nat-pat client1 -- portkit check server:80\n"
        "  sudo portkit lab exec nat-pat router -- portkit nat\n"
        "  sudo portkit lab exec port-forward router -- portkit forward 0.0.0.0:9090:10.0.30.2:2988\n"
        "The command replaces this process (as 'ip netns exec' does): signals reach it directly.",
    )
    ex.add_argument("name", metavar="NAME")
    ex.add_argument("host", metavar="HOST")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")
    ex.set_defaults(func=run_exec)


def _no_action(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _lab_name(arg: str) -> str:
    """A lab name, or the name of the lab a scenario file describes."""
    if arg.endswith((".yaml", ".yml")) and os.path.exists(arg):
        from portkit.ops.lab import lab_load

        return lab_load(arg).name
    return arg


def run_up(args: argparse.Namespace) -> int:
    from portkit.ops.lab import lab_up
    from portkit.render.jsonout import document
    from portkit.render.lab import render_result
    from portkit.render.output import Output

    out = Output.from_args(args)
    result = lab_up(args.file, name=args.name, backend=args.backend)
    if out.json:
        out.emit_json(document(lab=result))
    else:
        out.write(render_result(result, color=out.color))
    return 0


def run_down(args: argparse.Namespace) -> int:
    from portkit.ops.lab import lab_down
    from portkit.render.jsonout import document
    from portkit.render.lab import render_result
    from portkit.render.output import Output

    out = Output.from_args(args)
    results = [lab_down(_lab_name(n)) for n in args.names]
    if out.json:
        out.emit_json(document(labs=results))
    else:
        out.write("\n".join(render_result(r, color=out.color) for r in results))
    return 0


def run_ls(args: argparse.Namespace) -> int:
    from portkit.ops.lab import lab_ls
    from portkit.render.jsonout import document
    from portkit.render.lab import render_ls
    from portkit.render.output import Output

    out = Output.from_args(args)
    labs = lab_ls()
    if out.json:
        out.emit_json(document(labs=labs))
    else:
        out.write(render_ls(labs, color=out.color))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from portkit.ops.lab import lab_status
    from portkit.render.jsonout import document
    from portkit.render.lab import render_status
    from portkit.render.output import Output

    out = Output.from_args(args)
    st = lab_status(args.name)
    if out.json:
        out.emit_json(document(lab=st))
    else:
        out.write(render_status(st, color=out.color))
    return 0 if st.state == "up" else 1


def run_exec(args: argparse.Namespace) -> int:
    from portkit.ops.lab import lab_exec

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return lab_exec(args.name, args.host, cmd, replace=True)
