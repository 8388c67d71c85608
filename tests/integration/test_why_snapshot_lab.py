"""`portkit why --facts-out` in a lab, replayed with `--facts-in` elsewhere: the same diagnosis.

The lab: client (198.51.100.10) -- router (198.51.100.1 | 10.0.41.1) -- inside (10.0.41.2).
The router forwards 8080 -> inside:2988 (listening) and 8083 -> inside:2990, which its
forward chain drops; inside drops tcp/2993 at input and has a database on 127.0.0.1:3306.
Each case gathers inside the lab host and is replayed on the test host itself (outside
every lab namespace: a snapshot needs nothing of where it was recorded).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

SNAP_LAB: dict[str, Any] = {
    "name": "why-snap",
    "hosts": {
        "client": {"routes": [{"to": "default", "via": "198.51.100.1"}]},
        "router": {
            "forward": True,
            "nat": {
                "forwards": [
                    {"proto": "tcp", "port": 8080, "to": "10.0.41.2:2988", "iif": "wan"},
                    {"proto": "tcp", "port": 8083, "to": "10.0.41.2:2990", "iif": "wan"},
                ]
            },
            "firewall": (
                "table inet filter {\n"
                "  chain forward {\n"
                "    type filter hook forward priority 0; policy accept;\n"
                "    tcp dport 2990 drop\n"
                "  }\n"
                "}\n"
            ),
        },
        "inside": {
            "routes": [{"to": "default", "via": "10.0.41.1"}],
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:2988", "kind": "echo"},
                {"proto": "tcp", "listen": "0.0.0.0:2990", "kind": "echo"},
                {"proto": "tcp", "listen": "0.0.0.0:2993", "kind": "echo"},
                {"proto": "tcp", "listen": "127.0.0.1:3306", "kind": "banner", "banner": "5.7.0-mysql"},
            ],
            "firewall": (
                "table inet filter {\n"
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                "    tcp dport 2993 drop\n"
                "  }\n"
                "}\n"
            ),
        },
    },
    "links": [
        {"name": "wan", "ends": {"client": ["198.51.100.10/24"], "router": ["198.51.100.1/24"]}},
        {"name": "lan", "ends": {"router": ["10.0.41.1/24"], "inside": ["10.0.41.2/24"]}},
    ],
}

CLIENT = "198.51.100.10"
ROUTER = "198.51.100.1"
INSIDE = "10.0.41.2"


@pytest.fixture(scope="module")
def snap_lab(lab_module: Any) -> Any:
    return lab_module(SNAP_LAB)


def replay(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``portkit why ARGS`` on the test host, outside every lab namespace."""
    return subprocess.run(
        [sys.executable, "-m", "portkit", "why", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("host", "args", "code"),
    [
        ("client", [f"{ROUTER}:8080"], "REACHABLE"),
        ("client", [f"{INSIDE}:2993"], "FILTERED_ON_PATH"),  # with the trace's hops
        ("router", [f"{ROUTER}:8083", "--from", CLIENT], "FIREWALL_FORWARD"),
        ("router", [f"{ROUTER}:8080", "--from", CLIENT], "REACHABLE"),
        ("inside", [f"{INSIDE}:2993", "--from", CLIENT], "FIREWALL_INBOUND_DROP"),
        ("inside", [f"{INSIDE}:3306", "--from", CLIENT], "LOOPBACK_ONLY"),
    ],
)
def test_replay_gives_the_same_diagnosis(
    snap_lab: Any, tmp_path: pathlib.Path, host: str, args: list[str], code: str
) -> None:
    snapshot = tmp_path / "facts.json"
    live = snap_lab.portkit(host, "why", *args, "--facts-out", str(snapshot), "--json")
    assert live.returncode in (0, 1), live.stderr
    doc = json.loads(live.stdout)
    assert doc["findings"][0]["code"] == code

    again = replay("--facts-in", str(snapshot), "--json")
    assert again.returncode == live.returncode, again.stderr
    assert again.stdout == live.stdout  # byte for byte: the same diagnosis JSON
    text_live = snap_lab.run(host, [sys.executable, "-m", "portkit", "why", "--facts-in", str(snapshot), "-v"])
    text_replay = replay("--facts-in", str(snapshot), "-v")
    assert text_replay.stdout == text_live.stdout and code in text_replay.stdout

    recorded = json.loads(snapshot.read_text(encoding="utf-8"))
    assert recorded["schema"] == 1 and recorded["kind"] == "why-facts"
    if code == "FILTERED_ON_PATH":
        hops = recorded["facts"]["trace"]["hops"]
        assert hops[0]["address"] == "198.51.100.1" and hops[0]["kind"] == "time-exceeded"


def test_snapshot_through_a_pipe_to_another_host(snap_lab: Any) -> None:
    """What the far-end (SSH) issue does: gather there, stdout -> stdin, reason here."""
    gathered = snap_lab.portkit("router", "why", f"{ROUTER}:8083", "--from", CLIENT, "--facts-out", "-")
    assert gathered.returncode == 1, gathered.stderr  # not reachable, and only the snapshot on stdout
    assert json.loads(gathered.stdout)["kind"] == "why-facts"
    there = snap_lab.run(
        "client", [sys.executable, "-m", "portkit", "why", "--facts-in", "-", "--json"], input=gathered.stdout
    )
    assert there.returncode == 1, there.stderr
    assert json.loads(there.stdout)["findings"][0]["code"] == "FIREWALL_FORWARD"
    here = replay("--facts-in", "-", "--json", stdin=gathered.stdout)
    assert here.stdout == there.stdout
    wrong = snap_lab.run(
        "client",
        [sys.executable, "-m", "portkit", "why", f"{ROUTER}:8080", "--facts-in", "-"],
        input=gathered.stdout,
    )
    assert wrong.returncode == 2 and "is not the snapshot's 198.51.100.1:8083/tcp" in wrong.stderr
