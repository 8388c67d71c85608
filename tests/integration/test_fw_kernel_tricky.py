"""Hand-written rulesets of the kinds users really have, checked against the kernel.

ufw-style and Docker-style rules written by iptables-nft (read back through iptables-save),
firewalld's nftables layout, several base chains of one hook at different priorities,
conntrack state, ``meta l4proto { tcp, udp } th dport``, interval sets, verdict maps,
negated prefixes. Each packet is predicted through the public ``check_packet`` (live
ruleset of the namespace, interfaces from its routes) and then sent for real from the
client; the prediction must match what the kernel does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.ops.firewall import check_packet
from tests.conftest import needs_tool
from tests.integration.test_fw_differential import (
    CLIENTS4,
    CLIENTS6,
    SERVERS4,
    SERVERS6,
    ProbeSpec,
    _expected,
    _run_probes,
)
from tests.integration.test_fw_differential import fwlab as _fwlab

pytestmark = [pytest.mark.root, needs_tool("nft")]

fwlab = _fwlab  # the two-host lab of the differential test: client -> server over "lan"

UFW = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
:ufw-after-input - [0:0]
:WEB - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -p tcp -m tcp ! --syn -m conntrack --ctstate NEW -j DROP
-A ufw-before-input -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports 7010 -j REJECT --reject-with tcp-reset
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 7001 -j ACCEPT
-A ufw-user-input -p tcp -m multiport --dports 7002,7004:7006 -m comment --comment "web" -j ACCEPT
-A ufw-user-input -s 10.77.0.3/32 -p tcp -m tcp --dport 7003 -j ACCEPT
-A ufw-user-input -p udp -m udp --dport 7007 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 7005 -j REJECT --reject-with tcp-reset
-A ufw-after-input -p tcp -m multiport --dports 7009,7010 -j WEB
-A ufw-after-input -m addrtype --dst-type BROADCAST -j DROP
-A ufw-after-input -p tcp -m tcp --dport 7008 -j REJECT --reject-with icmp-port-unreachable
-A WEB -m limit --limit 3/min -j LOG --log-prefix "[UFW BLOCK] "
-A WEB -s 10.77.0.2/31 -p tcp -m tcp --dport 7009 -j ACCEPT
COMMIT
"""

