"""``iptables-save`` text -> statements, for rules iptables-nft wrote as opaque ``xt`` matches.

iptables-nft (Docker, kube-proxy, older firewalld) stores matches such as ``-m addrtype``
or ``-m conntrack`` as ``xt`` expressions whose arguments ``nft -j`` does not show. The same
rules, in the same order, are listed by ``iptables-save``; this module parses those lines
into the evaluator's statements and puts them in place of the opaque nft rules. Example::

    -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
    -> [Match(("meta iifname",), "!=", Lit("docker0")), Match(("meta l4proto",), "==", Lit("tcp")),
        Match(("tcp dport",), "==", Lit(8080)), Nat("dnat", "172.17.0.2", 80)]

Understood: -s -d -i -o -p, --sport/--dport, multiport, addrtype --dst-type, conntrack and
state --ctstate/--state, --ctstatus, comment, limit, mark, and the targets ACCEPT DROP
REJECT RETURN LOG DNAT SNAT MASQUERADE REDIRECT MARK and jumps. Anything else becomes
``Unknown`` naming the option.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection
from dataclasses import replace

from portkit.model.firewall import (
    PORT_PROTOS,
    AnonSet,
    Flags,
    Lit,
    Match,
    Nat,
    NftChain,
    NftRuleset,
    Passive,
    Prefix,
    Range,
    SetMark,
    Stmt,
    Unknown,
    Value,
    VerdictStmt,
)

# Options taking one argument that carry no meaning for a new connection's verdict.
_IGNORED_WITH_ARG = {"--limit", "--limit-burst", "--log-prefix", "--log-level", "--comment"}
_IGNORED_FLAGS = {"--log-uid", "--log-tcp-options", "--log-ip-options", "--log-tcp-sequence"}


_TCP_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")
# iptables-save writes ICMP types as numbers (or names for some versions)
_ICMP_TYPES = {
    "0": "echo-reply", "echo-reply": "echo-reply", "3": "destination-unreachable",
    "destination-unreachable": "destination-unreachable", "8": "echo-request",
    "echo-request": "echo-request", "11": "time-exceeded", "time-exceeded": "time-exceeded",
    "12": "parameter-problem", "parameter-problem": "parameter-problem",
}  # fmt: skip


def _tcp_flags(text: str) -> tuple[str, ...]:
    """``SYN,ACK`` / ``ALL`` / ``NONE`` -> flag names; anything else is not a flag list."""
    up = text.upper()
    if up == "ALL":
        return _TCP_FLAGS[:6]  # iptables' ALL: FIN SYN RST PSH ACK URG
    if up == "NONE":
        return ()
    names = tuple(f.lower() for f in text.split(","))
    if not all(n in _TCP_FLAGS for n in names):
        raise ValueError(f"unknown TCP flags {text!r}")
    return names


def parse_save(text: str) -> dict[tuple[str, str], list[str]]:
    """{(table, chain): [rule args, ...]} in listing order."""
    out: dict[tuple[str, str], list[str]] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            parts = line.split(None, 2)
            if len(parts) >= 2:
                out.setdefault((table, parts[1]), []).append(parts[2] if len(parts) > 2 else "")
    return out


def _addr(text: str) -> Value:
    if "/" in text:
        addr, _, mask = text.partition("/")
        if mask.isdigit():
            return Prefix(addr, int(mask))
        return Unknown_value(text)
    return Lit(text)


def Unknown_value(text: str) -> Value:
    from portkit.model.firewall import Opaque

    return Opaque(text)


def _ports(text: str) -> Value:
    items: list[Value] = []
    for part in text.split(","):
        if ":" in part:
            lo, _, hi = part.partition(":")
            items.append(Range(int(lo or 0), int(hi or 65535)))
        else:
            items.append(Lit(int(part)))
    return items[0] if len(items) == 1 else AnonSet(tuple(items))


def _iface(text: str) -> Lit:
    return Lit(text[:-1] + "*" if text.endswith("+") else text)


def parse_rule(args: str, family: int = 4, chains: Collection[str] = ()) -> tuple[Stmt, ...]:
    """One ``-A`` line's arguments (after the chain name) -> statements. ``chains``: the
    user chains of the same table, which ``-j NAME`` jumps to whatever their names look like."""
    try:
        toks = shlex.split(args)
    except ValueError:
        return (Unknown(f"iptables rule {args!r}"),)
    ip = "ip" if family == 4 else "ip6"
    stmts: list[Stmt] = []
    proto: str | None = None
    neg = False
    i = 0

    def arg() -> str:
        nonlocal i
        i += 1
        if i >= len(toks):
            raise ValueError("missing argument")
        return toks[i]

    try:
        while i < len(toks):
            t = toks[i]
            op = "!=" if neg else "=="
            if t == "!":
                neg = True
                i += 1
                continue
            if t in ("-s", "--source", "-d", "--destination"):
                key = f"{ip} saddr" if t in ("-s", "--source") else f"{ip} daddr"
                stmts.append(Match((key,), op, _addr(arg())))
            elif t in ("-i", "--in-interface", "-o", "--out-interface"):
                key = "meta iifname" if t in ("-i", "--in-interface") else "meta oifname"
                stmts.append(Match((key,), op, _iface(arg())))
            elif t in ("-p", "--protocol"):
                proto = arg().lower()
                if proto != "all":
                    stmts.append(Match(("meta l4proto",), op, Lit(int(proto) if proto.isdigit() else proto)))
            elif t in ("--dport", "--destination-port", "--sport", "--source-port"):
                if proto not in PORT_PROTOS:
                    stmts.append(Unknown(f"iptables {t} without -p tcp/udp"))
                else:
                    name = "dport" if "d" in t.lstrip("-")[:2] else "sport"
                    stmts.append(Match((f"{proto} {name}",), op, _ports(arg())))
            elif t in ("--dports", "--sports", "--destination-ports", "--source-ports"):
                name = "dport" if t.startswith("--d") else "sport"
                stmts.append(Match((f"{proto or 'th'} {name}",), op, _ports(arg())))
            elif t == "--syn":  # -p tcp --syn: flags & (fin,syn,rst,ack) == syn
                stmts.append(Match(("tcp flags",), op, Flags(("syn",)), Flags(("fin", "syn", "rst", "ack"))))
            elif t == "--tcp-flags":
                mask, comp = _tcp_flags(arg()), _tcp_flags(arg())
                stmts.append(Match(("tcp flags",), op, Flags(comp), Flags(mask)))
            elif t == "--icmp-type":
                icmp = _ICMP_TYPES.get(arg().split("/")[0].lower())
                stmts.append(Match(("icmp type",), op, Lit(icmp)) if icmp and family == 4 else Unknown(f"iptables --icmp-type {toks[i]}"))
            elif t == "--dst-type":
                kind = arg().lower()
                stmts.append(Match(("fib daddr type",), op, AnonSet(tuple(Lit(k) for k in kind.split(",")))))
            elif t in ("--ctstate", "--state"):
                stmts.append(Match(("ct state",), op, Flags(tuple(s.lower() for s in arg().split(",")))))
            elif t == "--ctstatus":
                stmts.append(Match(("ct status",), op, Flags(tuple(s.lower() for s in arg().split(",")))))
            elif t == "--mark":
                val = arg()
                stmts.append(Match(("meta mark",), op, Lit(int(val, 0))) if "/" not in val else Unknown(f"iptables --mark {val}"))
            elif t == "-m":
                mod = arg()
                if mod == "recent":
                    stmts.append(_recent(toks, i))
                    while i + 1 < len(toks) and toks[i + 1] in _RECENT_OPTS:
                        i += 2 if toks[i + 1] in _RECENT_WITH_ARG else 1
                elif mod not in ("tcp", "udp", "multiport", "addrtype", "conntrack", "state", "comment", "limit", "mark", "icmp"):
                    stmts.append(Unknown(f"iptables -m {mod}"))
            elif t in _IGNORED_WITH_ARG:
                arg()
                if t == "--comment":
                    stmts.append(Passive("comment"))
            elif t in _IGNORED_FLAGS:
                pass
            elif t in ("-j", "--jump", "-g", "--goto"):
                stmts.extend(_target(t, arg(), toks, i, family, chains))
                break
            else:
                stmts.append(Unknown(f"iptables {t}"))
            neg = False
            i += 1
    except ValueError as exc:
        return (Unknown(f"iptables rule {args!r}: {exc}"),)
    return tuple(stmts)


_RECENT_WITH_ARG = frozenset({"--name", "--mask", "--seconds", "--hitcount"})
_RECENT_OPTS = _RECENT_WITH_ARG | {"--set", "--remove", "--rsource", "--rdest", "--rcheck", "--update", "--rttl", "--reap"}


def _recent(toks: list[str], i: int) -> Stmt:
    """``-m recent``: ``--set``/``--remove`` only record the source (always true, no effect on
    this packet); ``--rcheck``/``--update`` test a history portkit cannot see."""
    opts: set[str] = set()
    while i + 1 < len(toks) and toks[i + 1] in _RECENT_OPTS:
        opts.add(toks[i + 1])
        i += 2 if toks[i + 1] in _RECENT_WITH_ARG else 1
    tests = opts & {"--rcheck", "--update"}
    if tests:
        return Unknown(f"iptables -m recent {min(tests)}")
    return Passive("recent set")


def _target(opt: str, target: str, toks: list[str], i: int, family: int, chains: Collection[str] = ()) -> list[Stmt]:
    rest = toks[i + 1 :]
    opts = {rest[k]: rest[k + 1] for k in range(len(rest) - 1) if rest[k].startswith("--")}
    if opt in ("-g", "--goto"):
        return [VerdictStmt("goto", target)]
    if target in chains:
        return [VerdictStmt("jump", target)]
    if target in ("ACCEPT", "DROP", "RETURN"):
        return [VerdictStmt({"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}[target])]
    if target == "REJECT":
        return [VerdictStmt("reject", opts.get("--reject-with"))]
    if target in ("LOG", "NFLOG", "CONNMARK") and target != "CONNMARK":
        return [Passive(target.lower())]
    if target == "MASQUERADE":
        return [Nat("masquerade")]
    if target in ("DNAT", "SNAT"):
        to = opts.get("--to-destination" if target == "DNAT" else "--to-source", "")
        addr, port = _split_hostport(to)
        if addr is None or "-" in to:
            return [Nat(target.lower(), opaque=to or "?")]
        return [Nat(target.lower(), addr, port)]
    if target == "REDIRECT":
        ports = opts.get("--to-ports")
        if ports is not None and not ports.isdigit():
            return [Nat("redirect", opaque=ports)]
        return [Nat("redirect", None, int(ports) if ports else None)]
    if target == "MARK" and "--set-mark" in opts:
        v = opts["--set-mark"]
        return [SetMark("meta mark", int(v, 0) if "/" not in v else None)]
    if target == "MARK" and "--set-xmark" in opts:
        v = opts["--set-xmark"]
        val, _, mask = v.partition("/")
        full = mask == "" or int(mask, 0) == 0xFFFFFFFF
        return [SetMark("meta mark", int(val, 0) if full else None)]
    if target.isupper() and not target.startswith(("DOCKER", "KUBE", "CNI", "f2b", "ufw", "LIBVIRT")) and "-" not in target:
        return [Unknown(f"iptables target {target}")]
    return [VerdictStmt("jump", target)]


def _split_hostport(to: str) -> tuple[str | None, int | None]:
    if not to:
        return None, None
    if to.startswith("["):
        host, _, rest = to[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if to.count(":") == 1:
        host, _, port = to.partition(":")
        return host or None, int(port) if port.isdigit() else None
    return to, None


def merge_iptables(rs: NftRuleset, v4_save: str | None, v6_save: str | None) -> NftRuleset:
    """Replace the statements of ``xt`` rules with their iptables-save meaning where it lines up."""
    notes: list[str] = list(rs.notes)
    saves = {"ip": parse_save(v4_save) if v4_save else None, "ip6": parse_save(v6_save) if v6_save else None}
    chains: list[NftChain] = []
    for c in rs.chains:
        has = any(isinstance(s, Unknown) and s.text.startswith("xt ") for r in c.rules for s in r.stmts)
        save = saves.get(c.family)
        if not has:
            chains.append(c)
            continue
        if save is None:
            notes.append(f"{c.family} {c.table} {c.name}: xt rules and no {'ip6' if c.family == 'ip6' else 'ip'}tables-save to read them")
            chains.append(c)
            continue
        lines = save.get((c.table, c.name), [])
        if len(lines) != len(c.rules):
            notes.append(f"{c.family} {c.table} {c.name}: iptables-save lists {len(lines)} rules, nft {len(c.rules)}; xt rules stay unknown")
            chains.append(c)
            continue
        rules = []
        user_chains = {o.name for o in rs.chains if (o.family, o.table) == (c.family, c.table) and not o.is_base}
        for r, line in zip(c.rules, lines, strict=True):
            if any(isinstance(s, Unknown) and s.text.startswith("xt ") for s in r.stmts):
                stmts = parse_rule(line, 4 if c.family == "ip" else 6, user_chains)
                text = f"-A {c.name} {line}"
                rules.append(replace(r, stmts=stmts, text=text))
            else:
                rules.append(r)
        chains.append(replace(c, rules=tuple(rules)))
        notes.append(f"{c.family} {c.table} {c.name}: xt rules read through iptables-save")
    return replace(rs, chains=tuple(chains), notes=tuple(dict.fromkeys(notes)))


__all__ = ["merge_iptables", "parse_rule", "parse_save"]
