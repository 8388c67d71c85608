"""Random policies, packets and hand-written nft rulesets for the firewall tests.

Shared by the hypothesis test (policy -> nft -> evaluator == policy) and the differential
test in lab namespaces (evaluator == kernel). Everything is drawn from a ``random.Random``
so a failing case is reproduced from its seed.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from portkit.model.firewall import Packet, Policy, PolicyRule, PortRange


@dataclass(frozen=True)
class Universe:
    """The addresses, ports and interfaces random cases are drawn from."""

    clients4: tuple[str, ...]
    clients6: tuple[str, ...]
    servers4: tuple[str, ...]
    servers6: tuple[str, ...]
    ports: tuple[int, ...]
    ifaces: tuple[str, ...] = ("lan",)


def _cidr(rng: random.Random, addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        length = rng.choice([32, 32, 31, 30, 29, 24, 16])
    else:
        length = rng.choice([128, 128, 127, 126, 125, 120, 64])
    return ipaddress.ip_network(f"{addr}/{length}", strict=False).with_prefixlen


def _ports(rng: random.Random, u: Universe) -> tuple[PortRange, ...]:
    out = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        lo = rng.choice(u.ports)
        hi = lo if rng.random() < 0.7 else min(65535, lo + rng.choice([1, 2, 5]))
        out.append(PortRange(lo, hi))
    return tuple(out)


def random_rule(rng: random.Random, u: Universe, direction: str) -> PolicyRule:
    action = rng.choice(["allow", "allow", "deny", "reject"])
    proto = rng.choice(["tcp", "tcp", "udp", "any", "any", "icmp", "icmpv6"])
    ports: tuple[PortRange, ...] = ()
    if proto in ("tcp", "udp", "any") and rng.random() < 0.8:
        ports = _ports(rng, u)
    remote4, remote6 = (u.clients4, u.clients6) if direction == "in" else (u.servers4, u.servers6)
    local4, local6 = (u.servers4, u.servers6) if direction == "in" else (u.clients4, u.clients6)
    fam_choice = rng.choice(["any", "any", "any", "ipv4", "ipv6"])
    if proto == "icmp":
        fam_choice = rng.choice(["any", "ipv4"])
    if proto == "icmpv6":
        fam_choice = rng.choice(["any", "ipv6"])
    pools_r = {"ipv4": remote4, "ipv6": remote6, "any": remote4 + remote6}
    pools_l = {"ipv4": local4, "ipv6": local6, "any": local4 + local6}
    if proto == "icmp":
        pools_r, pools_l = {k: remote4 for k in pools_r}, {k: local4 for k in pools_l}
    if proto == "icmpv6":
        pools_r, pools_l = {k: remote6 for k in pools_r}, {k: local6 for k in pools_l}
    sources: tuple[str, ...] = ()
    dests: tuple[str, ...] = ()
    if rng.random() < 0.5:
        sources = tuple(sorted({_cidr(rng, rng.choice(pools_r[fam_choice])) for _ in range(rng.choice([1, 1, 2]))}))
    if rng.random() < 0.3:
        fams = {ipaddress.ip_network(s).version for s in sources}
        pool = [a for a in pools_l[fam_choice] if not fams or ipaddress.ip_address(a).version in fams]
        if pool:
            dests = tuple(sorted({_cidr(rng, rng.choice(pool)) for _ in range(rng.choice([1, 1, 2]))}))
    iface = rng.choice(u.ifaces) if rng.random() < 0.15 else None
    return PolicyRule(
        direction=direction,
        action=action,
        proto=proto,
        ports=ports,
        port_text=tuple(str(p) for p in ports),
        sources=sources,
        destinations=dests,
        interface=iface,
        family=fam_choice if rng.random() < 0.3 or (fam_choice != "any" and not (sources or dests)) else "any",
        log=rng.random() < 0.2,
        comment=rng.choice([None, None, "a comment", 'quoted "x"']),
    )


def random_policy(rng: random.Random, u: Universe, *, directions: tuple[str, ...] = ("in", "out")) -> Policy:
    rules = tuple(random_rule(rng, u, rng.choice(directions)) for _ in range(rng.randint(0, 12)))
    return Policy(
        default_in=rng.choice(["deny", "deny", "reject", "allow"]),
        default_out=rng.choice(["allow", "allow", "deny", "reject"]),
        essential_icmp=rng.random() < 0.8,
        log_default=rng.random() < 0.2,
        rules=rules,
    )


def random_packet(rng: random.Random, u: Universe, hook: str, *, protos: tuple[str, ...] = ("tcp", "udp", "icmp")) -> Packet:
    fam = rng.choice([4, 6])
    clients = u.clients4 if fam == 4 else u.clients6
    servers = u.servers4 if fam == 4 else u.servers6
    # in: from a client to a server; out: from "our" side (clients pool) to a remote (servers pool),
    # matching how random_rule draws sources/destinations for each direction
    src, dst = rng.choice(clients), rng.choice(servers)
    proto = rng.choice(protos)
    if proto == "icmp" and fam == 6:
        proto = "icmpv6"
    dport = sport = None
    icmp_type = None
    if proto in ("tcp", "udp"):
        dport = rng.choice(u.ports) + rng.choice([0, 0, 0, 1, 3])
        sport = rng.randint(20000, 60000)
    else:
        icmp_type = rng.choice(["echo-request", "destination-unreachable", "time-exceeded"])
        if fam == 6:
            icmp_type = rng.choice(["echo-request", "destination-unreachable", "nd-neighbor-solicit", "packet-too-big"])
    iface = rng.choice([*u.ifaces, "lo"]) if rng.random() < 0.1 else u.ifaces[0]
    return Packet(
        hook=hook,
        proto=proto,
        src=ipaddress.ip_address(src),
        dst=ipaddress.ip_address(dst),
        dport=dport,
        sport=sport,
        iif=iface if hook == "in" else None,
        oif=iface if hook == "out" else None,
        icmp_type=icmp_type,
    )


# --------------------------------------------------------------------------- hand-written nft


def _addr_match(rng: random.Random, u: Universe, fam: int, key: str) -> str:
    pool = (u.clients4 if fam == 4 else u.clients6) if key == "saddr" else (u.servers4 if fam == 4 else u.servers6)
    ipk = "ip" if fam == 4 else "ip6"
    neg = "!= " if rng.random() < 0.15 else ""
    r = rng.random()
    if r < 0.4:
        return f"{ipk} {key} {neg}{rng.choice(pool)}"
    if r < 0.7:
        return f"{ipk} {key} {neg}{_cidr(rng, rng.choice(pool))}"
    a, b = sorted(rng.sample(pool, 2), key=ipaddress.ip_address) if len(pool) > 1 else (pool[0], pool[0])
    return f"{ipk} {key} {neg}{a}-{b}"


def _port_match(rng: random.Random, u: Universe, proto: str) -> str:
    neg = "!= " if rng.random() < 0.1 else ""
    r = rng.random()
    if r < 0.4:
        return f"{proto} dport {neg}{rng.choice(u.ports)}"
    if r < 0.7:
        items = sorted({rng.choice(u.ports) for _ in range(3)})
        return f"{proto} dport {neg}{{ {', '.join(map(str, items))} }}"
    lo = rng.choice(u.ports)
    return f"{proto} dport {neg}{lo}-{lo + rng.randint(1, 6)}"


_VERDICTS = ["accept", "accept", "drop", "reject", "reject with tcp reset", "reject with icmpx type admin-prohibited", "continue", "counter"]


def _rule(rng: random.Random, u: Universe, regular: list[str], sets: list[tuple[str, str]], family: str, ct: bool) -> str:
    parts: list[str] = []
    fam = {"ip": 4, "ip6": 6}.get(family) or rng.choice([4, 6])
    if family == "inet" and rng.random() < 0.3:
        parts.append(f"meta nfproto ipv{fam}")
    if rng.random() < 0.4:
        parts.append(_addr_match(rng, u, fam, "saddr"))
    if rng.random() < 0.15:
        parts.append(_addr_match(rng, u, fam, "daddr"))
    proto = rng.choice(["tcp", "udp", "th", None])
    if proto == "th":
        parts.append(f"meta l4proto {rng.choice(['tcp', 'udp', '{ tcp, udp }'])}")
    if proto and rng.random() < 0.8:
        parts.append(_port_match(rng, u, proto))
    elif proto in ("tcp", "udp"):
        parts.append(f"meta l4proto {proto}")
    if proto in ("tcp", None) and rng.random() < 0.15:
        parts.append(f"tcp sport {rng.choice(['20000-40000', '1-1024', '{ 20000-20500, 21000-60000 }'])}")
        proto = "tcp"
    l4 = proto if proto in ("tcp", "udp") else "th"
    if rng.random() < 0.1:
        parts.append(rng.choice(['iifname "lan"', 'iifname "la*"', 'iifname != "eth0"', 'iif "lan"']))
    if ct and rng.random() < 0.1:
        parts.append(rng.choice(["ct state new", "ct state established,related", "ct state { new, untracked }", "ct state != invalid"]))
    matching_sets = [s for s in sets if s[1] == ("ipv4_addr" if fam == 4 else "ipv6_addr") or s[1] == "inet_service"]
    if matching_sets and rng.random() < 0.3:
        name, typ = rng.choice(matching_sets)
        if typ == "inet_service":
            parts.append(f"{l4} dport @{name}")
        else:
            parts.append(f"{'ip' if fam == 4 else 'ip6'} saddr @{name}")
    if rng.random() < 0.1:
        parts.append(rng.choice(['log prefix "t "', "limit rate 1000000/second burst 1000000 packets", "counter"]))
    r = rng.random()
    if regular and r < 0.2:
        parts.append(f"{rng.choice(['jump', 'jump', 'goto'])} {rng.choice(regular)}")
    elif r < 0.28:
        items = sorted({rng.choice(u.ports) for _ in range(3)})
        verdict_list = ", ".join(f"{p} : {rng.choice(['accept', 'drop', 'drop'] + [f'jump {c}' for c in regular])}" for p in items)
        parts.append(f"{l4} dport vmap {{ {verdict_list} }}")
    elif r < 0.32:
        parts.append("return")
    else:
        parts.append(rng.choice(_VERDICTS))
    text = " ".join(parts)
    if family != "inet":
        text = text.replace("icmpx type", "icmp type" if family == "ip" else "icmpv6 type")
    if "reject with tcp reset" in text and "tcp dport" not in text and "meta l4proto tcp" not in text:
        text = text.replace("reject with tcp reset", "reject")
    return text


def random_nft_ruleset(rng: random.Random, u: Universe, *, dnat_to: tuple[str, str] | None = None) -> str:
    """A hand-written ruleset: several tables and base chains on input at different
    priorities, regular chains reached by jump/goto, named sets, verdict maps, and
    (with ``dnat_to=(addr4, addr6)``) DNAT in prerouting from port P+1000 to P."""
    out = ["flush ruleset"]
    for t in range(rng.randint(1, 3)):
        family = rng.choice(["inet", "inet", "ip", "ip6"])
        name = f"t{t}"
        sets: list[tuple[str, str]] = []
        body: list[str] = []
        if rng.random() < 0.6:
            n = rng.randint(1, 3)
            elems = ", ".join(str(p) for p in sorted({rng.choice(u.ports) for _ in range(n)}))
            body.append(f"set ports {{ type inet_service; flags interval; elements = {{ {elems} }} }}")
            sets.append(("ports", "inet_service"))
        if family in ("inet", "ip") and rng.random() < 0.5:
            elems = ", ".join(sorted({_cidr(rng, rng.choice(u.clients4)) for _ in range(2)}))
            body.append(f"set src4 {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {elems} }} }}")
            sets.append(("src4", "ipv4_addr"))
        if family in ("inet", "ip6") and rng.random() < 0.5:
            elems = ", ".join(sorted({_cidr(rng, rng.choice(u.clients6)) for _ in range(2)}))
            body.append(f"set src6 {{ type ipv6_addr; flags interval; auto-merge; elements = {{ {elems} }} }}")
            sets.append(("src6", "ipv6_addr"))
        fam_ok = [s for s in sets if not (family == "ip" and s[1] == "ipv6_addr") and not (family == "ip6" and s[1] == "ipv4_addr")]
        regular = [f"r{i}" for i in range(rng.randint(0, 3))]
        # regular chains may jump only to later ones: no loops
        for i, c in enumerate(regular):
            rules = [_rule(rng, u, regular[i + 1 :], fam_ok, family, dnat_to is None) for _ in range(rng.randint(1, 4))]
            body.append(f"chain {c} {{\n" + "\n".join(f"  {r}" for r in rules) + "\n}")
        for b in range(rng.randint(1, 2)):
            prio = rng.choice([-10, 0, 0, 5, 10, 100])
            policy = rng.choice(["accept", "accept", "drop"])
            rules = [_rule(rng, u, regular, fam_ok, family, dnat_to is None) for _ in range(rng.randint(1, 6))]
            lines = "\n".join(f"  {r}" for r in rules)
            body.append(f"chain in{b} {{\n  type filter hook input priority {prio}; policy {policy};\n{lines}\n}}")
        if dnat_to and family in ("inet", "ip") and t == 0:
            addr = dnat_to[0]
            port = rng.choice(u.ports)
            body.append(
                "chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n"
                f"  tcp dport {port + 1000} dnat ip to {addr}:{port}\n"
                f"  ip saddr {rng.choice(u.clients4)} tcp dport {rng.choice(u.ports) + 1000} dnat ip to {addr}:{rng.choice(u.ports)}\n}}"
            )
        out.append(f"table {family} {name} {{\n" + "\n".join(body) + "\n}")
    return "\n".join(out) + "\n"
