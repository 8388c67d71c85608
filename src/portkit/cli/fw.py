"""``portkit fw ...``: the firewall policy (like ufw), packet checks, safe apply, live view."""

from __future__ import annotations

import argparse
import os
from typing import Any

from portkit.cli.common import (
    Parser,
    add_output_options,
    iface_arg,
    iface_pattern_arg,
    number_arg,
    path_arg,
    proto_arg,
    subparser,
)
from portkit.errors import ExitCode, InputError, Undetermined

DESCRIPTION = """\
Manage portkit's firewall policy (a YAML file, default /etc/portkit/policy.yaml), compile
it to nftables (table inet portkit), apply it atomically with an automatic rollback, and
explain what the LIVE ruleset (all tables: iptables-nft, Docker, firewalld too) does to a
packet. Inbound is closed and outbound open by default; replies, loopback and essential
ICMP always pass.
"""

EPILOG = """\
examples:
  portkit fw allow 22/tcp --from 10.0.0.0/8      append a rule (like ufw)
  portkit fw insert 1 deny 23                    insert as rule number 1
  portkit fw list                                numbered rules, shadowed-rule warnings
  portkit fw check --in --proto tcp --src 192.0.2.1 --dst 10.0.0.5 --dport 80
  portkit fw apply --confirm 60                  roll back in 60 s unless 'fw confirm'
  portkit fw show                                every table, per hook, in kernel order
Every command takes --policy FILE and --netns NAME (work inside an 'ip netns' namespace).
"""


DEFAULT_POLICY = "/etc/portkit/policy.yaml"  # == portkit.ops.firewall.DEFAULT_POLICY (kept light for start-up)

EXAMPLES = {
    "allow": """\
examples:
  portkit fw allow ssh                               tcp and udp 22 from anywhere
  portkit fw allow 443/tcp --from 10.0.0.0/8 --from 2001:db8::/32
  portkit fw allow 8000-8100/udp --on eth1 --comment "game servers"
  portkit fw allow 53/udp --out --to 192.0.2.53      (outbound is open by default)""",
    "deny": """\
examples:
  portkit fw deny 23                                 drop telnet silently
  portkit fw deny --from 198.51.100.0/24 --log       drop everything from a network, logged""",
    "reject": """\
examples:
  portkit fw reject 25/tcp --out                     refuse outgoing SMTP at once (tcp reset)
  portkit fw reject 3306 --from 0.0.0.0/0""",
    "insert": """\
examples:
  portkit fw insert 1 deny 22 --from 203.0.113.7     before the rule that allows ssh""",
    "delete": """\
examples:
  portkit fw list && portkit fw delete 3""",
    "list": """\
examples:
  portkit fw list --policy ./policy.yaml --json""",
    "check": """\
examples:
  portkit fw check --in --proto tcp --src 192.0.2.1 --dst 10.0.0.5 --dport 22
  portkit fw check --out --proto udp --src 10.0.0.5 --dst 192.0.2.53 --dport 53 --json
  portkit fw check --forward --src 192.0.2.1 --dst 172.17.0.2 --dport 80 --iif eth0 --oif docker0
  portkit fw check --policy ./policy.yaml --src 10.1.2.3 --dst 10.0.0.5 --dport 443
  portkit fw check --netns pk-lab-server --src 10.0.1.2 --dst 10.0.2.2 --dport 80
exit status: 0 accept, 1 drop or reject, 5 unknown (an expression portkit cannot evaluate), 2 bad input""",
    "apply": """\
examples:
  portkit fw compile | less                          read the script first
  portkit fw apply --confirm 60 && portkit fw confirm
  portkit fw apply --policy ./policy.yaml --netns pk-lab-server""",
    "show": """\
examples:
  portkit fw show                                    every table, also iptables-nft/Docker/firewalld
  portkit fw show --netns pk-lab-router --json""",
    "reset": """\
examples:
  portkit fw reset --netns pk-lab-server             other tables (Docker, portkit_forward) stay""",
    "enable": """\
examples:
  portkit fw enable --policy /etc/portkit/policy.yaml && systemctl status portkit-firewall""",
}