# Docker publishes 8080 -> 7002 (here: a local address, so input decides), ufw denies 8080
# and 7003 in INPUT: the deny of 8080 never sees the packet, whose port is 7002 by then.
DOCKER = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.77.0.100:7002
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.77.0.100:7003
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
-A INPUT -p tcp -m tcp --dport 8080 -j DROP
-A INPUT -p tcp -m tcp --dport 7003 -j DROP
-A INPUT -p tcp -m tcp --dport 7004 -j REJECT --reject-with tcp-reset
COMMIT
"""

FIREWALLD = """\
table inet firewalld {
  chain filter_PREROUTING {
    type filter hook prerouting priority filter + 10; policy accept;
    icmpv6 type { nd-router-advert, nd-neighbor-solicit } accept
    meta nfproto ipv6 fib saddr . mark . iif oif missing drop
    meta nfproto ipv4 fib saddr . iif oif missing drop
  }
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    ct state vmap { established : accept, related : accept, invalid : drop }
    iifname "lo" accept
    jump filter_INPUT_ZONES
    ct state { established, related } accept
    reject with icmpx admin-prohibited
  }
  chain filter_INPUT_ZONES {
    iifname "lan" goto filter_IN_public
    goto filter_IN_public
  }
  chain filter_IN_public {
    jump filter_IN_public_pre
    jump filter_IN_public_deny
    jump filter_IN_public_allow
    meta l4proto { icmp, ipv6-icmp } accept
  }
  chain filter_IN_public_pre { }
  chain filter_IN_public_deny {
    ip saddr 10.77.0.6 tcp dport 7001 drop
    ip6 saddr fd77::6 drop
  }
  chain filter_IN_public_allow {
    tcp dport 7001 ct state { new, untracked } accept
    ip saddr 10.77.0.4 tcp dport 7002 ct state { new, untracked } accept
    ip6 daddr fe80::/64 udp dport 546 ct state { new, untracked } accept
  }
}
"""

MIXED = """\
table inet early {
  set ports { type inet_service; flags interval; elements = { 7001-7003, 7010 } }
  set nets { type ipv4_addr; flags interval; elements = { 10.77.0.2-10.77.0.3, 10.77.0.6/31 } }
  chain pre { type filter hook input priority -10; policy accept;
    ct state established,related accept
    ip saddr != 10.77.0.0/29 drop
    ip saddr @nets tcp dport @ports accept
    meta l4proto { tcp, udp } th dport 7004 reject
    tcp dport 7009 limit rate over 100000/second burst 100000 packets drop
  }
}
table ip late {
  map pm { type inet_service : verdict; elements = { 7001 : drop, 7005 : accept, 7006 : jump more } }
  chain more { ip saddr 10.77.0.5 return
    reject with tcp reset
  }
  chain in10 { type filter hook input priority 10; policy drop;
    iifname "lo" accept
    tcp dport vmap @pm
    udp dport vmap { 7002 : accept, 7003 : drop }
    tcp dport 7002-7003 accept
    meta l4proto tcp th dport 7006 accept
  }
}
table ip6 late6 {
  chain in10 { type filter hook input priority 10; policy accept;
    ip6 saddr fd77::3 tcp dport 7001-7005 drop
    tcp dport 7006 reject with icmpv6 admin-prohibited
  }
}
"""

# Two base chains at the same priority (the one registered later runs first), an ingress
# chain on the device, and a raw chain that marks packets for a later one.
SAMEPRIO = """\
table inet a {
  chain i { type filter hook input priority 0; policy accept;
    tcp dport 7001 drop
    tcp dport 7002 accept
    tcp dport 7003 reject with tcp reset
  }
}
table inet b {
  chain i { type filter hook input priority 0; policy accept;
    tcp dport 7001 reject with tcp reset
    tcp dport 7002 drop
    tcp dport 7003 drop
    udp dport 7004 drop
  }
  chain raw { type filter hook prerouting priority raw; policy accept;
    tcp dport 7008 meta mark set 0x7
  }
  chain late { type filter hook input priority 50; policy accept;
    meta mark 0x7 reject with tcp reset
  }
}
table netdev n {
  chain ing { type filter hook ingress device "lan" priority 0; policy accept;
    tcp dport 7005 drop
    ip saddr 10.77.0.3 udp dport 7006 drop
    ip6 saddr fd77::4 tcp dport 7006 drop
  }
}
"""

RULESETS: dict[str, tuple[str, str]] = {
    "sameprio": ("nft", SAMEPRIO),
    "ufw": ("iptables", UFW),
    "docker": ("iptables", DOCKER),
    "firewalld": ("nft", FIREWALLD),
    "mixed": ("nft", MIXED),
}


# A source the server routes through another interface: the reverse-path check drops it.
SPOOFED4 = "10.77.9.2"


@pytest.fixture(scope="module")
def _spoof(fwlab: Any) -> Any:
    # no dummy driver everywhere: a veth pair with both ends in the server does as well
    fwlab.run("server", ["ip", "link", "add", "spf0", "type", "veth", "peer", "name", "spf1"], check=True)
    for dev in ("spf0", "spf1"):
        fwlab.run("server", ["ip", "link", "set", dev, "up"], check=True)
    fwlab.run("server", ["ip", "addr", "add", "10.77.9.1/24", "dev", "spf0"], check=True)
    fwlab.run("client", ["ip", "addr", "add", f"{SPOOFED4}/32", "dev", "lan"], check=True)
    return fwlab


@pytest.fixture
def server(_spoof: Any) -> Iterator[Any]:
    yield _spoof
    _spoof.nft("server", "flush ruleset\n")


def _load(h: Any, kind: str, text: str) -> None:
    h.nft("server", "flush ruleset\n")
    if kind == "iptables":
        proc = h.run("server", ["iptables-restore"], input=text)
        assert proc.returncode == 0, proc.stderr
    else:
        h.nft("server", text)


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_common_rulesets_agree_with_kernel(server: Any, name: str) -> None:
    kind, text = RULESETS[name]
    if kind == "iptables" and shutil.which("iptables-restore") is None:
        pytest.skip("iptables-restore is not installed")
    _load(server, kind, text)
    ns = server.netns("server")
    specs: list[ProbeSpec] = []
    preds = []
    sport = 41000 + 1000 * sorted(RULESETS).index(name)
    # replies to the spoofed source leave through the other interface, so only a ruleset
    # that drops it (reverse-path check) can be compared with what the client sees
    spoofed = (SPOOFED4,) if name == "firewalld" else ()
    for fam, clients, servers in ((4, (*CLIENTS4, *spoofed), SERVERS4), (6, CLIENTS6, SERVERS6)):
        for src in clients:
            for dport in (*range(7001, 7011), 8080, 8081):
                for proto in ("tcp", "udp"):
                    if proto == "udp" and dport > 7010:
                        continue
                    dst = servers[dport % 2]
                    sport += 1
                    res = check_packet(hook="in", proto=proto, src=src, dst=dst, dport=dport, sport=sport, iif="lan", netns=ns)
                    specs.append(ProbeSpec(proto, src, sport, dst, dport))
                    t = res.translated_destination
                    preds.append((res, t.port if t is not None and t.port else dport))
        del fam
    unknown = [f"{s}: {r.reason}" for s, (r, _) in zip(specs, preds, strict=True) if r.verdict == "unknown"]
    assert not unknown, "\n".join(unknown[:10])
    verdicts = {r.verdict for r, _ in preds}
    assert {"accept", "drop", "reject"} <= verdicts, f"{name}: a weak ruleset, only {verdicts}"
    assert any(r.translated_destination for r, _ in preds) == (name == "docker")
    if spoofed:
        assert {r.verdict for s, (r, _) in zip(specs, preds, strict=True) if s.src == SPOOFED4} == {"drop"}
    seen = server.call("client", lambda: _run_probes(specs))
    bad = [
        f"{s}: predicted {r.verdict} ({r.decided_by.rule if r.decided_by else None}), kernel said {got}"
        for s, (r, port), got in zip(specs, preds, seen, strict=True)
        if got not in _expected(r.verdict, s.proto, port, "accept")
    ]
    assert not bad, f"{name}: {len(bad)} of {len(specs)} disagree:\n" + "\n".join(bad[:15])


# Docker on a router (its bridge played by "wan", the container by the server): published
# ports are DNATed in nat PREROUTING and decided in filter FORWARD (DOCKER-USER, isolation,
# DOCKER), so the ufw-style "deny 8080" in INPUT never sees them.
DOCKER_ROUTER = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.80.2.0/24 ! -o wan -j MASQUERADE
-A DOCKER -i wan -j RETURN
-A DOCKER ! -i wan -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.80.2.2:7001
-A DOCKER ! -i wan -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.80.2.2:7002
-A DOCKER ! -i wan -p tcp -m tcp --dport 8082 -j DNAT --to-destination 10.80.2.2:7003
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o wan -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o wan -j DOCKER
-A FORWARD -i wan ! -o wan -j ACCEPT
-A FORWARD -i wan -o wan -j ACCEPT
-A DOCKER -d 10.80.2.2/32 ! -i wan -o wan -p tcp -m tcp --dport 7001 -j ACCEPT
-A DOCKER -d 10.80.2.2/32 ! -i wan -o wan -p tcp -m tcp --dport 7002 -j ACCEPT
-A DOCKER -d 10.80.2.2/32 ! -i wan -o wan -p tcp -m tcp --dport 7004 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i wan ! -o wan -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o wan -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -s 10.80.1.3/32 -p tcp -m tcp --dport 7002 -j REJECT --reject-with icmp-port-unreachable
-A DOCKER-USER -j RETURN
COMMIT
"""


