"""Turn a validated Scenario into the concrete things to create: names, commands, files.

Pure: no I/O. :func:`make_plan` returns a :class:`Plan` that the iproute2 backend
(:mod:`portkit.lab.system`) or the pyroute2 backend (:mod:`portkit.lab.netlink`) executes.

Naming: host ``h`` of lab ``L`` lives in namespace ``pk-L-h``; a bridge link ``b`` gets
its own switch namespace ``pk-L.b`` (dots cannot occur in lab or host names, so the two
never collide) holding the bridge and one port per host, named ``pk`` + an 8-hex hash
(<= 15 characters). Veth pairs are created directly inside their namespaces, so no lab
interface ever appears, even briefly, among the host's own interfaces; inside a host the
interface of link ``lan`` is named ``lan``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from portkit.model.lab import Host, Scenario

HOST_SYSCTLS: tuple[tuple[str, str], ...] = (
    # Rejections (RST, ICMP unreachable) must never be rate limited, else closed ports read as silent.
    ("net/ipv4/icmp_ratelimit", "0"),
    ("net/ipv6/icmp/ratelimit", "0"),
    # The namespace-wide ICMP budget (1000/s, burst 50 by default; IPv4 and IPv6 share it)
    # would still silence a fast scan's port-unreachables: make it practically unlimited.
    ("net/ipv4/icmp_msgs_per_sec", "100000000"),
    ("net/ipv4/icmp_msgs_burst", "100000000"),
    # No duplicate-address detection: IPv6 addresses are usable at once (also link-local).
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_ra", "0"),
    ("net/ipv6/conf/all/accept_ra", "0"),
)
FORWARD_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv6/conf/default/forwarding", "1"),
)
# Per-namespace only on newer kernels (older ones keep them in the initial namespace alone).
OPTIONAL_SYSCTLS = frozenset({"net/ipv4/icmp_msgs_per_sec", "net/ipv4/icmp_msgs_burst"})
SWITCH_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
)


def netns_name(lab: str, host: str) -> str:
    return f"pk-{lab}-{host}"


def switch_name(lab: str, link: str) -> str:
    return f"pk-{lab}.{link}"


def port_name(lab: str, link: str, host: str) -> str:
    digest = hashlib.sha1(f"{lab}\0{link}\0{host}".encode()).hexdigest()[:8]
    return f"pk{digest}"


@dataclass(frozen=True, slots=True)
class Veth:
    ns_a: str
    name_a: str
    ns_b: str
    name_b: str


@dataclass(frozen=True, slots=True)
class NsConfig:
    """What goes inside one namespace once its interfaces exist."""

    ns: str
    sysctls: tuple[tuple[str, str], ...]
    bridges: tuple[str, ...] = ()
    ports: tuple[tuple[str, str], ...] = ()  # (port interface, bridge)
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, CIDR)
    up: tuple[str, ...] = ()  # interfaces to bring up (lo is always up)
    routes: tuple[tuple[str, str, int], ...] = ()  # (to, via, family)
    nft: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    lab: str
    host_ns: dict[str, str]
    switch_ns: tuple[str, ...]
    veths: tuple[Veth, ...]
    configs: tuple[NsConfig, ...]
    hosts_file: str
    resolv: dict[str, str] = field(default_factory=dict)  # ns -> resolv.conf text

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (*self.host_ns.values(), *self.switch_ns)


def nat_script(host: Host) -> str:
    """nftables text for a host's masquerade and port forwards (one inet table)."""
    if not host.masquerade and not host.forwards:
        return ""
    pre: list[str] = []
    for f in host.forwards:
        iif = f'iifname "{f.iif}" ' if f.iif else ""
        fam = "ip6" if ":" in f.to_address else "ip"
        target = f"[{f.to_address}]:{f.to_port}" if fam == "ip6" else f"{f.to_address}:{f.to_port}"
        pre.append(f"    meta nfproto {'ipv6' if fam == 'ip6' else 'ipv4'} {iif}{f.proto} dport {f.port} dnat {fam} to {target}")
    post: list[str] = []
    for m in host.masquerade:
        fam_match = {4: "meta nfproto ipv4 ", 6: "meta nfproto ipv6 ", 0: ""}[m.family]
        post.append(f'    {fam_match}oifname "{m.oif}" masquerade')
    return "\n".join(
        [
            "table inet portkit_lab_nat {",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            *pre,
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            *post,
            "  }",
            "}",
            "",
        ]
    )


