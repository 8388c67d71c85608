"""portkit.api functions for the firewall domain: policy edits, check, compile, apply, show.

Every function that touches the kernel takes ``netns`` (an ``ip netns`` name) so tests and
labs work inside namespaces only. Policy files default to /etc/portkit/policy.yaml; one
that does not exist yet reads as the defaults (inbound deny, outbound allow).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from portkit.backends import host
from portkit.backends.nftlive import decoded_nat, live_ruleset, live_ruleset_json, read_live
from portkit.engine.nfteval import Evaluator
from portkit.engine.nftview import list_dnat, ruleset_view
from portkit.engine.policy import add_rule, delete_rule, shadowed_rules
from portkit.errors import InputError, PrivilegeError, SystemRefused, map_file_error
from portkit.model.firewall import (
    DnatEntry,
    NftRuleset,
    Packet,
    Policy,
    PolicyListing,
    PortRange,
    RulesetView,
)
from portkit.ops.firewall_apply import (  # the apply side, re-exported as part of this domain's API
    UNIT_DIR,
    UNIT_NAME,
    apply_policy,
    check_file_mode,
    compile_policy_file,
    confirm_apply,
    disable_boot,
    enable_boot,
    firewall_status,
    forget_state,
    reset_firewall,
    ssh_lockout,
    unit_text,
)
from portkit.ops.firewall_policy import DEFAULT_POLICY, load_policy_file, policy_services
from portkit.ops.fwcheck import check_packet, local_ip_addresses, parse_address
from portkit.ops.fwcheck import make_packet as make_packet

__all__ = [
    "DEFAULT_POLICY",
    "UNIT_DIR",
    "UNIT_NAME",
    "annotate_inbound",
    "apply_policy",
    "check_file_mode",
    "check_packet",
    "compile_policy_file",
    "confirm_apply",
    "disable_boot",
    "dnat_published",
    "edit_policy",
    "enable_boot",
    "firewall_status",
    "forget_state",
    "list_policy",
    "live_ruleset",
    "load_policy_file",
    "reset_firewall",
    "show_ruleset",
    "ssh_lockout",
    "unit_text",
]

if TYPE_CHECKING:
    from portkit.model.sockets import SocketTable

# --------------------------------------------------------------------------- policy files


def _make_policy_dir(d: str) -> None:
    """Create the policy file's missing directories 0755 whatever the umask (a 0777
    /etc/portkit would let anyone swap the policy root loads); existing ones stay as they are."""
    missing: list[str] = []
    p = d
    while p and not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for m in reversed(missing):
        os.mkdir(m, 0o755)
        os.chmod(m, 0o755)


def _save(path: str, policy: Policy) -> None:
    from portkit.parse.policy_yaml import dump_policy

    d = os.path.dirname(os.path.abspath(path))
    try:
        _make_policy_dir(d)
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=d, prefix=".policy-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(dump_policy(policy))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        raise map_file_error(exc, path, "policy file", writing=True) from exc


@contextlib.contextmanager
def _edit_lock(path: str) -> Iterator[None]:
    """Serialise read-modify-write edits of one policy file (two ``fw allow`` at once must
    not lose a rule): an flock on the file's directory, which the atomic replace keeps."""
    import fcntl

    d = os.path.dirname(os.path.abspath(path))
    try:
        _make_policy_dir(d)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise map_file_error(exc, path, "policy file", writing=True) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def list_policy(path: str = DEFAULT_POLICY, *, missing_ok: bool | None = None) -> PolicyListing:
    p = load_policy_file(path, missing_ok=missing_ok)
    return PolicyListing(path, os.path.exists(path), p.default_in, p.default_out, p.essential_icmp, p.rules, shadowed_rules(p))


def parse_port_arg(text: str | None) -> tuple[str, tuple[PortRange, ...], tuple[str, ...]]:
    """``22``, ``22/tcp``, ``8000-8100/udp``, ``ssh``, ``icmp``, ``any`` -> (proto, ports, texts)."""
    from portkit.parse.policy_yaml import rule_from_values

    if text is None or text == "any":
        return "any", (), ()
    if not text.strip():
        raise InputError(f"bad port {text!r}; give a port (22), a range (8000-8100), a service name, a protocol (tcp, udp, icmp) or any")
    spec, _, proto = text.partition("/")
    proto = proto.lower() or ("any" if spec[:1].isdigit() else "")
    if spec.lower() in ("tcp", "udp", "icmp", "icmpv6") and not proto:
        return spec.lower(), (), ()
    if proto not in ("tcp", "udp", "any", ""):
        raise InputError(f"bad protocol {proto!r} in {text!r}; valid: tcp, udp (icmp and icmpv6 take no port)")
    # the file's own checks and service names, on the value itself (one port, never YAML)
    try:
        rule = rule_from_values(action="allow", proto=proto or "any", ports=(spec,), services=policy_services())
    except InputError as exc:
        # the message names the value already when it is the whole argument
        raise InputError(exc.message if repr(text) in exc.message else f"bad port {text!r}: {exc.message}") from None
    return rule.proto, rule.ports, rule.port_text


