"""Kernel forwards as nftables text: DNAT (+ masquerade) in the table ``inet portkit_forward``.

Theory of operation. portkit owns the whole table, so every change re-renders it from the
list of forwards and loads it in one transaction (``table ...; delete table ...; table ...
{...}``): adding, removing and rolling back are all "load this text", never a diff, and
``fw apply``/``fw reset`` (which manage their own tables) never touch it.

Per forward, with target T:PORT and listen port L:

* ``prerouting`` (type nat, priority dstnat): packets from other hosts to L on the listen
  address (``fib daddr type local`` for 0.0.0.0/::, i.e. any address of this host) are
  DNAT'ed to T:PORT. ``--allow``/``--deny`` become ``saddr`` matches.
* ``output`` (only with ``local``): the same for this host's own connections.
* ``postrouting`` (type nat, priority srcnat): when T is on another host, flows that were
  DNAT'ed to T:PORT are masqueraded, so T answers through this host even when its default
  route points elsewhere.

Each rule carries the comment ``portkit-forward <SPEC>`` so ``forward --list`` can read
back from the kernel what is really installed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from portkit.errors import InputError, TargetError
from portkit.model.forward import ForwardSpec, KernelForward

TABLE = "portkit_forward"
FAMILY = "inet"
COMMENT_PREFIX = "portkit-forward "


def kernel_forward(
    spec: ForwardSpec, *, local: bool, target_is_local: bool, netns: str | None
) -> KernelForward:
    """Validate a SPEC for the kernel path and decide masquerade."""
    try:
        target = ipaddress.ip_address(spec.target_host)
    except ValueError:
        raise TargetError(
            f"kernel forward target {spec.target_host!r} must be an IP address (resolve it first)"
        ) from None
    bind = ipaddress.ip_address(spec.bind)
    if bind.version != target.version:
        raise InputError(
            f"cannot forward {spec.listen} (IPv{bind.version}) to {spec.target} (IPv{target.version}) "
            "in the kernel; NAT cannot change the address family (use the userspace forwarder)"
        )
    if bind.is_loopback and not local:
        raise InputError(
            f"{spec.listen} is a loopback address: only this host's own connections reach it; "
            "add --local (output hook), or listen on 0.0.0.0 / an interface address"
        )
    masq = not target_is_local and not target.is_loopback
    return KernelForward(
        spec=str(spec),
        proto=spec.proto,
        listen_port=spec.listen_port,
        target_host=str(target),
        target_port=spec.target_port,
        family=target.version,
        local=local,
        masquerade=masq,
        netns=netns,
    )


def _quote(text: str) -> str:
    return json.dumps(text)  # nft accepts a double-quoted string with JSON-style escapes


def _daddr_match(spec: ForwardSpec, ip: str) -> str:
    bind = ipaddress.ip_address(spec.bind)
    if bind.is_unspecified:
        return "fib daddr type local"
    return f"{ip} daddr {bind}"


def _saddr_matches(spec: ForwardSpec, ip: str) -> list[str]:
    out: list[str] = []
    if spec.deny:
        out.append(f"{ip} saddr != {{ {', '.join(spec.deny)} }}")
    if spec.allow:
        out.append(f"{ip} saddr {{ {', '.join(spec.allow)} }}")
    return out


def _target(f: KernelForward) -> str:
    host = f"[{f.target_host}]" if f.family == 6 else f.target_host
    return f"{host}:{f.target_port}"


def dnat_rule(spec: ForwardSpec, f: KernelForward) -> str:
    ip = "ip6" if f.family == 6 else "ip"
    parts = [
        f"meta nfproto ipv{f.family}",
        _daddr_match(spec, ip),
        *_saddr_matches(spec, ip),
        f"{f.proto} dport {spec.listen_port}",
        f"dnat {ip} to {_target(f)}",
        f"comment {_quote(COMMENT_PREFIX + f.spec)}",
    ]
    return " ".join(parts)


def masquerade_rule(f: KernelForward) -> str:
    ip = "ip6" if f.family == 6 else "ip"
    return (
        f"meta nfproto ipv{f.family} {ip} daddr {f.target_host} {f.proto} dport {f.target_port} "
        f"ct status dnat masquerade comment {_quote(COMMENT_PREFIX + f.spec)}"
    )


def render_script(forwards: Sequence[tuple[ForwardSpec, KernelForward]]) -> str:
    """The script that makes the table hold exactly ``forwards`` (none: no table at all)."""
    lines = [f"table {FAMILY} {TABLE} {{}}", f"delete table {FAMILY} {TABLE}"]
    if not forwards:
        return "\n".join(lines) + "\n"
    lines.append(f"table {FAMILY} {TABLE} {{")
    lines.append("  chain prerouting {")
    lines.append("    type nat hook prerouting priority dstnat; policy accept;")
    lines += [f"    {dnat_rule(s, f)}" for s, f in forwards]
    lines.append("  }")
    local = [(s, f) for s, f in forwards if f.local]
    if local:
        lines.append("  chain output {")
        lines.append("    type nat hook output priority -100; policy accept;")
        lines += [f"    {dnat_rule(s, f)}" for s, f in local]
        lines.append("  }")
    masq = [f for _s, f in forwards if f.masquerade]
    if masq:
        lines.append("  chain postrouting {")
        lines.append("    type nat hook postrouting priority srcnat; policy accept;")
        lines += [f"    {masquerade_rule(f)}" for f in masq]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def installed_specs(ruleset: dict[str, Any]) -> dict[str, set[str]]:
    """SPEC -> the chains holding a rule for it, read from ``nft -j list table`` output."""
    found: dict[str, set[str]] = {}
    for item in ruleset.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or rule.get("table") != TABLE:
            continue
        comment = rule.get("comment")
        if isinstance(comment, str) and comment.startswith(COMMENT_PREFIX):
            found.setdefault(comment[len(COMMENT_PREFIX) :], set()).add(str(rule.get("chain")))
    return found