def hosts_file(scenario: Scenario) -> str:
    """Every lab host name -> its addresses; ``host.link`` names one link's address."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for h in scenario.hosts:
        for link, cidr in scenario.addresses_of(h.name):
            ip = cidr.split("/")[0]
            lines.append(f"{ip}\t{h.name} {h.name}.{link}")
    return "\n".join(lines) + "\n"


def resolv_conf(host: Host) -> str:
    """A resolver that answers nothing: a loopback address where no UDP 53 listener is."""

    def covered(addr: str) -> bool:
        for s in host.services:
            if s.proto != "udp" or s.port != 53:
                continue
            if s.address == addr or (s.address == "0.0.0.0" and addr == "127.0.0.1"):
                return True
            if s.address == "::" and (addr == "::1" or (addr == "127.0.0.1" and s.v6only is not True)):
                return True
        return False

    server = next((a for a in ("127.0.0.1", "::1") if not covered(a)), "127.0.0.1")
    return (
        "# portkit lab: names come from this namespace's hosts file; this resolver answers nothing\n"
        f"nameserver {server}\noptions timeout:1 attempts:1\n"
    )


def make_plan(scenario: Scenario, lab: str) -> Plan:
    host_ns = {h.name: netns_name(lab, h.name) for h in scenario.hosts}
    veths: list[Veth] = []
    switches: list[str] = []
    addrs: dict[str, list[tuple[str, str]]] = {h: [] for h in host_ns}
    ups: dict[str, list[str]] = {h: [] for h in host_ns}
    sw_cfgs: list[NsConfig] = []
    for link in scenario.links:
        if link.bridge:
            sw = switch_name(lab, link.name)
            switches.append(sw)
            ports = []
            for end in link.ends:
                pname = port_name(lab, link.name, end.host)
                veths.append(Veth(host_ns[end.host], link.name, sw, pname))
                ports.append((pname, link.name))
            sw_cfgs.append(
                NsConfig(ns=sw, sysctls=SWITCH_SYSCTLS, bridges=(link.name,), ports=tuple(ports), up=(link.name,))
            )
        else:
            a, b = link.ends
            veths.append(Veth(host_ns[a.host], link.name, host_ns[b.host], link.name))
        for end in link.ends:
            ups[end.host].append(link.name)
            addrs[end.host].extend((link.name, c) for c in end.addresses)
    configs: list[NsConfig] = []
    for h in scenario.hosts:
        nft = h.firewall.strip()
        nat = nat_script(h)
        script = "\n".join(x for x in (nft, nat) if x)
        configs.append(
            NsConfig(
                ns=host_ns[h.name],
                sysctls=HOST_SYSCTLS + (FORWARD_SYSCTLS if h.forward else ()),
                addresses=tuple(addrs[h.name]),
                up=tuple(ups[h.name]),
                routes=tuple((r.to, r.via, r.family) for r in h.routes),
                nft=script + "\n" if script else "",
            )
        )
    return Plan(
        lab=lab,
        host_ns=host_ns,
        switch_ns=tuple(switches),
        veths=tuple(veths),
        configs=(*configs, *sw_cfgs),
        hosts_file=hosts_file(scenario),
        resolv={host_ns[h.name]: resolv_conf(h) for h in scenario.hosts},
    )


def ip_batch_links(plan: Plan) -> str:
    """``ip -batch`` lines (run in the root namespace) creating bridges and veth pairs in place."""
    lines = []
    for cfg in plan.configs:
        for br in cfg.bridges:
            lines.append(f"link add name {br} netns {cfg.ns} type bridge")
    for v in plan.veths:
        lines.append(f"link add name {v.name_a} netns {v.ns_a} type veth peer name {v.name_b} netns {v.ns_b}")
    return "\n".join(lines) + "\n"


def ip_batch_inside(cfg: NsConfig) -> str:
    """``ip -n NS -batch`` lines configuring one namespace."""
    lines = ["link set lo up"]
    for port, br in cfg.ports:
        lines.append(f"link set dev {port} master {br}")
    for dev, cidr in cfg.addresses:
        v6 = ipaddress.ip_interface(cidr).version == 6
        lines.append(f"addr add {cidr} dev {dev}{' nodad' if v6 else ''}")
    for dev in (*cfg.up, *(p for p, _ in cfg.ports)):
        lines.append(f"link set dev {dev} up")
    for to, via, _fam in cfg.routes:
        lines.append(f"route add {to} via {via}")
    return "\n".join(lines) + "\n"
