"""Printed fixes are pasted and work (issue 13, items 11-14).

A client and a server on one link. The server's input hook has two tables: ``inet
portkit`` accepts tcp/22 and ``inet filter`` rejects it, so only a change to ``inet filter``
fixes it. tcp/2222 is dropped by an iptables-nft rule added with ``iptables`` itself. Each
fix is run inside the lab host (argv split by shlex), then ``why`` says REACHABLE.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVER = "10.73.1.3"
CLIENT = "10.73.1.2"

LAB: dict[str, Any] = {
    "name": "why-fixes",
    "hosts": {
        "client": {},
        "server": {
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:22", "kind": "banner", "banner": "SSH-2.0-OpenSSH_9.2"},
                {"proto": "tcp", "listen": "0.0.0.0:2222", "kind": "http"},
                {"proto": "udp", "listen": "0.0.0.0:53", "kind": "echo"},
            ],
            "firewall": (
                "table inet portkit {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                "    tcp dport 22 accept\n"
                "  }\n"
                "}\n"
                "table inet filter {\n"
                "  chain input {\n"
                "    type filter hook input priority 10; policy accept;\n"
                "    tcp dport 22 reject with tcp reset\n"
                "    udp dport 53 drop\n"
                "  }\n"
                "}\n"
            ),
        },
    },
    "links": [{"name": "lan", "ends": {"client": [f"{CLIENT}/24"], "server": [f"{SERVER}/24"]}}],
}


@pytest.fixture(scope="module")
def fix_lab(lab_module: Any) -> Any:
    return lab_module(LAB)


def why(h: Any, host: str, *args: str) -> dict[str, Any]:
    r = h.portkit(host, "why", *args, "--json")
    assert r.returncode in (0, 1, 5), f"exit {r.returncode}: {r.stderr}"
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def paste(h: Any, host: str, fix: str) -> None:
    for line in fix.split(" ; "):
        r = h.run(host, shlex.split(line))
        assert r.returncode == 0, f"{line}: {r.stderr}"


def test_reject_in_another_table_gets_a_fix_for_that_table(fix_lab: Any) -> None:
    doc = why(fix_lab, "server", f"{SERVER}:22", "--from", CLIENT)
    f = doc["findings"][0]
    assert f["code"] == "FIREWALL_INBOUND_REJECT"
    assert f["fix"].startswith("nft insert rule inet filter input position "), f["fix"]
    assert "portkit fw allow" not in f["fix"]
    paste(fix_lab, "server", f["fix"])
    assert why(fix_lab, "server", f"{SERVER}:22", "--from", CLIENT)["findings"][0]["code"] == "REACHABLE"
    assert why(fix_lab, "client", f"{SERVER}:22")["findings"][0]["code"] == "REACHABLE"


def test_iptables_rule_gets_an_iptables_fix(fix_lab: Any) -> None:
    r = fix_lab.run("server", ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "DROP"])
    assert r.returncode == 0, r.stderr
    doc = why(fix_lab, "server", f"{SERVER}:2222", "--from", CLIENT)
    f = doc["findings"][0]
    assert f["code"] == "FIREWALL_INBOUND_DROP"
    assert f["fix"].startswith(f"iptables -I INPUT -s {CLIENT} -d {SERVER} -p tcp --dport 2222 -j ACCEPT"), f[
        "fix"
    ]
    paste(fix_lab, "server", f["fix"])
    assert why(fix_lab, "server", f"{SERVER}:2222", "--from", CLIENT)["findings"][0]["code"] == "REACHABLE"


def test_udp_fix_and_follow_up_carry_the_protocol(fix_lab: Any) -> None:
    doc = why(fix_lab, "server", f"{SERVER}:53/udp", "--from", CLIENT)
    f = doc["findings"][0]
    assert f["code"] == "FIREWALL_INBOUND_DROP"
    assert "udp dport 53" in f["fix"]
    paste(fix_lab, "server", f["fix"])
    assert why(fix_lab, "server", f"{SERVER}:53/udp", "--from", CLIENT)["findings"][0]["code"] == "REACHABLE"


def test_client_refused_lists_the_causes_and_the_server_command(fix_lab: Any) -> None:
    doc = why(fix_lab, "client", f"{SERVER}:99")
    f = doc["findings"][0]
    assert f["code"] == "NOT_LISTENING"
    assert "bound to another address" in f["fix"] and "DNAT" in f["fix"] and "tcp reset" in f["fix"]
    assert f"portkit why {SERVER}:99/tcp --from {CLIENT}" in f["fix"]