def test_docker_published_ports_and_ufw_deny_agree_with_kernel(lab: Any) -> None:
    from tests.integration.test_fw_differential import _listeners
    from tests.integration.test_fw_differential_forward import CLIENTS, ROUTER_LAN, SCENARIO, SERVER

    if shutil.which("iptables-restore") is None:
        pytest.skip("iptables-restore is not installed")
    h = lab(SCENARIO)
    for a in CLIENTS[1:]:
        h.run("client", ["ip", "addr", "add", f"{a}/24", "dev", "lan"], check=True)
    proc = h.run("router", ["iptables-restore"], input=DOCKER_ROUTER)
    assert proc.returncode == 0, proc.stderr
    listeners = h.call("server", _listeners)
    ns = h.netns("router")
    specs: list[ProbeSpec] = []
    preds = []
    sport = 47000
    try:
        for src in CLIENTS:
            for dst, hook, ports in ((ROUTER_LAN, "in", (22, 23, 24, 8080, 8081, 8082)), (SERVER, "forward", (7001, 7002, 7004, 7005))):
                for dport in ports:
                    sport += 1
                    res = check_packet(hook=hook, proto="tcp", src=src, dst=dst, dport=dport, sport=sport, iif="lan", netns=ns)
                    t = res.translated_destination
                    reaches_server = (t is not None and t.address == SERVER) or dst == SERVER
                    port = t.port if t is not None and t.port else dport
                    specs.append(ProbeSpec("tcp", src, sport, dst, dport))
                    preds.append((res, port if reaches_server else 0))
        published = [r for s, (r, _) in zip(specs, preds, strict=True) if s.dport == 8080]
        assert all(r.verdict == "accept" and r.hook == "forward" for r in published)  # ufw's deny never sees it
        assert {r.verdict for r, _ in preds} == {"accept", "drop", "reject"}
        assert not [r for r, _ in preds if r.verdict == "unknown"], [r.reason for r, _ in preds if r.verdict == "unknown"]
        seen = h.call("client", lambda: _run_probes(specs))
    finally:
        for s in listeners:
            s.close()
    bad = [
        f"{s}: predicted {r.verdict} via {r.hook} ({r.decided_by.rule if r.decided_by else None}), kernel said {got}"
        for s, (r, port), got in zip(specs, preds, seen, strict=True)
        if got not in _expected(r.verdict, "tcp", port, "accept")
    ]
    assert not bad, f"{len(bad)} of {len(specs)} disagree:\n" + "\n".join(bad)
