"""Pasteable fixes in the language of the table's owner (issue 13, items 11 and 12).

Theory of operation: the rule that decided names a table and a chain. Their names tell
who owns them: portkit's own policy (table ``portkit``) is changed with ``portkit fw``;
ufw's chains (``ufw-*``, ``ufw6-*``) with ``ufw allow``; firewalld's table
(``inet firewalld``) with ``firewall-cmd`` (runtime plus ``--permanent``); Docker's chains
(``DOCKER*`` in the iptables ``filter`` table) with a ``DOCKER-USER`` rule; the other
tables of iptables-nft (family ip/ip6, the iptables table names, upper-case built-in
chains) with ``iptables -I`` / ``ip6tables -I``; anything else with ``nft insert rule``.

Nothing is spliced unchecked: every value that goes into a command is validated first
(the port is an integer in range, the protocol one of the known ones, addresses and
networks parse, table and chain names are plain identifiers). A value that fails the check
yields no command at all, and the caller falls back to words.
"""

from __future__ import annotations

import ipaddress
import re

from portkit.model.diagnosis import RuleVerdict

__all__ = ["allow_command", "owner_of"]

PROTOS = ("tcp", "udp", "sctp")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
IPTABLES_CHAINS = ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING")


def owner_of(v: RuleVerdict) -> str:
    """Who owns the table that decided: portkit, ufw, firewalld, docker, iptables or nft."""
    table, chain = v.table or "", v.chain or ""
    if table == "portkit" or (v.table is None and v.hook in ("in", "out")):
        return "portkit"
    if chain.startswith(("ufw-", "ufw6-")):
        return "ufw"
    if table == "firewalld":
        return "firewalld"
    if v.family in ("ip", "ip6") and table in IPTABLES_TABLES:
        if chain.startswith("DOCKER"):
            return "docker"
        if chain in IPTABLES_CHAINS or chain.isupper():
            return "iptables"
    return "nft"


def checked_address(value: str | None) -> str | None:
    """``value`` when it is an address or a network, else None."""
    if value is None:
        return None
    try:
        return (
            str(ipaddress.ip_network(value, strict=False))
            if "/" in value
            else str(ipaddress.ip_address(value))
        )
    except ValueError:
        return None


def family_of(address: str) -> int:
    return ipaddress.ip_network(address, strict=False).version


def allow_command(
    v: RuleVerdict, *, direction: str, proto: str, port: int, peer: str | None, dst: str
) -> list[str] | None:
    """The command line(s) that let the packet through the table that decided, or None.

    None when a value does not validate (then no command is printed).
    """
    if proto not in PROTOS or not 0 < port < 65536 or direction not in ("in", "out", "forward"):
        return None
    dst_ok = checked_address(dst)
    peer_ok = checked_address(peer)
    if dst_ok is None or (peer is not None and peer_ok is None):
        return None
    owner = owner_of(v)
    if owner == "portkit":
        if direction == "out":
            return [f"portkit fw allow {port}/{proto} --out --to {dst_ok}"]
        who = f" --from {peer_ok}" if peer_ok else ""
        return [f"portkit fw allow {port}/{proto} --in{who}"]
    if owner == "ufw":
        if direction == "out":
            return [f"ufw allow out to {dst_ok} port {port} proto {proto}"]
        src = peer_ok or "any"
        if direction == "forward":
            return [f"ufw route allow proto {proto} from {src} to {dst_ok} port {port}"]
        return [f"ufw allow proto {proto} from {src} to any port {port}"]
    if owner == "firewalld":
        if peer_ok:
            fam = "ipv6" if family_of(peer_ok) == 6 else "ipv4"
            rich = f"rule family={fam} source address={peer_ok} port port={port} protocol={proto} accept"
            return [
                f"firewall-cmd --add-rich-rule='{rich}'",
                f"firewall-cmd --permanent --add-rich-rule='{rich}'",
            ]
        return [
            f"firewall-cmd --add-port={port}/{proto}",
            f"firewall-cmd --permanent --add-port={port}/{proto}",
        ]
    chain = v.chain or ""
    table = v.table or ""
    if owner in ("docker", "iptables"):
        if not NAME.match(chain) or not NAME.match(table):
            return None
        tool = "ip6tables" if v.family == "ip6" else "iptables"
        if owner == "docker":
            chain, table = "DOCKER-USER", "filter"
        src = f" -s {peer_ok}" if peer_ok and direction != "out" else ""
        tbl = "" if table == "filter" else f" -t {table}"
        return [f"{tool}{tbl} -I {chain}{src} -d {dst_ok} -p {proto} --dport {port} -j ACCEPT"]
    fam = v.family or "inet"
    if (
        fam not in ("inet", "ip", "ip6", "bridge", "netdev", "arp")
        or not NAME.match(table)
        or not NAME.match(chain)
    ):
        return None
    l3d = "ip6" if family_of(dst_ok) == 6 else "ip"
    match = f"{l3d} daddr {dst_ok} {proto} dport {port}"
    if peer_ok and direction != "out":
        l3s = "ip6" if family_of(peer_ok) == 6 else "ip"
        match = f"{l3s} saddr {peer_ok} " + match
    where = f"{fam} {table} {chain}"
    if v.handle is not None:
        return [f"nft insert rule {where} position {int(v.handle)} {match} accept"]
    return [f"nft add rule {where} {match} accept"]
