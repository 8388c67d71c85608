"""``fw check``: the verdict of the live ruleset (or a policy file) for one packet.

Kept apart from :mod:`portkit.ops.firewall` so that a check imports only what it needs
(the reader, the evaluator, the model): start-up is a large part of a check's time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from portkit.backends import host
from portkit.backends.nftlive import read_live
from portkit.engine.endpoint import check_ifname, is_ascii_number, shown
from portkit.engine.nfteval import Evaluator
from portkit.errors import InputError, TargetError
from portkit.model.firewall import HOOKS, PORT_PROTOS, FwCheckResult, IPAddress, NftRuleset, Packet


def local_ip_addresses(netns: str | None) -> frozenset[IPAddress]:
    return host.local_addresses(netns=netns)


def parse_address(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise TargetError(f"bad {what} address {shown(text)!r}; use an IPv4 or IPv6 address such as 192.0.2.1") from None


_PORT_PROTO_NUMBERS = frozenset({6, 17, 33, 132, 136})  # tcp, udp, dccp, sctp, udplite: PORT_PROTOS


def make_packet(
    *, hook: str, proto: str, src: str, dst: str, dport: int | None, sport: int | None = None,
    iif: str | None = None, oif: str | None = None,
) -> Packet:  # fmt: skip
    if hook not in HOOKS:
        raise InputError(f"bad hook {hook!r}; valid ones are: {', '.join(HOOKS)}")
    s, d = parse_address(src, "source"), parse_address(dst, "destination")
    if s.version != d.version:
        raise TargetError(f"source {src} and destination {dst} are of different IP versions")
    proto = proto.lower()
    if proto == "ipv6-icmp":
        proto = "icmpv6"
    if proto in PORT_PROTOS:
        if dport is None:
            raise InputError(f"--dport is needed for protocol {proto}")
    elif proto not in ("icmp", "icmpv6") and not (is_ascii_number(proto) and len(proto) <= 3 and int(proto) <= 255):
        raise InputError(f"bad protocol {shown(proto)!r}; valid ones are: tcp, udp, sctp, icmp, icmpv6 or a number 0-255")
    elif proto in ("icmp", "icmpv6") or int(proto) not in _PORT_PROTO_NUMBERS:
        given = [f"--{n} {p}" for n, p in (("dport", dport), ("sport", sport)) if p is not None]
        if given:
            raise InputError(
                f"bad packet: protocol {proto} has no ports, but {' and '.join(given)} was given; "
                "ports go with tcp, udp, sctp (and udplite, dccp)"
            )
    for name, port in (("dport", dport), ("sport", sport)):
        if port is not None and not 0 <= port <= 65535:
            raise InputError(f"bad {name} {port}; ports are 0-65535")
    for name, ifname in (("--iif", iif), ("--oif", oif)):
        if ifname is not None:
            check_ifname(ifname, what=f"{name} interface name")
    return Packet(hook, proto, s, d, dport, sport, iif, oif)


def check_packet(
    *,
    hook: str,
    proto: str,
    src: str,
    dst: str,
    dport: int | None,
    sport: int | None = None,
    iif: str | None = None,
    oif: str | None = None,
    netns: str | None = None,
    ruleset: NftRuleset | Mapping[str, Any] | None = None,
    policy_file: str | None = None,
    local_addresses: frozenset[IPAddress] | None = None,
) -> FwCheckResult:
    """The verdict for one packet of a new connection, and the rule that decided it.

    Against the live ruleset of ``netns`` (default), a given ``ruleset`` (a model or the
    ``nft -j`` dict), or a policy file. Missing interfaces are filled in from the routing
    table when the live ruleset is used.
    """
    pkt = make_packet(hook=hook, proto=proto, src=src, dst=dst, dport=dport, sport=sport, iif=iif, oif=oif)
    if policy_file is not None:
        from portkit.engine.policy import evaluate_policy
        from portkit.ops.firewall_policy import load_policy_file

        return evaluate_policy(load_policy_file(policy_file), pkt)
    route = None
    load_set = None
    if ruleset is None:
        rs, load_set = read_live(netns=netns)
        if local_addresses is None:
            local_addresses = local_ip_addresses(netns)
        pkt = _fill_interfaces(pkt, netns, local_addresses)

        def route(addr: IPAddress) -> str | None:
            return host.route_dev(str(addr), netns=netns)
    else:
        from portkit.parse.nftjson import parse_ruleset

        rs = ruleset if isinstance(ruleset, NftRuleset) else parse_ruleset(ruleset)
    return Evaluator(rs, local_addresses=local_addresses, route=route, load_set=load_set).evaluate(pkt)


def _fill_interfaces(pkt: Packet, netns: str | None, local: frozenset[IPAddress]) -> Packet:
    iif, oif = pkt.iif, pkt.oif
    if iif is None and pkt.hook in ("in", "forward"):
        iif = "lo" if pkt.src in local or pkt.src.is_loopback else host.route_dev(str(pkt.src), netns=netns)
    if oif is None and pkt.hook in ("out", "forward"):
        oif = "lo" if pkt.dst in local or pkt.dst.is_loopback else host.route_dev(str(pkt.dst), netns=netns)
    if (iif, oif) == (pkt.iif, pkt.oif):
        return pkt
    return Packet(pkt.hook, pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, iif, oif, pkt.icmp_type)
