"""Issue 13 items 5 and 9 in a lab: a client on this host meets the output hook's NAT, and
`-m recent --set` without a target does not make the verdict unknown.

Host "dock" plays a Docker host (the rules Docker writes, in nft and iptables-nft form):
a published port 8081 -> 10.72.9.3:80 whose OUTPUT rule skips 127.0.0.0/8, so a local
connection to 127.0.0.1:8081 goes to whatever listens there (docker-proxy's place).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB: dict[str, Any] = {
    "name": "why13b",
    "hosts": {
        "dock": {
            "services": [
                {"proto": "tcp", "listen": "127.0.0.1:8081", "kind": "http"},
                {"proto": "tcp", "listen": "0.0.0.0:9009", "kind": "http"},
            ],
            "firewall": (
                "table ip nat {\n"
                "  chain PREROUTING {\n"
                "    type nat hook prerouting priority -100; policy accept;\n"
                "    fib daddr type local jump DOCKER\n"
                "  }\n"
                "  chain OUTPUT {\n"
                "    type nat hook output priority -100; policy accept;\n"
                "    ip daddr != 127.0.0.0/8 fib daddr type local jump DOCKER\n"
                "  }\n"
                "  chain DOCKER {\n"
                '    iifname != "dock0" tcp dport 8081 dnat to 10.72.9.3:80\n'
                "  }\n"
                "}\n"
            ),
        },
        "ctr": {},
    },
    "links": [{"name": "dock0", "ends": {"dock": ["10.72.9.2/24"], "ctr": ["10.72.9.3/24"]}}],
}


@pytest.fixture(scope="module")
def dock(lab_module: Any) -> Any:
    return lab_module(LAB)


def why(h: Any, host: str, *args: str) -> dict[str, Any]:
    r = h.portkit(host, "why", *args, "--json")
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["schema"] == 1
    return doc


def test_local_client_is_not_dnated_by_prerouting(dock: Any) -> None:
    doc = why(dock, "dock", "127.0.0.1:8081")
    assert doc["findings"][0]["code"] == "REACHABLE", doc["findings"]
    assert "10.72.9.3" not in json.dumps(doc["findings"])


def test_recent_set_without_target_does_not_decide(dock: Any) -> None:
    r = dock.run("dock", ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9009", "-m", "recent", "--set", "--name", "PK"])
    assert r.returncode == 0, r.stderr
    try:
        doc = why(dock, "dock", "10.72.9.2:9009", "--from", "10.72.9.3")
        assert doc["findings"][0]["code"] == "REACHABLE", doc["findings"]
    finally:
        dock.run("dock", ["iptables", "-D", "INPUT", "-p", "tcp", "--dport", "9009", "-m", "recent", "--set", "--name", "PK"])
