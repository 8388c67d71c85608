"""Issue 13, items 16 and 17: --netns/--netns-pid on why, check, scan and trace, and
service and host names wherever a port or an address goes. Names come from the lab's
hosts file only (never a real resolver)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB: dict[str, Any] = {
    "name": "why-vantage",
    "hosts": {
        "client": {},
        "server": {
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:22", "kind": "banner", "banner": "SSH-2.0-OpenSSH_9.2"},
                {"proto": "tcp", "listen": "0.0.0.0:80", "kind": "http"},
            ],
        },
    },
    "links": [{"name": "lan", "ends": {"client": ["10.73.1.2/24"], "server": ["10.73.1.3/24"]}}],
}
CLIENT = "10.73.1.2"
SERVER = "10.73.1.3"


@pytest.fixture(scope="module")
def vlab(lab_module: Any) -> Any:
    return lab_module(LAB)


def host_portkit(*args: str) -> subprocess.CompletedProcess[str]:
    """portkit run in the test's own namespace: only --netns takes it to the lab."""
    return subprocess.run([sys.executable, "-m", "portkit", *args], capture_output=True, text=True, timeout=60)


def test_why_and_trace_with_netns_name_need_no_ip_netns_exec(vlab: Any) -> None:
    ns = vlab.netns("client")
    r = host_portkit("why", f"{SERVER}:80", "--netns", ns, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["findings"][0]["code"] == "REACHABLE"
    r = host_portkit("trace", f"{SERVER}:80", "--netns", ns, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == 1


def test_check_and_scan_with_netns_pid_and_service_names(vlab: Any) -> None:
    sleeper = vlab.popen("client", ["sleep", "120"])
    pid = str(sleeper.pid)
    r = host_portkit("check", f"{SERVER}:ssh", "--netns-pid", pid, "--json")
    assert r.returncode == 0, r.stderr
    assert "22" in r.stdout
    r = host_portkit("scan", SERVER, "-p", "ssh,http", "--netns", vlab.netns("client"), "--json")
    assert r.returncode == 0, r.stderr
    ports = {(p["port"], p["state"]) for p in json.loads(r.stdout)["hosts"][0]["ports"]}
    assert ports == {(22, "open"), (80, "open")}


def test_why_from_takes_a_host_name_from_the_lab_hosts_file(vlab: Any) -> None:
    r = vlab.portkit("server", "why", "server:ssh", "--from", "client", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["findings"][0]["code"] == "REACHABLE"
    assert CLIENT in json.dumps(doc)


def test_info_takes_port_and_protocol() -> None:
    r = host_portkit("info", "53/udp", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == 1


FOOTPRINT_LAB: dict[str, Any] = {
    "name": "why-footprint",
    "hosts": {
        "client": {},
        "server": {
            "services": [{"proto": "tcp", "listen": "0.0.0.0:80", "kind": "http"}],
            # a stateful rule, so that the server's namespace tracks connections
            "firewall": (
                "table inet track {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                "    ct state established,related accept\n"
                "  }\n"
                "}\n"
            ),
        },
    },
    "links": [{"name": "lan", "ends": {"client": ["10.74.1.2/24"], "server": ["10.74.1.3/24"]}}],
}


def _flows(lab: Any, host: str, port: int) -> int:
    r = lab.run(host, ["conntrack", "-L", "-p", "tcp", "--dport", str(port)])
    assert r.returncode == 0, r.stderr
    return sum(1 for line in r.stdout.splitlines() if line.startswith("tcp"))


def test_one_why_completes_at_most_one_handshake(lab: Any) -> None:
    import shutil

    if shutil.which("conntrack") is None:
        pytest.skip("needs conntrack (conntrack-tools) to count the flows")
    h = lab(FOOTPRINT_LAB)
    assert _flows(h, "server", 80) == 0
    r = h.portkit("client", "why", "10.74.1.3:80", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["findings"][0]["code"] == "REACHABLE"
    assert _flows(h, "server", 80) == 1
