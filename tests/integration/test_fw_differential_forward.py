"""The evaluator agrees with the kernel on a router: DNAT in prerouting sends a packet
addressed to the router through the forward hook to another host (Docker's published
ports), and random forward/input chains decide it.

Reproduce a failure with PK_FW_SEED=<seed printed in the assertion>.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
from typing import Any

import pytest

from portkit.engine.nfteval import Evaluator
from portkit.model.firewall import Packet
from portkit.ops.firewall import live_ruleset
from tests.conftest import needs_tool
from tests.integration.test_fw_differential import LISTEN, ProbeSpec, _expected, _listeners, _run_probes

pytestmark = [pytest.mark.root, needs_tool("nft")]

CLIENTS = ("10.80.1.2", "10.80.1.3", "10.80.1.4")
ROUTER_LAN, ROUTER_WAN, SERVER = "10.80.1.1", "10.80.2.1", "10.80.2.2"
SCENARIO: dict[str, Any] = {
    "name": "fwfwd",
    "hosts": {
        "client": {"routes": [{"to": "default", "via": ROUTER_LAN}]},
        "router": {"forward": True},
        "server": {"routes": [{"to": "default", "via": ROUTER_WAN}]},
    },
    "links": [
        {"name": "lan", "ends": {"client": [f"{CLIENTS[0]}/24"], "router": [f"{ROUTER_LAN}/24"]}},
        {"name": "wan", "ends": {"router": [f"{ROUTER_WAN}/24"], "server": [f"{SERVER}/24"]}},
    ],
}
PORTS = tuple(range(7001, 7021))


def _match(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.4:
        parts.append(f"ip saddr {rng.choice([*CLIENTS, '10.80.1.0/30', '10.80.1.2-10.80.1.3'])}")
    if rng.random() < 0.6:
        lo = rng.choice(PORTS)
        parts.append(rng.choice([f"tcp dport {lo}", f"tcp dport {lo}-{lo + 4}", f"tcp dport {{ {lo}, {rng.choice(PORTS)} }}"]))
    if rng.random() < 0.2:
        parts.append(rng.choice(['iifname "lan"', 'oifname "wan"', 'oifname != "lan"', "ct status dnat", "ip daddr 10.80.2.2"]))
    return " ".join(parts)


def random_router_ruleset(rng: random.Random) -> str:
    dnat = []
    for _ in range(rng.randint(1, 4)):
        dnat.append(f"    {_match(rng).replace('tcp dport', 'tcp sport') if rng.random() < 0.1 else ''} tcp dport {rng.choice(PORTS) + 1000} dnat ip to {SERVER}:{rng.choice(PORTS)}".replace("  ", " "))
    dnat.append(f"    tcp dport 8000-8020 dnat ip to {SERVER}:7001")
    chains = []
    for i in range(rng.randint(1, 2)):
        rules = ["    ct state established,related accept"]  # replies must pass: the test is about the first packet
        for _ in range(rng.randint(1, 5)):
            rules.append(f"    {_match(rng)} {rng.choice(['accept', 'drop', 'reject', 'reject with tcp reset', 'counter'])}")
        prio = rng.choice([-5, 0, 0, 10])
        chains.append(f"  chain fwd{i} {{\n    type filter hook forward priority {prio}; policy {rng.choice(['accept', 'drop'])};\n" + "\n".join(rules) + "\n  }")
    inp = f"  chain inp {{\n    type filter hook input priority 0; policy {rng.choice(['accept', 'drop'])};\n    {_match(rng)} {rng.choice(['accept', 'reject'])}\n  }}"
    return (
        "flush ruleset\ntable ip nat {\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        + "\n".join(dnat) + "\n  }\n}\ntable inet filter {\n" + "\n".join(chains) + "\n" + inp + "\n}\n"
    )


def test_dnat_and_forward_agree_with_kernel(lab: Any) -> None:
    seed = int(os.environ.get("PK_FW_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    h = lab(SCENARIO)
    for a in CLIENTS[1:]:
        h.run("client", ["ip", "addr", "add", f"{a}/24", "dev", "lan"], check=True)
    listeners = h.call("server", _listeners)
    local = {ipaddress.ip_address(a) for a in (ROUTER_LAN, ROUTER_WAN, "127.0.0.1")}
    mac = json.loads(h.run("client", ["ip", "-j", "link", "show", "lan"], check=True).stdout)[0]["address"]
    for a in CLIENTS:  # static neighbours: random chains must not stall ARP-less replies
        h.run("router", ["ip", "neigh", "replace", a, "lladdr", mac, "dev", "lan", "nud", "permanent"], check=True)
    sport = 30000
    total, failures = 0, []
    try:
        for round_no in range(8):
            script = random_router_ruleset(rng)
            h.nft("router", script)
            ev = Evaluator(live_ruleset(netns=h.netns("router")), local_addresses=local,
                           route=lambda a: "wan" if a in ipaddress.ip_network("10.80.2.0/24") else "lan")  # fmt: skip
            specs, preds = [], []
            for _ in range(60):
                sport += 1
                src = rng.choice(CLIENTS)
                r = rng.random()
                if r < 0.7:  # to the router: published ports (DNAT to the server) or its own (input)
                    spec = ProbeSpec("tcp", src, sport, ROUTER_LAN, rng.choice(PORTS) + (1000 if r < 0.55 else 2000))
                    pkt = Packet("in", "tcp", ipaddress.ip_address(src), ipaddress.ip_address(ROUTER_LAN), spec.dport, sport, "lan")
                else:  # straight through the router to the server
                    spec = ProbeSpec("tcp", src, sport, SERVER, rng.choice(PORTS))
                    pkt = Packet("forward", "tcp", ipaddress.ip_address(src), ipaddress.ip_address(SERVER), spec.dport, sport, "lan", "wan")
                res = ev.evaluate(pkt)
                t = res.translated_destination
                reaches_server = (t is not None and t.address == SERVER) or spec.dst == SERVER
                port = t.port if t is not None and t.port else spec.dport
                specs.append(spec)
                preds.append((res, port if reaches_server else 0))
            seen = h.call("client", lambda specs=specs: _run_probes(specs))
            for spec, (res, port), got in zip(specs, preds, seen, strict=True):
                total += 1
                if got not in _expected(res.verdict, "tcp", port, "accept"):
                    failures.append(f"round {round_no} {spec}: predicted {res.verdict} via {res.hook} ({res.decided_by}), kernel said {got}\n{script}")
    finally:
        for s in listeners:
            s.close()
    assert total >= 400 and LISTEN
    assert not failures, f"seed {seed}: {len(failures)} disagreements:\n" + "\n".join(failures[:5])

