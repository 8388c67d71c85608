"""`portkit why` and `portkit trace` across real namespaces: every code, from the right vantage point.

The path lab: client -- r1 -- r2 -- server (r2's forward chain drops tcp/81). The server
listens on 80, 81 (behind r2's filter), 22 (dropped by its input rules), 23 (rejected),
127.0.0.1:3306 (loopback only) and 10.72.3.3:8000 (its second address); the client's
output rules drop tcp/444 and say something portkit cannot evaluate for tcp/445. The
client has no IPv6 default route. Names come from the lab's hosts file only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

PATH_LAB: dict[str, Any] = {
    "name": "why-path",
    "hosts": {
        "client": {
            "routes": [{"to": "default", "via": "10.72.1.1"}, {"to": "fd72:3::/64", "via": "fd72:1::1"}],
            "firewall": (
                "table inet out {\n"
                "  chain output {\n"
                "    type filter hook output priority 0; policy accept;\n"
                "    tcp dport 444 drop\n"
                "    tcp dport 445 meta cpu 1 drop\n"
                "  }\n"
                "}\n"
            ),
        },
        "r1": {
            "forward": True,
            "routes": [{"to": "default", "via": "10.72.2.2"}, {"to": "default", "via": "fd72:2::2"}],
        },
        "r2": {
            "forward": True,
            "routes": [{"to": "10.72.1.0/24", "via": "10.72.2.1"}, {"to": "fd72:1::/64", "via": "fd72:2::1"}],
            "firewall": (
                "table inet filt {\n"
                "  chain forward_filter {\n"
                "    type filter hook forward priority 0; policy accept;\n"
                "    tcp dport { 81, 445 } drop\n"
                "  }\n"
                "}\n"
            ),
        },
        "server": {
            "routes": [{"to": "default", "via": "10.72.3.1"}, {"to": "default", "via": "fd72:3::1"}],
            "services": [
                {"proto": "tcp", "listen": "[::]:80", "kind": "http"},
                {"proto": "tcp", "listen": "[::]:81", "kind": "http"},
                {"proto": "tcp", "listen": "0.0.0.0:22", "kind": "banner", "banner": "SSH-2.0-OpenSSH_9.2"},
                {"proto": "tcp", "listen": "0.0.0.0:23", "kind": "banner", "banner": "login:"},
                {"proto": "tcp", "listen": "0.0.0.0:444", "kind": "http"},
                {"proto": "tcp", "listen": "0.0.0.0:445", "kind": "http"},
                {"proto": "tcp", "listen": "127.0.0.1:3306", "kind": "banner", "banner": "5.7.0-mysql"},
                {"proto": "tcp", "listen": "10.72.3.3:8000", "kind": "http"},
                {"proto": "udp", "listen": "0.0.0.0:53", "kind": "echo"},
            ],
            "firewall": (
                "table inet filter {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                "    tcp dport 22 drop\n"
                "    tcp dport 23 reject with icmpx admin-prohibited\n"
                "  }\n"
                "}\n"
            ),
        },
    },
    "links": [
        {
            "name": "lan",
            "ends": {"client": ["10.72.1.2/24", "fd72:1::2/64"], "r1": ["10.72.1.1/24", "fd72:1::1/64"]},
        },
        {
            "name": "mid",
            "ends": {"r1": ["10.72.2.1/24", "fd72:2::1/64"], "r2": ["10.72.2.2/24", "fd72:2::2/64"]},
        },
        {
            "name": "wan",
            "ends": {
                "r2": ["10.72.3.1/24", "fd72:3::1/64"],
                "server": ["10.72.3.2/24", "10.72.3.3/24", "fd72:3::2/64"],
            },
        },
    ],
}

SERVER = "10.72.3.2"
CLIENT = "10.72.1.2"
R2_MID = "10.72.2.2"


@pytest.fixture(scope="module")
def path_lab(lab_module: Any) -> Any:
    return lab_module(PATH_LAB)


def why(h: Any, host: str, *args: str) -> tuple[int, dict[str, Any]]:
    r = h.portkit(host, "why", *args, "--json")
    assert r.returncode in (0, 1), f"exit {r.returncode}: {r.stderr}"
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["schema"] == 1
    assert doc["reachable"] == (r.returncode == 0)
    assert doc["reachable"] == (doc["findings"][0]["code"] == "REACHABLE")
    for f in doc["findings"]:
        assert f["code"] == "REACHABLE" or f["evidence"], f"{f['code']} without evidence"
    return r.returncode, doc


def main_code(doc: dict[str, Any]) -> str:
    code: str = doc["findings"][0]["code"]
    return code


def evidence(doc: dict[str, Any]) -> str:
    return "\n".join(doc["findings"][0]["evidence"])


# ----------------------------------------------------------------------------- client


def test_client_reachable_by_name_from_the_lab_hosts_file(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", "server:80")
    assert rc == 0 and main_code(doc) == "REACHABLE"
    assert doc["address"] == SERVER
    resolve = next(c for c in doc["checks"] if c["name"] == "resolve")
    assert SERVER in resolve["detail"] and "fd72:3::2" in resolve["detail"]


def test_client_filtered_on_path_names_the_last_hop(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", f"{SERVER}:81")
    assert rc == 1 and main_code(doc) == "FILTERED_ON_PATH"
    f = doc["findings"][0]
    assert f"after hop 2 ({R2_MID})" in f["message"]
    assert "outside this host" in f["message"]


def test_client_not_listening_sees_the_reset(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", f"{SERVER}:82")
    assert rc == 1 and main_code(doc) == "NOT_LISTENING"
    assert "conn-refused" in evidence(doc)


def test_client_outbound_rule(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", f"{SERVER}:444")
    assert rc == 1 and main_code(doc) == "FIREWALL_OUTBOUND"
    assert "table inet out chain output handle" in evidence(doc)
    assert doc["findings"][0]["fix"].startswith("nft insert rule inet out output position")


def test_client_unknown_when_the_rules_cannot_be_evaluated(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", f"{SERVER}:445")
    assert rc == 1 and main_code(doc) == "UNKNOWN"
    assert "outbound" in doc["findings"][0]["message"]
    assert next(c for c in doc["checks"] if c["name"] == "outbound")["status"] == "unknown"


def test_unprivileged_client_gets_unknown_with_the_reason(path_lab: Any) -> None:
    import shutil
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop root")
    argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "portkit"]
    r = path_lab.run("client", [*argv, "why", f"{SERVER}:81", "--json"])
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert main_code(doc) == "UNKNOWN"
    assert "CAP_NET_ADMIN" in evidence(doc) and "root" in doc["findings"][0]["fix"]
    r = path_lab.run("client", [*argv, "why", f"{SERVER}:80", "--json"])
    assert r.returncode == 0 and main_code(json.loads(r.stdout)) == "REACHABLE"


def test_client_no_route(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", "[fd72:9::9]:80")
    assert rc == 1 and main_code(doc) == "NO_ROUTE"
    assert next(c for c in doc["checks"] if c["name"] == "probe")["status"] == "skipped"


def test_client_name_not_resolved_is_a_finding_not_an_error(path_lab: Any) -> None:
    rc, doc = why(path_lab, "client", "no-such-host.lab:80")
    assert rc == 1 and main_code(doc) == "NAME_NOT_RESOLVED"
    assert doc["address"] is None


def test_bad_input_is_exit_2(path_lab: Any) -> None:
    for args in (["server:70000"], ["server"], ["server:80", "--from", "nope"]):
        r = path_lab.portkit("client", "why", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- server


@pytest.mark.parametrize(
    ("port", "code"),
    [
        (80, "REACHABLE"),
        (22, "FIREWALL_INBOUND_DROP"),
        (23, "FIREWALL_INBOUND_REJECT"),
        (3306, "LOOPBACK_ONLY"),
        (8000, "BOUND_TO_OTHER_ADDRESS"),
        (99, "NOT_LISTENING"),
    ],
)
def test_server_vantage(path_lab: Any, port: int, code: str) -> None:
    rc, doc = why(path_lab, "server", f"{SERVER}:{port}", "--from", CLIENT)
    assert main_code(doc) == code
    assert rc == (0 if code == "REACHABLE" else 1)


def test_server_vantage_udp(path_lab: Any) -> None:
    rc, doc = why(path_lab, "server", f"{SERVER}:53/udp", "--from", CLIENT)
    assert rc == 0 and main_code(doc) == "REACHABLE" and doc["proto"] == "udp"
    rc, doc = why(path_lab, "server", f"{SERVER}:54/udp", "--from", CLIENT)
    assert rc == 1 and main_code(doc) == "NOT_LISTENING"


def test_server_fixes_are_pasteable(path_lab: Any) -> None:
    _, doc = why(path_lab, "server", f"{SERVER}:22", "--from", CLIENT)
    fix = doc["findings"][0]["fix"]
    assert fix.startswith("nft insert rule inet filter input position ") and f"saddr {CLIENT}" in fix
    _, doc = why(path_lab, "server", f"{SERVER}:3306", "--from", CLIENT)
    assert doc["findings"][0]["fix"].startswith(f"bind to 0.0.0.0 or {SERVER} instead of 127.0.0.1:3306")
    _, doc = why(path_lab, "server", "127.0.0.1:3306")
    assert main_code(doc) == "REACHABLE"


def test_client_sees_the_reject_and_the_drop(path_lab: Any) -> None:
    _, doc = why(path_lab, "client", f"{SERVER}:23")
    assert main_code(doc) == "FIREWALL_INBOUND_REJECT"
    assert f"admin-prohibited from {SERVER}" in evidence(doc)


# ----------------------------------------------------------------------------- router


def test_router_vantage_forward_rule(path_lab: Any) -> None:
    rc, doc = why(path_lab, "r2", f"{SERVER}:81", "--from", CLIENT)
    assert rc == 1 and main_code(doc) == "FIREWALL_FORWARD"
    assert "table inet filt chain forward_filter handle" in evidence(doc)
    rc, doc = why(path_lab, "r2", f"{SERVER}:80", "--from", CLIENT)
    assert rc == 0 and main_code(doc) == "REACHABLE"


# ----------------------------------------------------------------------------- trace


def trace(h: Any, host: str, target: str) -> tuple[int, dict[str, Any]]:
    r = h.portkit(host, "trace", target, "--json")
    assert r.returncode in (0, 1), r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return r.returncode, doc


def test_trace_reaches_an_open_port(path_lab: Any) -> None:
    rc, doc = trace(path_lab, "client", f"{SERVER}:80")
    assert rc == 0 and doc["reached"] and doc["state"] == "open"
    assert [h["address"] for h in doc["hops"]] == ["10.72.1.1", R2_MID, SERVER]
    assert doc["last_hop"] == SERVER


def test_trace_reaches_a_closed_port_and_udp(path_lab: Any) -> None:
    rc, doc = trace(path_lab, "client", f"{SERVER}:82")
    assert rc == 1 and doc["reached"] and doc["state"] == "closed"
    _, doc = trace(path_lab, "client", f"{SERVER}:53/udp")
    assert doc["reached"] and doc["state"] == "open" and doc["proto"] == "udp"


def test_trace_names_the_last_hop_before_the_filter(path_lab: Any) -> None:
    rc, doc = trace(path_lab, "client", f"{SERVER}:81")
    assert rc == 1 and not doc["reached"] and doc["state"] == "filtered"
    assert doc["last_hop"] == R2_MID
    assert doc["hops"][1] == {"ttl": 2, "address": R2_MID, "rtt_ms": doc["hops"][1]["rtt_ms"]}
    assert all(h["address"] is None for h in doc["hops"][2:])


@pytest.mark.parametrize("method", ["raw", "recverr"])
def test_trace_methods_agree(path_lab: Any, method: str) -> None:
    r = path_lab.portkit("client", "trace", f"{SERVER}:81", "--method", method, "--json")
    doc = json.loads(r.stdout)
    assert doc["last_hop"] == R2_MID and [h["address"] for h in doc["hops"][:2]] == ["10.72.1.1", R2_MID]
    r = path_lab.portkit("client", "trace", "[fd72:3::2]:55/udp", "--method", method, "--json")
    doc = json.loads(r.stdout)
    assert doc["state"] == "closed" and [h["address"] for h in doc["hops"]] == [
        "fd72:1::1",
        "fd72:2::2",
        "fd72:3::2",
    ]


def test_trace_ipv6(path_lab: Any) -> None:
    _, doc = trace(path_lab, "client", "[fd72:3::2]:80")
    assert doc["reached"] and [h["address"] for h in doc["hops"]][-1] == "fd72:3::2"


# ----------------------------------------------------------------------------- languages


def test_story_in_korean_and_english(path_lab: Any) -> None:
    en = path_lab.portkit("server", "why", f"{SERVER}:3306", "--from", CLIENT, "--lang", "en")
    assert "verdict: not reachable" in en.stdout and "LOOPBACK_ONLY" in en.stdout and "✗" in en.stdout
    ko = path_lab.portkit("server", "why", f"{SERVER}:3306", "--from", CLIENT, "--lang", "ko")
    assert "판정: 도달 불가" in ko.stdout and "LOOPBACK_ONLY" in ko.stdout and "127.0.0.1:3306" in ko.stdout
    import sys

    env_ko = path_lab.run(
        "server",
        [
            "env",
            "LANG=ko_KR.UTF-8",
            "LANGUAGE=",
            "LC_ALL=",
            sys.executable,
            "-m",
            "portkit",
            "why",
            f"{SERVER}:3306",
        ],
    )
    assert "판정" in env_ko.stdout
    js = path_lab.portkit("server", "why", f"{SERVER}:3306", "--lang", "ko", "--json")
    assert "판정" not in js.stdout and json.loads(js.stdout)["findings"][0]["message"].isascii()
