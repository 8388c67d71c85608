"""The portkit policy's own semantics: verdicts, shadowed rules, edits.

Theory of operation. A policy is judged for the first packet of a new connection in a fixed
order, the same order :mod:`portkit.engine.nftcompile` writes into the ``inet portkit``
table: (1) replies of allowed connections pass (``ct state established,related``; never
the case for a new connection), (2) loopback passes, (3) essential ICMP/ICMPv6 (errors,
neighbour discovery) passes unless ``essential_icmp: false``, (4) the rules of the packet's
direction, first match wins, (5) the default action of that direction. The verdict of this
module and the verdict of the compiled ruleset walked by :mod:`portkit.engine.nfteval` must
agree; a property test holds them together.

A packet whose input interface is not given is taken as not arriving on loopback unless its
source is a loopback address; a rule naming an interface then cannot be decided (unknown).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from portkit.model.firewall import (
    DecidedBy,
    FwCheckResult,
    Packet,
    Policy,
    PolicyRule,
    PolicyWarning,
    PortRange,
    TraceStep,
)

ACTION_VERDICT = {"allow": "accept", "deny": "drop", "reject": "reject"}
ESSENTIAL_ICMP = ("destination-unreachable", "time-exceeded", "parameter-problem")
ESSENTIAL_ICMPV6 = (
    "destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
    "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert",
    "mld-listener-query", "mld-listener-report", "mld2-listener-report",
)  # fmt: skip


def rule_text(rule: PolicyRule) -> str:
    """One line, ufw-like: ``allow in tcp 22,80 from 10.0.0.0/8 on eth0 log # comment``."""
    parts = [rule.action, rule.direction, rule.proto]
    if rule.ports:
        texts = rule.port_text if len(rule.port_text) == len(rule.ports) else tuple(str(p) for p in rule.ports)
        parts.append(",".join(texts))
    if rule.family != "any":
        parts.append(rule.family)
    if rule.sources:
        parts.append("from " + ",".join(rule.sources))
    if rule.destinations:
        parts.append("to " + ",".join(rule.destinations))
    if rule.interface:
        parts.append(f"on {rule.interface}")
    if rule.log:
        parts.append("log")
    if rule.comment:
        parts.append(f"# {rule.comment}")
    return " ".join(parts)


def _proto(p: Packet) -> str:
    proto = p.proto.lower()
    if proto in ("icmp", "icmpv6", "ipv6-icmp"):
        return "icmp" if p.family == 4 else "icmpv6"
    return proto


def _in_nets(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: tuple[str, ...]) -> bool:
    for n in nets:
        net = ipaddress.ip_network(n)
        if net.version == addr.version and addr in net:
            return True
    return False


def rule_matches(rule: PolicyRule, p: Packet) -> bool | None:
    """True/False, or None when the packet lacks a field the rule needs (its interface)."""
    if rule.direction != p.hook:
        return False
    if rule.family != "any" and rule.family != f"ipv{p.family}":
        return False
    proto = _proto(p)
    if rule.proto in ("tcp", "udp", "icmp", "icmpv6") and proto != rule.proto:
        return False
    if rule.ports:
        if proto not in ("tcp", "udp") or p.dport is None:
            return False
        if not any(r.contains(p.dport) for r in rule.ports):
            return False
    if rule.sources and not _in_nets(p.src, rule.sources):
        return False
    if rule.destinations and not _in_nets(p.dst, rule.destinations):
        return False
    if rule.interface:
        dev = p.iif if p.hook == "in" else p.oif
        if dev is None:
            return None
        if rule.interface.endswith("*"):
            return dev.startswith(rule.interface[:-1])
        return dev == rule.interface
    return True


def _is_loopback(p: Packet) -> bool:
    dev = p.iif if p.hook == "in" else p.oif
    if dev is not None:
        return dev == "lo"
    return p.src.is_loopback if p.hook == "in" else p.dst.is_loopback


