"""Policy -> nftables script for the table ``inet portkit``. Deterministic.

Theory of operation. The script replaces the whole table in one transaction::

    table inet portkit          # create it if missing, so the delete cannot fail
    delete table inet portkit   # drop the old rules ...
    table inet portkit { ... }  # ... and load the new ones, all in one nft -f batch

so there is never a moment with the old rules gone and the new ones not yet in. Each chain
follows the order :mod:`portkit.engine.policy` evaluates: established/related, loopback,
essential ICMP, the rules, the default. A rule whose addresses mix IPv4 and IPv6 becomes
one nft rule per family (nft sets hold one address family).

Reject: TCP gets ``reject with tcp reset`` (the client sees "connection refused" at once);
everything else ``reject with icmpx type admin-prohibited``. ``log: true`` logs with the
prefix ``portkit <dir> #<n> <action>: ``; ``log_default`` logs the default drop/reject.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from portkit.engine.policy import ESSENTIAL_ICMP, ESSENTIAL_ICMPV6, rule_text
from portkit.model.firewall import Policy, PolicyRule

TABLE = "portkit"
FAMILY = "inet"
_VERDICT = {"allow": "accept", "deny": "drop"}
_REJECT_TCP = "reject with tcp reset"
_REJECT_OTHER = "reject with icmpx type admin-prohibited"


def _set(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _quote(text: str, limit: int = 120) -> str:
    """A quoted nft string of at most ``limit`` UTF-8 bytes (nft counts bytes: comments take
    128, log prefixes 127), cut on a character boundary."""
    clean = "".join(ch if ch.isprintable() and ch not in "\"\\" else "'" if ch == '"' else " " for ch in text)
    cut = clean.encode()[:limit].decode(errors="ignore")
    return f'"{cut}"'


def _family_variants(rule: PolicyRule) -> list[tuple[int | None, list[str], list[str]]]:
    """[(family or None, sources, destinations)] - one entry per nft rule needed."""
    srcs = {4: [s for s in rule.sources if ipaddress.ip_network(s).version == 4],
            6: [s for s in rule.sources if ipaddress.ip_network(s).version == 6]}  # fmt: skip
    dsts = {4: [d for d in rule.destinations if ipaddress.ip_network(d).version == 4],
            6: [d for d in rule.destinations if ipaddress.ip_network(d).version == 6]}  # fmt: skip
    fams = [4, 6]
    if rule.family == "ipv4" or rule.proto == "icmp":
        fams = [4]
    elif rule.family == "ipv6" or rule.proto == "icmpv6":
        fams = [6]
    out: list[tuple[int | None, list[str], list[str]]] = []
    if not rule.sources and not rule.destinations:
        if fams == [4, 6]:
            return [(None, [], [])]
        return [(fams[0], [], [])]
    for f in fams:
        if rule.sources and not srcs[f]:
            continue
        if rule.destinations and not dsts[f]:
            continue
        out.append((f, srcs[f], dsts[f]))
    return out


def rule_lines(rule: PolicyRule, number: int) -> list[str]:
    """The nft rule lines for policy rule ``number`` (1-based)."""
    lines: list[str] = []
    comment = f"comment {_quote(f'portkit #{number}: {rule.comment or rule_text(rule)}')}"
    log = f"log prefix {_quote(f'portkit {rule.direction} #{number} {rule.action}: ', 64)} " if rule.log else ""
    for fam, srcs, dsts in _family_variants(rule):
        m: list[str] = []
        ipk = "ip" if fam == 4 else "ip6"
        if fam is not None and not srcs and not dsts and rule.proto not in ("icmp", "icmpv6"):
            m.append(f"meta nfproto ipv{fam}")
        if srcs:
            m.append(f"{ipk} saddr {_set(srcs)}")
        if dsts:
            m.append(f"{ipk} daddr {_set(dsts)}")
        if rule.interface:
            m.append(f'{"iifname" if rule.direction == "in" else "oifname"} "{rule.interface}"')
        ports = [str(p) for p in rule.ports]
        if rule.proto in ("tcp", "udp"):
            m.append(f"{rule.proto} dport {_set(ports)}" if ports else f"meta l4proto {rule.proto}")
        elif rule.proto == "icmp":
            m.append("meta l4proto icmp")
        elif rule.proto == "icmpv6":
            m.append("meta l4proto ipv6-icmp")
        elif ports:
            m.append(f"meta l4proto {{ tcp, udp }} th dport {_set(ports)}")
        base = " ".join(m)
        if rule.action == "reject":
            if rule.proto == "tcp":
                lines.append(f"{base} {log}{_REJECT_TCP} {comment}")
            elif rule.proto == "any":
                lines.append(f"{base} meta l4proto tcp {log}{_REJECT_TCP} {comment}".lstrip())
                lines.append(f"{base} {log}{_REJECT_OTHER} {comment}")
            else:
                lines.append(f"{base} {log}{_REJECT_OTHER} {comment}")
        else:
            lines.append(f"{base} {log}{_VERDICT[rule.action]} {comment}")
    return [ln.strip() for ln in lines]


def _default_lines(action: str, direction: str, log: bool) -> list[str]:
    if action == "allow":
        return []
    prefix = f"log prefix {_quote(f'portkit {direction} default {action}: ', 64)} " if log else ""
    tag = f"comment {_quote(f'portkit default {direction} {action}')}"
    if action == "deny":
        return [f"{prefix}drop {tag}"] if log else []
    return [f"meta l4proto tcp {prefix}{_REJECT_TCP} {tag}", f"{prefix}{_REJECT_OTHER} {tag}"]


def _essential(policy: Policy) -> list[str]:
    if not policy.essential_icmp:
        return []
    return [
        f"icmp type {{ {', '.join(ESSENTIAL_ICMP)} }} accept comment \"portkit essential icmp\"",
        f"icmpv6 type {{ {', '.join(ESSENTIAL_ICMPV6)} }} accept comment \"portkit essential icmpv6\"",
    ]


def _comment_text(text: str) -> str:
    """``text`` made safe for one nft comment line: no control characters, so nothing after
    a newline can become a statement (defence in depth: paths are checked before this)."""
    return "".join(c if c.isprintable() else "?" for c in text)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """The script that replaces table ``inet portkit``, and how many nft rules it loads
    (every rule line of its chains; the chains' ``type ... hook`` lines are not rules)."""

    script: str
    rules: int


def compile_ruleset(policy: Policy, *, source: str | None = None) -> CompiledPolicy:
    """The nft script that replaces table ``inet portkit`` with ``policy``, and its rule count."""
    rules = 0
    out = [
        f"# generated by portkit from {_comment_text(source or 'a policy')}; edit the policy, not this script",
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
    ]
    for direction, hook, default in (("in", "input", policy.default_in), ("out", "output", policy.default_out)):
        chain_policy = "accept" if default == "allow" else "drop"
        out.append(f"\tchain {hook} {{")
        out.append(f"\t\ttype filter hook {hook} priority filter; policy {chain_policy};")
        chain = ["ct state established,related accept"]
        if direction == "in":
            chain.append("ct state invalid drop")
        chain.append(f'{"iifname" if direction == "in" else "oifname"} "lo" accept')
        chain.extend(_essential(policy))
        for number, rule in enumerate(policy.rules, 1):
            if rule.direction == direction:
                chain.extend(rule_lines(rule, number))
        chain.extend(_default_lines(default, direction, policy.log_default))
        out.extend(f"\t\t{ln}" for ln in chain)
        rules += len(chain)
        out.append("\t}")
    out.append("}")
    return CompiledPolicy("\n".join(out) + "\n", rules)


def compile_policy(policy: Policy, *, source: str | None = None) -> str:
    """The nft script (text) that replaces table ``inet portkit`` with ``policy``."""
    return compile_ruleset(policy, source=source).script


def restore_script(previous_table_text: str | None) -> str:
    """The script that puts back the previous ``inet portkit`` table (or removes ours)."""
    lines = [f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}"]
    if previous_table_text and previous_table_text.strip():
        lines.append(previous_table_text.strip())
    return "\n".join(lines) + "\n"
