"""Issue 13 items 5 and 9 in a lab: a client on this host meets the output hook's NAT, and
`-m recent --set` without a target does not make the verdict unknown.

Host "dock" plays a Docker host (the rules Docker writes, in nft and iptables-nft form):
a published port 8081 -> 10.72.9.3:80 whose OUTPUT rule skips 127.0.0.0/8, so a local
connection to 127.0.0.1:8081 goes to whatever listens there (docker-proxy's place).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import needs_tool, run_cli

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


# --------------------------------------------------------------------------- item 4

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def port_forward(lab: Any) -> Iterator[Any]:
    h = lab(os.path.join(ROOT, "examples/labs/port-forward.yaml"))
    yield h
    name = h.netns("router")
    for leftover in (f"/run/portkit/forward/{name}.json", f"/run/portkit/rollback/forward-{name}.lock"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@needs_tool("nft")
def test_kernel_forward_evidence_names_the_dnat_not_the_masquerade(port_forward: Any) -> None:
    h = port_forward
    router, inside = h.netns("router"), h.address("inside")
    wan, client = h.address("router", link="wan"), h.address("client")
    r = run_cli("forward", "--kernel", "--netns", router, f"0.0.0.0:9091:{inside}:2989")
    assert r.code == 0, r.stderr
    doc = why(h, "router", f"{wan}:9091", "--from", client)
    dnat_lines = [e for f in doc["findings"] for e in f["evidence"] if e.startswith("DNAT rule")]
    assert dnat_lines and all("masquerade" not in e and "dnat" in e for e in dnat_lines), doc["findings"]
    r = run_cli("fw", "check", "--netns", router, "--src", client, "--dst", wan, "--dport", "9091", "--json")
    assert r.code == 0, r.stderr
    res = json.loads(r.stdout)
    assert "masquerade" not in json.dumps(res.get("decided_by")), res