def evaluate_policy(policy: Policy, p: Packet) -> FwCheckResult:
    """The policy's verdict for ``p``; ``decided_by`` names table ``policy``, chain in/out."""
    if p.hook == "forward":
        return FwCheckResult("accept", "forward", None, (), None, None)
    chain = p.hook

    def done(verdict: str, handle: int | None, text: str, trace: list[TraceStep]) -> FwCheckResult:
        trace.append(TraceStep("policy", chain, text, verdict))
        return FwCheckResult(verdict, p.hook, DecidedBy("policy", chain, handle, text), tuple(trace), None, None)

    trace: list[TraceStep] = []
    if _is_loopback(p):
        return done("accept", None, "loopback traffic passes", trace)
    proto = _proto(p)
    if policy.essential_icmp and proto in ("icmp", "icmpv6"):
        essential = ESSENTIAL_ICMP if proto == "icmp" else ESSENTIAL_ICMPV6
        if (p.icmp_type or "echo-request") in essential:
            return done("accept", None, f"essential {proto} passes", trace)
    for number, rule in enumerate(policy.rules, 1):
        hit = rule_matches(rule, p)
        if hit is None:
            return FwCheckResult(
                "unknown",
                p.hook,
                DecidedBy("policy", chain, number, rule_text(rule)),
                tuple(trace),
                None,
                f"rule {number} names interface {rule.interface} but the packet's interface is not given",
            )
        if hit:
            return done(ACTION_VERDICT[rule.action], number, rule_text(rule), trace)
    default = policy.default_in if chain == "in" else policy.default_out
    return done(ACTION_VERDICT[default], None, f"default {default}", trace)


# --------------------------------------------------------------------------- shadowing


def _ports_cover(outer: tuple[PortRange, ...], inner: tuple[PortRange, ...]) -> bool:
    if not outer:
        return True
    if not inner:
        return False
    for r in inner:
        lo = r.lo
        while lo <= r.hi:
            nxt = next((o for o in outer if o.lo <= lo <= o.hi), None)
            if nxt is None:
                return False
            lo = nxt.hi + 1
    return True


def _nets_cover(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    if not outer:
        return True
    if not inner:
        return False
    outs = [ipaddress.ip_network(o) for o in outer]
    for i in inner:
        n = ipaddress.ip_network(i)
        if not any(o.version == n.version and n.subnet_of(o) for o in outs):  # type: ignore[arg-type]
            return False
    return True


def covers(a: PolicyRule, b: PolicyRule) -> bool:
    """Does rule ``a`` match every packet rule ``b`` matches?"""
    if a.direction != b.direction:
        return False
    if a.family != "any" and a.family != b.family:
        # b may still be restricted to a's family by its addresses
        fams = {ipaddress.ip_network(n).version for n in (*b.sources, *b.destinations)}
        if fams != {4 if a.family == "ipv4" else 6}:
            return False
    if a.proto != "any":
        if a.proto != b.proto:
            return False
    elif a.ports and b.proto not in ("tcp", "udp", "any"):
        return False
    if a.ports and not _ports_cover(a.ports, b.ports):
        return False
    if (
        a.interface
        and a.interface != b.interface
        and not (a.interface.endswith("*") and b.interface and b.interface.startswith(a.interface[:-1]))
    ):
        return False
    return _nets_cover(a.sources, b.sources) and _nets_cover(a.destinations, b.destinations)


def shadowed_rules(policy: Policy) -> tuple[PolicyWarning, ...]:
    """Rules that can never match because an earlier rule matches all their packets."""
    out: list[PolicyWarning] = []
    for j, b in enumerate(policy.rules):
        for i in range(j):
            a = policy.rules[i]
            if covers(a, b):
                how = "is redundant" if a.action == b.action else "never matches"
                out.append(
                    PolicyWarning(
                        b.line,
                        j + 1,
                        f"rule {j + 1} ({rule_text(b)}) {how}: rule {i + 1} ({rule_text(a)}) matches every packet it would",
                    )
                )
                break
    return tuple(out)


# --------------------------------------------------------------------------- edits


def add_rule(policy: Policy, rule: PolicyRule, *, position: int | None = None) -> Policy:
    """Append ``rule``, or insert it so it becomes rule number ``position`` (1-based)."""
    rules = list(policy.rules)
    if position is None:
        rules.append(rule)
    else:
        if not 1 <= position <= len(rules) + 1:
            raise IndexError(f"rule number {position} is out of range; valid: 1-{len(rules) + 1}")
        rules.insert(position - 1, rule)
    return replace(policy, rules=tuple(rules))


def delete_rule(policy: Policy, number: int) -> Policy:
    if not 1 <= number <= len(policy.rules):
        valid = f"1-{len(policy.rules)}" if policy.rules else "none (the policy has no rules)"
        raise IndexError(f"no rule number {number}; valid: {valid}")
    rules = list(policy.rules)
    del rules[number - 1]
    return replace(policy, rules=tuple(rules))