RULE_NUMBER = number_arg("rule number", 1, 100_000, integer=True)
PACKET_PORT = number_arg("port", 0, 65535, integer=True)
CHECK_PROTO = proto_arg(("tcp", "udp", "sctp", "udplite", "dccp", "icmp", "icmpv6", "ipv6-icmp"), numbers=True)
CONFIRM_SECONDS = number_arg("confirmation timeout", 1, 86400, unit="seconds")


def _common(p: argparse.ArgumentParser, *, json: bool = True) -> None:
    p.add_argument("--policy", metavar="FILE", type=path_arg, default=None, help=f"the policy file (default {DEFAULT_POLICY})")
    p.add_argument("--netns", metavar="NAME", help="work inside the named network namespace ('ip netns' name)")
    if json:
        add_output_options(p)


def _rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]", help="22, 22/tcp, 8000-8100/udp, ssh, icmp, any (default: any)")
    d = p.add_mutually_exclusive_group()
    d.add_argument("--in", dest="direction", action="store_const", const="in", default="in", help="inbound (default)")
    d.add_argument("--out", dest="direction", action="store_const", const="out", help="outbound")
    p.add_argument("--from", dest="sources", action="append", default=[], metavar="CIDR", help="source address/CIDR (repeatable)")
    p.add_argument("--to", dest="destinations", action="append", default=[], metavar="CIDR", help="destination address/CIDR (repeatable)")
    p.add_argument("--on", dest="interface", type=iface_pattern_arg, metavar="IF", help="interface (input interface for --in, output for --out)")
    p.add_argument("--log", action="store_true", help="log matching packets with a portkit prefix")
    p.add_argument("--comment", help="a comment stored with the rule")
    _common(p)


