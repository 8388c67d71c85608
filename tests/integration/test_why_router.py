"""`portkit why` on and through a router that forwards ports (DNAT), and on the shipped example labs.

The DNAT lab: client (outside, 198.51.100.10) -- router (198.51.100.1 | 10.0.31.1) -- inside (10.0.31.2).
The router's input rules drop everything new (default deny, like ufw), and it forwards:
8080 -> inside:2988 (works: reachable *despite* the input deny, the Docker trap),
8081 -> inside:2989 (nothing listens), 8082 -> far:80 (the router has no route there),
8083 -> inside:2990 (its forward chain drops 2990), 8084 -> itself:2991 (nothing listens;
its service is on 2992), 8085 -> inside:2993 (inside's input rules drop it).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "labs"

DNAT_LAB: dict[str, Any] = {
    "name": "why-dnat",
    "hosts": {
        "client": {"routes": [{"to": "default", "via": "198.51.100.1"}]},
        "router": {
            "forward": True,
            "nat": {
                "forwards": [
                    {"proto": "tcp", "port": 8080, "to": "10.0.31.2:2988", "iif": "wan"},
                    {"proto": "tcp", "port": 8081, "to": "10.0.31.2:2989", "iif": "wan"},
                    {"proto": "tcp", "port": 8082, "to": "10.0.32.2:80", "iif": "wan"},
                    {"proto": "tcp", "port": 8083, "to": "10.0.31.2:2990", "iif": "wan"},
                    {"proto": "tcp", "port": 8084, "to": "10.0.31.1:2991", "iif": "wan"},
                    {"proto": "tcp", "port": 8085, "to": "10.0.31.2:2993", "iif": "wan"},
                ]
            },
            "services": [{"proto": "tcp", "listen": "0.0.0.0:2992", "kind": "echo"}],
            "firewall": (
                "table inet filter {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy drop;\n"
                "    ct state established,related accept\n"
                '    iif "lo" accept\n'
                "    meta l4proto { icmp, ipv6-icmp } accept\n"
                "    tcp dport { 2991, 2992 } accept\n"
                "  }\n"
                "  chain forward {\n"
                "    type filter hook forward priority 0; policy accept;\n"
                "    tcp dport 2990 drop\n"
                "  }\n"
                "}\n"
            ),
        },
        "inside": {
            "routes": [{"to": "default", "via": "10.0.31.1"}],
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:2988", "kind": "echo"},
                {"proto": "tcp", "listen": "0.0.0.0:2990", "kind": "echo"},
                {"proto": "tcp", "listen": "0.0.0.0:2993", "kind": "echo"},
            ],
            "firewall": "table inet filter {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 2993 drop\n  }\n}\n",
        },
        "far": {"services": [{"proto": "tcp", "listen": "0.0.0.0:80", "kind": "http"}]},
    },
    "links": [
        {"name": "wan", "ends": {"client": ["198.51.100.10/24"], "router": ["198.51.100.1/24"]}},
        {"name": "lan", "ends": {"router": ["10.0.31.1/24"], "inside": ["10.0.31.2/24"]}},
        {"name": "back", "ends": {"inside": ["10.0.32.1/24"], "far": ["10.0.32.2/24"]}},
    ],
}

ROUTER = "198.51.100.1"


@pytest.fixture(scope="module")
def dnat_lab(lab_module: Any) -> Any:
    return lab_module(DNAT_LAB)


def why(h: Any, host: str, *args: str) -> dict[str, Any]:
    r = h.portkit(host, "why", *args, "--json")
    assert r.returncode in (0, 1), f"exit {r.returncode}: {r.stderr}"
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["reachable"] == (r.returncode == 0)
    assert doc["reachable"] == (doc["findings"][0]["code"] == "REACHABLE")
    for f in doc["findings"]:
        assert f["code"] == "REACHABLE" or f["evidence"], f"{f['code']} without evidence"
    return doc


def codes(doc: dict[str, Any]) -> list[str]:
    return [f["code"] for f in doc["findings"]]


def test_docker_trap_reachable_despite_inbound_deny(dnat_lab: Any) -> None:
    doc = why(dnat_lab, "router", f"{ROUTER}:8080")
    assert codes(doc) == ["REACHABLE", "EXPOSED_DESPITE_INBOUND_DENY"]
    ex = doc["findings"][1]
    assert "10.0.31.2:2988" in ex["message"] and "ct status dnat drop" in ex["fix"]
    assert any("DNAT rule" in e and "8080" in e for e in ex["evidence"])
    checks = {c["name"]: c["status"] for c in doc["checks"]}
    assert checks["dnat"] == "pass" and checks["inbound"] == "fail" and checks["forward"] == "pass"


def test_client_reaches_the_forward(dnat_lab: Any) -> None:
    doc = why(dnat_lab, "client", "router:8080")
    assert codes(doc)[0] == "REACHABLE"


@pytest.mark.parametrize(
    ("port", "code"),
    [
        (8081, "FORWARD_TARGET_NOT_LISTENING"),
        (8082, "FORWARD_TARGET_UNREACHABLE"),
        (8083, "FIREWALL_FORWARD"),
        (8084, "FORWARD_TARGET_NOT_LISTENING"),
        (8085, "FORWARD_TARGET_UNREACHABLE"),
    ],
)
def test_router_vantage(dnat_lab: Any, port: int, code: str) -> None:
    doc = why(dnat_lab, "router", f"{ROUTER}:{port}", "--from", "198.51.100.10")
    assert codes(doc)[0] == code and not doc["reachable"]
    assert "EXPOSED_DESPITE_INBOUND_DENY" not in codes(doc)


def test_forward_to_the_wrong_port_names_the_right_one(dnat_lab: Any) -> None:
    doc = why(dnat_lab, "router", f"{ROUTER}:8084")
    assert doc["findings"][0]["fix"].startswith("forward 8084 points at 2991 but the service listens on 2992")


def test_client_sees_the_forward_drop_as_filtered_on_path(dnat_lab: Any) -> None:
    doc = why(dnat_lab, "client", "router:8083")
    assert codes(doc)[0] == "FILTERED_ON_PATH"
    assert any("forwards this port to another host" in e for e in doc["findings"][0]["evidence"])


def test_conntrack_translation_is_shown_after_a_connection(dnat_lab: Any) -> None:
    assert dnat_lab.probe("client", ROUTER, 8080, send=b"hi").state == "open"
    doc = why(dnat_lab, "router", f"{ROUTER}:8080")
    ct = next(c for c in doc["checks"] if c["name"] == "conntrack")
    assert ct["status"] == "pass" and "10.0.31.2:2988" in ct["detail"]


# ----------------------------------------------------------------------------- shipped examples


def test_example_inbound_rules(lab: Any) -> None:
    h = lab(EXAMPLES / "inbound-rules.yaml")
    assert codes(why(h, "client1", "server:80"))[0] == "REACHABLE"
    doc = why(h, "client1", "server:22")
    assert codes(doc)[0] == "FIREWALL_INBOUND_REJECT"
    doc = why(h, "server", "10.0.10.2:22", "--from", "10.0.10.11")
    assert codes(doc)[0] == "FIREWALL_INBOUND_REJECT"
    assert any("default deny" in e for e in doc["findings"][0]["evidence"])


def test_example_loopback_only(lab: Any) -> None:
    h = lab(EXAMPLES / "loopback-only.yaml")
    server = h.address("server")
    assert codes(why(h, "server", f"{server}:3306"))[0] == "LOOPBACK_ONLY"
    assert codes(why(h, "server", "127.0.0.1:3306"))[0] == "REACHABLE"
    assert codes(why(h, "client", "server:3306"))[0] == "NOT_LISTENING"
    assert codes(why(h, "client", "server:80"))[0] == "REACHABLE"


def test_example_port_forward(lab: Any) -> None:
    h = lab(EXAMPLES / "port-forward.yaml")
    assert codes(why(h, "client", "router:8080"))[0] == "REACHABLE"
    doc = why(h, "router", f"{h.address('router', link='wan')}:8080")
    assert codes(doc) == ["REACHABLE"]
    assert next(c for c in doc["checks"] if c["name"] == "dnat")["status"] == "pass"


def test_example_nat_pat(lab: Any) -> None:
    h = lab(EXAMPLES / "nat-pat.yaml")
    assert codes(why(h, "client1", "server:80"))[0] == "REACHABLE"
    doc = why(h, "router", "203.0.113.10:80", "--from", "10.0.40.11")
    assert codes(doc)[0] == "REACHABLE"
    assert next(c for c in doc["checks"] if c["name"] == "forward")["status"] == "pass"


def test_example_dual_stack(lab: Any) -> None:
    h = lab(EXAMPLES / "dual-stack.yaml")
    doc = why(h, "client", "server:80")
    assert codes(doc)[0] == "REACHABLE"
    resolve = next(c for c in doc["checks"] if c["name"] == "resolve")["detail"]
    assert "10.0.50.2" in resolve and "fd00:50::2" in resolve
    doc = why(h, "client", "server:22", "-6")
    assert doc["address"] == "fd00:50::2" and codes(doc)[0] == "REACHABLE"
    r = h.portkit("client", "trace", "server:22", "-6", "--json")
    t = json.loads(r.stdout)
    assert t["reached"] and t["hops"][0]["address"] == "fd00:51::1"