def edit_policy(
    path: str = DEFAULT_POLICY,
    *,
    op: str,
    action: str | None = None,
    port: str | None = None,
    direction: str = "in",
    sources: tuple[str, ...] = (),
    destinations: tuple[str, ...] = (),
    interface: str | None = None,
    log: bool = False,
    comment: str | None = None,
    number: int | None = None,
) -> PolicyListing:
    """``op`` = append | insert | delete, like ufw. Validates the whole result before writing."""
    from portkit.parse.policy_yaml import rule_from_values

    def edited() -> Policy:
        policy = load_policy_file(path, missing_ok=True)
        if op == "delete":
            try:
                return delete_rule(policy, number or 0)
            except IndexError as exc:
                raise InputError(str(exc)) from None
        proto, _ports, texts = parse_port_arg(port)
        # checked exactly like a rule in the file (impossible rules, bad CIDRs), built from
        # the values themselves: no argument is ever read as YAML
        rule = rule_from_values(
            action=action or "allow", direction=direction, proto=proto, ports=texts, sources=sources,
            destinations=destinations, interface=interface, log=log, comment=comment, services=policy_services(),
        )  # fmt: skip
        try:
            return add_rule(policy, rule, position=number if op == "insert" else None)
        except IndexError as exc:
            raise InputError(str(exc)) from None

    # Validated once before the lock, which creates the file's directory: a refused edit
    # changes nothing on disk. Under the lock it is done again on the file as it is then.
    edited()
    with _edit_lock(path):
        _save(path, edited())
    return list_policy(path, missing_ok=True)


# --------------------------------------------------------------------------- live ruleset


def dnat_published(*, netns: str | None = None, ruleset: NftRuleset | None = None) -> tuple[DnatEntry, ...]:
    """DNAT/redirect rules of nat prerouting chains (Docker's published ports, kernel forwards)."""
    return list_dnat(ruleset if ruleset is not None else live_ruleset(netns=netns))


# --------------------------------------------------------------------------- show


def show_ruleset(*, netns: str | None = None, ruleset: NftRuleset | None = None) -> RulesetView:
    rs = ruleset if ruleset is not None else live_ruleset_json(netns=netns)
    return ruleset_view(rs)


# --------------------------------------------------------------------------- host report


OUTSIDE = {4: "192.0.2.1", 6: "2001:db8::1"}


def annotate_inbound(table: SocketTable, *, netns: str | None = None, source: str | None = None) -> SocketTable:
    """Fill ``inbound``/``inbound_rule`` of listening sockets: would a new connection from
    outside (``source``, default 192.0.2.1 / 2001:db8::1, arriving on the interface of the
    default route) pass the live ruleset? Drops the "exposed" note of ports the firewall
    blocks, and adds DNAT-published ports without a local listener as ``FORWARDED`` rows
    (``remote_address``/``remote_port`` = the target). Without privilege to read the
    ruleset, the table comes back unchanged (inbound stays null)."""
    from dataclasses import replace

    from portkit.model.sockets import SocketEntry

    try:
        rs, load_set = read_live(netns=netns)
    except (PrivilegeError, SystemRefused, InputError):
        return table
    src_override = parse_address(source, "--from") if source is not None else None
    local = local_ip_addresses(netns)
    ev = Evaluator(rs, local_addresses=local, route=lambda a: host.route_dev(str(a), netns=netns), load_set=load_set)
    addrs = host.interface_addresses(netns=netns)
    devs = {fam: host.default_route_dev(family=fam, netns=netns) for fam in (4, 6)}

    def outside_packet(fam: int, proto: str, dst: str | None, port: int) -> Packet | None:
        dev = devs[fam]
        if dev is None:
            return None
        if dst is None or ipaddress.ip_address(dst).is_unspecified:
            dst = next((a for a in addrs.get(dev, []) if ipaddress.ip_address(a).version == fam and not ipaddress.ip_address(a).is_link_local), None)
            if dst is None:
                return None
        src = src_override if src_override is not None and src_override.version == fam else ipaddress.ip_address(OUTSIDE[fam])
        return Packet("in", proto, src, ipaddress.ip_address(dst), port, None, dev)

    def verdict(p: Packet | None) -> tuple[str | None, str | None]:
        if p is None:
            return None, None
        r = ev.evaluate(p)
        rule = None
        if r.decided_by is not None:
            rule = f"{r.decided_by.table} {r.decided_by.chain}: {r.decided_by.rule}"
        elif r.verdict == "accept":
            rule = "no firewall rule applies"
        if r.verdict == "unknown" and r.reason:
            rule = r.reason
        return r.verdict, rule

    out: list[SocketEntry] = []
    blocked_all: dict[tuple[int, str], bool] = {}
    listened: set[tuple[str, int]] = set()
    for e in table.sockets:
        if e.state not in ("LISTEN", "UNCONN") or e.exposure == "loopback":
            out.append(e)
            continue
        listened.add((e.proto, e.local_port))
        fam = 6 if e.family == "ipv6" else 4
        inbound, rule = verdict(outside_packet(fam, e.proto, e.local_address, e.local_port))
        if e.exposure == "all":
            key = (e.local_port, e.proto)
            blocked_all[key] = blocked_all.get(key, True) and inbound in ("drop", "reject")
        out.append(replace(e, inbound=inbound, inbound_rule=rule))
    for d in list_dnat(decoded_nat(rs), text=ev.rule_text):
        proto = d.proto if d.proto in ("tcp", "udp") else "tcp"
        if d.dport is None or (proto, d.dport) in listened:
            continue
        try:
            fam = ipaddress.ip_address(d.target.address).version
        except ValueError:
            fam = 4
        inbound, rule = verdict(outside_packet(fam, proto, None, d.dport))
        out.append(SocketEntry(
            proto, f"ipv{fam}", "0.0.0.0" if fam == 4 else "::", d.dport, d.target.address, d.target.port,
            "FORWARDED", None, None, None, (), None, _port_class(d.dport), "all", inbound,
            rule or f"{d.table} {d.chain}: {d.rule}",
        ))  # fmt: skip
    notes = tuple(n for n in table.notes if not (n.code == "exposed-sensitive" and blocked_all.get((n.port, n.proto))))
    return replace(table, sockets=tuple(out), notes=notes)


def _port_class(port: int) -> str:
    from portkit.registry.ports import port_class

    return str(port_class(port))

