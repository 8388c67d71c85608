"""``portkit lab`` from the command line: up/down twice, ls/status/exec, bad input, no root."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portkit.lab import state
from portkit.lab.system import is_runner
from tests.conftest import needs_root

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"
SCENARIOS = ("inbound-rules", "loopback-only", "port-forward", "nat-pat", "dual-stack")


def portkit(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "portkit", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def leftovers(name: str) -> list[str]:
    found = [ns for ns in os.listdir("/run/netns") if ns.startswith((f"pk-{name}-", f"pk-{name}."))] if os.path.isdir("/run/netns") else []
    if os.path.isdir("/etc/netns"):
        found += [d for d in os.listdir("/etc/netns") if d.startswith(f"pk-{name}-")]
    if state.read(name) is not None:
        found.append(state.state_path(name))
    found += [f"pid {p}" for p in os.listdir("/proc") if p.isdigit() and is_runner(int(p), name)]
    return found


@pytest.fixture
def lab_name() -> Iterator[str]:
    """A unique lab name, downed at the end whatever happened."""
    name = f"cli-{secrets.token_hex(3)}"
    yield name
    if state.read(name) is not None:
        portkit("lab", "down", name)


@needs_root
@pytest.mark.root
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_up_down_twice(scenario: str, lab_name: str) -> None:
    path = str(LABS / f"{scenario}.yaml")
    for _ in range(2):
        first = portkit("lab", "up", path, "--name", lab_name)
        assert first.returncode == 0, first.stderr
        assert f"lab {lab_name} is up" in first.stdout
        again = portkit("lab", "up", path, "--name", lab_name, "--json")
        assert again.returncode == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["schema"] == 1 and doc["lab"]["action"] == "already-up"
        st = portkit("lab", "status", lab_name, "--json")
        assert st.returncode == 0, st.stdout
        assert json.loads(st.stdout)["lab"]["state"] == "up"
        down = portkit("lab", "down", lab_name)
        assert down.returncode == 0, down.stderr
        assert leftovers(lab_name) == []


@needs_root
@pytest.mark.root
def test_ls_status_exec(lab_name: str) -> None:
    assert portkit("lab", "up", "nat-pat", "--name", lab_name).returncode == 0
    ls = portkit("lab", "ls", "--json")
    labs = {lab["name"]: lab for lab in json.loads(ls.stdout)["labs"]}
    assert labs[lab_name]["hosts"] == 4 and labs[lab_name]["services"] == 3
    assert lab_name in portkit("lab", "ls").stdout
    st = json.loads(portkit("lab", "status", lab_name, "--json").stdout)["lab"]
    router = next(h for h in st["hosts"] if h["name"] == "router")
    assert router["netns"] == f"pk-{lab_name}-router" and router["present"]
    assert {"link": "wan", "address": "203.0.113.1/24"} in router["addresses"]
    text = portkit("lab", "status", lab_name).stdout
    assert "tcp 0.0.0.0:80 http" in text
    # exec: the command runs inside the host, with the lab's names, and its status comes back.
    r = portkit("lab", "exec", lab_name, "client1", "--", "getent", "ahostsv4", "server")
    assert r.returncode == 0 and r.stdout.split()[0] == "203.0.113.10"
    assert portkit("lab", "exec", lab_name, "client1", "--", "sh", "-c", "exit 7").returncode == 7
    assert portkit("lab", "exec", lab_name, "client1", "--", "portkit", "--version").returncode == 0
    bad = portkit("lab", "exec", lab_name, "nohost", "--", "true")
    assert bad.returncode == 2 and "client1" in bad.stderr
    # A killed service shows in status (exit 1) and a second `up` repairs the lab.
    record = state.read(lab_name)
    assert record is not None
    os.kill(record["runners"]["server"]["pid"], 9)
    st2 = portkit("lab", "status", lab_name)
    assert st2.returncode == 1 and "degraded" in st2.stdout
    assert "is up" in portkit("lab", "up", "nat-pat", "--name", lab_name).stdout
    assert portkit("lab", "status", lab_name).returncode == 0


@needs_root
@pytest.mark.root
def test_down_after_half_failed_up(lab_name: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = (LABS / "nat-pat.yaml").read_text().replace("masquerade: [{oif: wan}]", 'masquerade: [{oif: wan}]\n    firewall: "table inet x { oops }"')
    broken.write_text(text)
    r = portkit("lab", "up", str(broken), "--name", lab_name)
    # nft refusing the scenario's own firewall text is a bad scenario: exit 2, file and key named
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{broken}:" in r.stderr and "hosts.router.firewall: nft rejects line 1" in r.stderr
    assert leftovers(lab_name) == []
    down = portkit("lab", "down", lab_name)
    assert down.returncode == 2 and "no lab named" in down.stderr


BAD = {
    "typo": ("hosts:\n  a:\n    servics: []\nlinks: []\n", 3, "did you mean 'services'"),
    "unknown host": ("hosts: {a: {}}\nlinks:\n  - name: lan\n    ends:\n      a: [10.0.0.2/24]\n      zz: [10.0.0.3/24]\n", 6, "unknown host 'zz'"),
    "duplicate": ("hosts: {a: {}, b: {}}\nlinks:\n  - {name: lan, ends: {a: [10.0.0.2/24], b: [10.0.0.2/24]}}\n", 3, "duplicate address 10.0.0.2"),
    "port": ("hosts:\n  a:\n    services:\n      - {listen: '0.0.0.0:70000'}\nlinks: []\n", 4, "port 70000 is out of range"),
    "public": ("hosts: {a: {}, b: {}}\nlinks:\n  - name: lan\n    ends: {a: [10.0.0.2/24], b: [1.1.1.1/24]}\n", 4, "not private"),
    "route outside": (
        "hosts:\n  a:\n    routes:\n      - {to: 8.8.0.0/16, via: 10.0.0.3}\n  b: {}\nlinks:\n  - {name: lan, ends: {a: [10.0.0.2/24], b: [10.0.0.3/24]}}\n",
        4,
        "leads outside the lab",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios_name_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, problem = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = portkit("lab", "up", str(path))
    assert r.returncode == 2
    assert r.stderr.startswith(f"portkit: {path}:{line}: ") and problem in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert leftovers("bad") == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody")
def test_without_root_is_a_clear_error() -> None:
    for args in (("lab", "up", str(LABS / "nat-pat.yaml")), ("lab", "down", "nat-pat"), ("lab", "exec", "x", "h", "--", "true")):
        r = portkit(*args, user=65534)
        assert r.returncode == 3, r.stderr
        assert "needs root" in r.stderr and "Traceback" not in r.stderr


def test_help_teaches_the_schema() -> None:
    r = portkit("lab", "up", "--help")
    assert r.returncode == 0 and "masquerade" in r.stdout and "kind: echo|http|banner|silent" in r.stdout


@needs_root
@pytest.mark.root
def test_down_after_crashed_up(lab_name: str) -> None:
    """An `up` killed midway (namespaces made, services started, never finished) is undone by `down`."""
    crash = (
        "import os, sys\n"
        "from portkit.lab import build, scenario, system\n"
        "system.wait_ready = lambda procs, timeout=15.0: os._exit(9)\n"
        f"build.up(scenario.load('nat-pat'), name={lab_name!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 9, r.stderr
    record = state.read(lab_name)
    assert record is not None and record["status"] == "creating"
    assert leftovers(lab_name)  # namespaces, files and the runner are there
    st = portkit("lab", "status", lab_name)
    assert st.returncode == 1 and "creating" in st.stdout
    down = portkit("lab", "down", lab_name)
    assert down.returncode == 0, down.stderr
    assert leftovers(lab_name) == []


@needs_root
@pytest.mark.root
def test_up_rebuilds_an_edited_scenario_but_not_another_file(lab_name: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text((LABS / "loopback-only.yaml").read_text())
    assert portkit("lab", "up", str(path), "--name", lab_name).returncode == 0
    path.write_text(path.read_text().replace("5.7.0-mysql", "8.0.0-mysql"))
    again = portkit("lab", "up", str(path), "--name", lab_name)
    assert again.returncode == 0 and "is up" in again.stdout  # rebuilt, not "already up"
    other = portkit("lab", "up", str(LABS / "nat-pat.yaml"), "--name", lab_name)
    assert other.returncode == 2 and "already up from" in other.stderr
    assert portkit("lab", "status", lab_name).returncode == 0
