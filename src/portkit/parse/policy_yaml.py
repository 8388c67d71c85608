"""The policy file (YAML) -> :class:`Policy`, with file:line errors; and back to YAML.

The YAML is composed into nodes (not constructed into dicts) so every error can name the
line it is on: an unknown key, a bad port, a bad CIDR, or an impossible rule (a port with
protocol icmp, an IPv6 source in an IPv4-only rule). Example::

    default: {in: deny, out: allow}
    rules:
      - {action: allow, proto: tcp, port: ssh, from: 10.0.0.0/8, comment: "ssh from the LAN"}
      - {direction: out, action: reject, proto: udp, port: 53, to: "2001:db8::/32"}

Service names are resolved with a mapping ``{(name, proto): port}`` given by the caller
(/etc/services, parsed by :func:`parse_services`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence

import yaml

from portkit.errors import FileFormatError, InputError, PortSpecError
from portkit.model.firewall import ACTIONS, PROTOS, Policy, PolicyRule, PortRange
from portkit.parse.scalars import check_ifname, parse_port
from portkit.parse.yamltext import compose
from portkit.registry.services import parse_etc_services, ports_by_name

TOP_KEYS = ("default", "essential_icmp", "log_default", "rules")
RULE_KEYS = ("direction", "action", "proto", "port", "from", "to", "interface", "family", "log", "comment")

Services = Mapping[tuple[str, str], int]


def parse_services(text: str) -> dict[tuple[str, str], int]:
    """/etc/services text -> {(name, proto): port}, aliases included.

    ``"ssh  22/tcp  # SSH Remote Login Protocol"`` -> ``{("ssh", "tcp"): 22}``.
    """
    return ports_by_name(parse_etc_services(text))


class _Ctx:
    def __init__(self, path: str, services: Services) -> None:
        self.path = path
        self.services = services

    def fail(self, node: yaml.Node | None, problem: str) -> FileFormatError:
        line = node.start_mark.line + 1 if node is not None else None
        return FileFormatError(self.path, problem, line=line)


def _scalar(ctx: _Ctx, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, f"{what} must be a single value, not a list or mapping")
    return str(node.value)


def _bool(ctx: _Ctx, node: yaml.Node, what: str) -> bool:
    v = _scalar(ctx, node, what).lower()
    if node.tag == "tag:yaml.org,2002:bool" or v in ("true", "false"):
        return v in ("true", "yes", "on")
    raise ctx.fail(node, f"{what} must be true or false, not {node.value!r}")


def _items(ctx: _Ctx, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, f"{what} must be a mapping (key: value)")
    seen: set[str] = set()
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        key = _scalar(ctx, knode, "a key")
        if key not in allowed:
            raise ctx.fail(knode, f"unknown key {key!r} in {what}; valid keys are: {', '.join(allowed)}")
        if key in seen:
            raise ctx.fail(knode, f"key {key!r} appears twice in {what}")
        seen.add(key)
        out.append((key, knode, vnode))
    return out


def _list(node: yaml.Node) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else [node]


def _port(ctx: _Ctx, node: yaml.Node, proto: str) -> tuple[PortRange, str]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        # ``port:`` or ``port: null`` would otherwise be looked up as the service "null" (9)
        raise ctx.fail(node, "bad port: the value is empty (null); give a number 1-65535, a range like 8000-8100 or a service name")
    text = _scalar(ctx, node, "a port").strip(" ")
    m = re.fullmatch(r"([0-9]{1,5})\s*[-:]\s*([0-9]{1,5})", text, re.ASCII)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
            raise ctx.fail(node, f"bad port range {text!r}; a range is LOW-HIGH with 1 <= LOW <= HIGH <= 65535")
        return PortRange(lo, hi), f"{lo}-{hi}"
    if any(c.isdigit() for c in text) and all(c.isdigit() or c in "-: " for c in text):
        try:
            p = parse_port(text)
        except PortSpecError:
            shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
            if not text.isascii():
                shown = repr(shown)
            raise ctx.fail(node, f"bad port {shown}; ports are 1-65535, written in ASCII digits") from None
        return PortRange(p, p), str(p)
    if not text.isascii() or not text.isprintable():
        raise ctx.fail(node, f"bad port {text[:40]!r}; use a number 1-65535, a range like 8000-8100 or a service name from /etc/services")
    protos = ("tcp", "udp") if proto == "any" else (proto,)
    for pr in protos:
        port = ctx.services.get((text.lower(), pr))
        if port is not None:
            return PortRange(port, port), text
    raise ctx.fail(node, f"bad port {text!r}; use a number 1-65535, a range like 8000-8100 or a service name from /etc/services")


def _cidr(ctx: _Ctx, node: yaml.Node) -> str:
    text = _scalar(ctx, node, "an address").strip()
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ctx.fail(node, f"bad address or CIDR {text!r}; use e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32") from None
    return net.with_prefixlen


def _choice(ctx: _Ctx, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
    v = _scalar(ctx, node, what).strip().lower()
    if v not in choices:
        raise ctx.fail(node, f"bad {what} {node.value!r}; valid ones are: {', '.join(choices)}")
    return v


def _rule(ctx: _Ctx, node: yaml.Node, number: int) -> PolicyRule:
    items = {k: (kn, vn) for k, kn, vn in _items(ctx, node, f"rule {number}", RULE_KEYS)}
    if "action" not in items:
        raise ctx.fail(node, f"rule {number} has no action; add action: allow, deny or reject")
    action = _choice(ctx, items["action"][1], "action", ACTIONS)
    direction = _choice(ctx, items["direction"][1], "direction", ("in", "out")) if "direction" in items else "in"
    proto = _choice(ctx, items["proto"][1], "proto", PROTOS) if "proto" in items else "any"
    if proto == "ipv6-icmp":
        proto = "icmpv6"
    family = _choice(ctx, items["family"][1], "family", ("ipv4", "ipv6", "any")) if "family" in items else "any"
    ports: list[PortRange] = []
    port_text: list[str] = []
    if "port" in items:
        pnode = items["port"][1]
        if proto in ("icmp", "icmpv6"):
            raise ctx.fail(pnode, f"impossible rule {number}: {proto} has no ports; use proto tcp, udp or any")
        for n in _list(pnode):
            pr, txt = _port(ctx, n, proto)
            ports.append(pr)
            port_text.append(txt)
    addrs: dict[str, tuple[str, ...]] = {}
    for key in ("from", "to"):
        if key in items:
            nets = tuple(_cidr(ctx, n) for n in _list(items[key][1]))
            vnode = items[key][1]
            for n_text in nets:
                v = ipaddress.ip_network(n_text).version
                if (family == "ipv4" and v == 6) or (family == "ipv6" and v == 4):
                    raise ctx.fail(vnode, f"impossible rule {number}: {n_text} is IPv{v} but the rule is {family}-only")
                if (proto == "icmp" and v == 6) or (proto == "icmpv6" and v == 4):
                    raise ctx.fail(vnode, f"impossible rule {number}: {n_text} is IPv{v} but {proto} is IPv{6 if v == 4 else 4} only")
            addrs[key] = nets
    srcv = {ipaddress.ip_network(n).version for n in addrs.get("from", ())}
    dstv = {ipaddress.ip_network(n).version for n in addrs.get("to", ())}
    if srcv and dstv and not srcv & dstv:
        raise ctx.fail(node, f"impossible rule {number}: its sources are IPv{min(srcv)} and its destinations IPv{min(dstv)}")
    iface = None
    if "interface" in items:
        iface = _scalar(ctx, items["interface"][1], "interface").strip(" ")
        try:
            check_ifname(iface, pattern=True)
        except InputError as exc:
            raise ctx.fail(items["interface"][1], f"bad {exc.message.removeprefix('invalid ')}") from None
    log = _bool(ctx, items["log"][1], "log") if "log" in items else False
    comment = _scalar(ctx, items["comment"][1], "comment") if "comment" in items else None
    return PolicyRule(
        direction=direction,
        action=action,
        proto=proto,
        ports=tuple(ports),
        port_text=tuple(port_text),
        sources=addrs.get("from", ()),
        destinations=addrs.get("to", ()),
        interface=iface,
        family=family,
        log=log,
        comment=comment,
        line=node.start_mark.line + 1,
    )


def load_policy(text: str, *, path: str = "<policy>", services: Services | None = None) -> Policy:
    """Parse policy YAML text. Raises FileFormatError(path, problem, line=) on any problem."""
    ctx = _Ctx(path, services or {})
    root = compose(text, path)
    if root is None:
        return Policy()
    default_in, default_out, icmp, log_default = "deny", "allow", True, False
    rules: list[PolicyRule] = []
    for key, _kn, vn in _items(ctx, root, "the policy", TOP_KEYS):
        if key == "default":
            for d, _dk, dv in _items(ctx, vn, "default", ("in", "out")):
                act = _choice(ctx, dv, f"default {d} action", ACTIONS)
                if d == "in":
                    default_in = act
                else:
                    default_out = act
        elif key == "essential_icmp":
            icmp = _bool(ctx, vn, "essential_icmp")
        elif key == "log_default":
            log_default = _bool(ctx, vn, "log_default")
        elif key == "rules":
            if isinstance(vn, yaml.ScalarNode) and vn.value in ("", "~", "null"):
                continue
            if not isinstance(vn, yaml.SequenceNode):
                raise ctx.fail(vn, "rules must be a list (each rule starts with '- ')")
            rules.extend(_rule(ctx, rn, i) for i, rn in enumerate(vn.value, 1))
    return Policy(default_in=default_in, default_out=default_out, essential_icmp=icmp, log_default=log_default, rules=tuple(rules))


_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"


def _value_node(value: str | bool | Sequence[str], mark: yaml.Mark) -> yaml.Node:
    """A YAML node holding ``value`` as it is: built, never parsed, so no text a user typed
    is read as YAML syntax (``&x 80`` is the port text "&x 80", not an anchor)."""
    if isinstance(value, bool):
        return yaml.ScalarNode(_BOOL, "true" if value else "false", mark, mark)
    if isinstance(value, str):
        return yaml.ScalarNode(_STR, value, mark, mark)
    return yaml.SequenceNode("tag:yaml.org,2002:seq", [yaml.ScalarNode(_STR, v, mark, mark) for v in value], mark, mark)


def rule_from_values(
    *,
    action: str,
    direction: str = "in",
    proto: str = "any",
    ports: Sequence[str] = (),
    sources: Sequence[str] = (),
    destinations: Sequence[str] = (),
    interface: str | None = None,
    family: str = "any",
    log: bool = False,
    comment: str | None = None,
    services: Services | None = None,
) -> PolicyRule:
    """A rule from separate values (the command line), checked by exactly the rules a rule
    in a policy file is checked by. Each port is one value (``"22"``, ``"8000-8100"``,
    ``"ssh"``); nothing is spliced into YAML text. Raises InputError naming the problem.

    >>> rule_from_values(action="allow", proto="tcp", ports=["22"]).ports
    (PortRange(lo=22, hi=22),)
    """
    mark = yaml.Mark("<command line>", 0, 0, 0, None, 0)
    values: dict[str, str | bool | Sequence[str]] = {"direction": direction, "action": action, "proto": proto, "family": family, "log": log}
    if ports:
        values["port"] = tuple(ports)
    if sources:
        values["from"] = tuple(sources)
    if destinations:
        values["to"] = tuple(destinations)
    if interface is not None:
        values["interface"] = interface
    if comment is not None:
        values["comment"] = comment
    node = yaml.MappingNode("tag:yaml.org,2002:map", [(_value_node(k, mark), _value_node(v, mark)) for k, v in values.items()], mark, mark)
    try:
        rule = _rule(_Ctx("<command line>", services or {}), node, 1)
    except FileFormatError as exc:
        raise InputError(exc.problem) from None
    return dataclasses.replace(rule, line=None)


def _q(text: str) -> str:
    """Numbers and plain words bare; anything else as a JSON string (valid YAML too)."""
    if re.fullmatch(r"[0-9]+(-[0-9]+)?|[A-Za-z][A-Za-z0-9_.+-]*", text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def dump_policy(policy: Policy) -> str:
    """Canonical YAML for ``policy`` (what ``fw allow/insert/delete`` write back)."""
    lines = [
        "# portkit firewall policy (see docs/firewall.md). First matching rule wins.",
        f"default: {{in: {policy.default_in}, out: {policy.default_out}}}",
        f"essential_icmp: {'true' if policy.essential_icmp else 'false'}",
        f"log_default: {'true' if policy.log_default else 'false'}",
    ]
    if not policy.rules:
        lines.append("rules: []")
        return "\n".join(lines) + "\n"
    lines.append("rules:")
    for r in policy.rules:
        parts = [f"direction: {r.direction}", f"action: {r.action}", f"proto: {r.proto}"]
        if r.ports:
            texts = r.port_text if len(r.port_text) == len(r.ports) else tuple(str(p) for p in r.ports)
            parts.append(f"port: [{', '.join(_q(t) for t in texts)}]")
        if r.sources:
            parts.append(f"from: [{', '.join(_q(s) for s in r.sources)}]")
        if r.destinations:
            parts.append(f"to: [{', '.join(_q(s) for s in r.destinations)}]")
        if r.interface:
            parts.append(f"interface: {_q(r.interface)}")
        if r.family != "any":
            parts.append(f"family: {r.family}")
        if r.log:
            parts.append("log: true")
        if r.comment:
            parts.append(f"comment: {_q(r.comment)}")
        lines.append("  - {" + ", ".join(parts) + "}")
    return "\n".join(lines) + "\n"