def register(sub: Any) -> None:
    p = subparser(sub, "fw", help="firewall policy, packet check, safe apply, live ruleset", description=DESCRIPTION, epilog=EPILOG)
    p.set_defaults(func=lambda args: _usage(p))
    fsub = p.add_subparsers(dest="fw_command", metavar="ACTION", parser_class=Parser)
    for action, what in (("allow", "accept"), ("deny", "drop silently"), ("reject", "refuse at once")):
        a = subparser(
            fsub, action, help=f"append a rule that will {what}",
            description=f"Append a rule to the policy that will {what} matching new connections.", epilog=EXAMPLES[action],
        )  # fmt: skip
        _rule_options(a)
        a.set_defaults(func=run_edit, op="append", action=action)
    ins = subparser(fsub, "insert", help="insert a rule at position N", description="Insert a rule so it becomes rule number N.", epilog=EXAMPLES["insert"])
    ins.add_argument("number", type=RULE_NUMBER, metavar="N")
    ins.add_argument("action", choices=("allow", "deny", "reject"))
    _rule_options(ins)
    ins.set_defaults(func=run_edit, op="insert")
    dl = subparser(fsub, "delete", help="delete rule number N", description="Delete rule number N (see 'fw list').", epilog=EXAMPLES["delete"])
    dl.add_argument("number", type=RULE_NUMBER, metavar="N")
    _common(dl)
    dl.set_defaults(func=run_edit, op="delete", action=None, port=None, direction="in", sources=[], destinations=[], interface=None, log=False, comment=None)
    ls = subparser(fsub, "list", help="the policy's numbered rules", description="List the policy's rules, numbered, with shadowed-rule warnings.", epilog=EXAMPLES["list"])
    _common(ls)
    ls.set_defaults(func=run_list)
    ck = subparser(
        fsub, "check", help="the verdict for one packet, and the rule that decides it",
        description="The verdict for the first packet of a new connection, with no packet sent: against the live ruleset "
        "(default) or a policy file (--policy). Exit status 0 accept, 1 drop or reject, 5 unknown.",
        epilog=EXAMPLES["check"],
    )  # fmt: skip
    h = ck.add_mutually_exclusive_group()
    h.add_argument("--in", dest="hook", action="store_const", const="in", default="in", help="an inbound packet (default)")
    h.add_argument("--out", dest="hook", action="store_const", const="out", help="an outbound packet")
    h.add_argument("--forward", dest="hook", action="store_const", const="forward", help="a routed packet")
    ck.add_argument("--proto", default="tcp", type=CHECK_PROTO, help="tcp (default), udp, sctp, icmp, icmpv6")
    ck.add_argument("--src", required=True, metavar="ADDR")
    ck.add_argument("--dst", required=True, metavar="ADDR")
    ck.add_argument("--dport", type=PACKET_PORT, metavar="N")
    ck.add_argument("--sport", type=PACKET_PORT, metavar="N")
    ck.add_argument("--iif", type=iface_arg, metavar="IF", help="input interface (default: the route towards --src)")
    ck.add_argument("--oif", type=iface_arg, metavar="IF", help="output interface (default: the route towards --dst)")
    _common(ck)
    ck.set_defaults(func=run_check)
    for name, helptext, func in (
        ("compile", "print the nftables script for the policy", run_compile),
        ("confirm", "keep the rules applied with --confirm (stop the rollback)", run_confirm),
        ("status", "is the policy loaded, in sync, pending rollback, applied at boot", run_status),
        ("reset", "remove portkit's table (only table inet portkit)", run_reset),
        ("enable", "apply the policy at boot (installs portkit-firewall.service)", run_enable),
        ("disable", "stop applying the policy at boot (removes the unit)", run_disable),
        ("show", "the live ruleset, every table, per hook in kernel order", run_show),
    ):
        sp = subparser(fsub, name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".", epilog=EXAMPLES.get(name))
        _common(sp)
        sp.set_defaults(func=func)
    ap = subparser(
        fsub, "apply", help="load the policy atomically (one nft transaction)",
        description="Load the policy as table inet portkit in one transaction, keeping the previous table. "
        "With --confirm SECONDS the previous rules come back unless 'portkit fw confirm' comes in time. "
        "Over SSH, refuses a policy that would not let this session's port in, unless --force.",
        epilog=EXAMPLES["apply"],
    )  # fmt: skip
    ap.add_argument("--confirm", type=CONFIRM_SECONDS, metavar="SECONDS", help="roll back after SECONDS unless confirmed")
    ap.add_argument("--force", action="store_true", help="apply even if it would lock out this SSH session")
    _common(ap)
    ap.set_defaults(func=run_apply)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return int(ExitCode.BAD_INPUT)


def _policy(args: argparse.Namespace) -> str:
    return str(DEFAULT_POLICY if args.policy is None else args.policy)


def _check_unused(args: argparse.Namespace, *, policy: bool = False, netns: bool = False) -> None:
    """A verb that does not use its --policy (``policy``) or --netns (``netns``) still
    refuses one that names no valid policy file or no namespace (exit 2), before it does
    anything: no option is accepted unchecked."""
    if policy and args.policy is not None:
        from portkit.ops.firewall import load_policy_file

        load_policy_file(args.policy)
    if netns and args.netns is not None:
        from portkit.ops.firewall_policy import check_netns

        check_netns(args.netns)


def _out(args: argparse.Namespace) -> Any:
    from portkit.render.output import Output

    return Output.from_args(args)


def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    from portkit.render.jsonout import document, json_fields

    out = _out(args)
    if out.json:
        payload = {name: getattr(obj, name) for name in json_fields(type(obj))}
        out.emit_json(document(**payload))
    else:
        out.write(text)


def run_edit(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import edit_policy
    from portkit.render.firewall import render_policy

    if args.op == "insert" and args.number < 1:
        raise InputError(f"bad rule number {args.number}; rule numbers start at 1")
    _check_unused(args, netns=True)
    listing = edit_policy(
        _policy(args), op=args.op, action=args.action, port=args.port, direction=args.direction,
        sources=tuple(args.sources), destinations=tuple(args.destinations), interface=args.interface,
        log=args.log, comment=args.comment, number=getattr(args, "number", None),
    )  # fmt: skip
    _emit(args, listing, render_policy(listing, color=_out(args).color))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import list_policy
    from portkit.render.firewall import render_policy

    _check_unused(args, netns=True)
    listing = list_policy(_policy(args))
    _emit(args, listing, render_policy(listing, color=_out(args).color))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from portkit.ops.fwcheck import check_packet
    from portkit.render.firewall import render_check

    result = check_packet(
        hook=args.hook, proto=args.proto, src=args.src, dst=args.dst, dport=args.dport, sport=args.sport,
        iif=args.iif, oif=args.oif, netns=args.netns, policy_file=args.policy,
    )  # fmt: skip
    _emit(args, result, render_check(result, color=_out(args).color))
    if result.verdict not in ("accept", "drop", "reject"):
        raise Undetermined(f"no verdict for this packet: {result.reason or 'the ruleset cannot be evaluated for it'}")
    return 0 if result.verdict == "accept" else 1


def run_compile(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import compile_policy_file
    from portkit.render.jsonout import document

    _check_unused(args, netns=True)
    script = compile_policy_file(_policy(args))
    out = _out(args)
    if out.json:
        out.emit_json(document(policy=_policy(args), script=script))
    else:
        out.stream.write(script)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import apply_policy
    from portkit.render.firewall import render_apply

    result = apply_policy(_policy(args), netns=args.netns, confirm=args.confirm, force=args.force)
    _emit(args, result, render_apply(result, color=_out(args).color))
    return 0


def run_confirm(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import confirm_apply
    from portkit.render.jsonout import document

    _check_unused(args, policy=True)
    ok = confirm_apply(netns=args.netns)
    out = _out(args)
    if out.json:
        out.emit_json(document(confirmed=ok))
    else:
        out.write("confirmed: the applied rules stay" if ok else "nothing to confirm: no rollback is pending (it may have fired already; see 'fw status')")
    return 0 if ok else 1


def run_status(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import firewall_status
    from portkit.render.firewall import render_status

    _check_unused(args, policy=True)
    st = firewall_status(_policy(args), netns=args.netns)
    _emit(args, st, render_status(st, color=_out(args).color))
    return 0


def run_reset(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import reset_firewall
    from portkit.render.jsonout import document

    _check_unused(args, policy=True)
    removed = reset_firewall(netns=args.netns)
    out = _out(args)
    if out.json:
        out.emit_json(document(removed=removed))
    else:
        out.write("removed table inet portkit" if removed else "table inet portkit is not loaded: nothing to remove")
    return 0 if removed else 1


def run_enable(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import enable_boot
    from portkit.render.jsonout import document

    path = enable_boot(os.path.abspath(_policy(args)), netns=args.netns)
    out = _out(args)
    if out.json:
        out.emit_json(document(unit=path, enabled=True))
    else:
        out.write(f"installed {path}: the policy is applied at boot")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import disable_boot
    from portkit.render.jsonout import document

    _check_unused(args, policy=True)
    removed = disable_boot(netns=args.netns)
    out = _out(args)
    if out.json:
        out.emit_json(document(enabled=False, removed=removed))
    else:
        out.write("removed portkit-firewall.service" if removed else "portkit-firewall.service was not installed")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from portkit.ops.firewall import show_ruleset
    from portkit.render.firewall import render_view

    _check_unused(args, policy=True)
    view = show_ruleset(netns=args.netns)
    _emit(args, view, render_view(view, color=_out(args).color))
    return 0
