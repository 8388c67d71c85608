"""``portkit lab`` from the command line: up/down twice, ls/status/exec, bad input, no root."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portkit.lab import state
from portkit.lab.system import is_runner
from tests.conftest import CliResult, as_user, run_cli, wait_until

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"
SCENARIOS = ("inbound-rules", "loopback-only", "port-forward", "nat-pat", "dual-stack")


def portkit(*args: str, user: int | None = None) -> CliResult:
    return run_cli(*args, prefix=as_user(user) if user is not None else ())


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


@pytest.mark.root
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_up_down_twice(scenario: str, lab_name: str) -> None:
    path = str(LABS / f"{scenario}.yaml")
    for _ in range(2):
        first = portkit("lab", "up", path, "--name", lab_name)
        assert first.code == 0, first.stderr
        assert f"lab {lab_name} is up" in first.stdout
        again = portkit("lab", "up", path, "--name", lab_name, "--json")
        assert again.code == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["schema"] == 1 and doc["lab"]["action"] == "already-up"
        st = portkit("lab", "status", lab_name, "--json")
        assert st.code == 0, st.stdout
        assert json.loads(st.stdout)["lab"]["state"] == "up"
        down = portkit("lab", "down", lab_name)
        assert down.code == 0, down.stderr
        assert leftovers(lab_name) == []


@pytest.mark.root
def test_ls_status_exec(lab_name: str) -> None:
    assert portkit("lab", "up", "nat-pat", "--name", lab_name).code == 0
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
    assert r.code == 0 and r.stdout.split()[0] == "203.0.113.10"
    assert portkit("lab", "exec", lab_name, "client1", "--", "sh", "-c", "exit 7").code == 7
    assert portkit("lab", "exec", lab_name, "client1", "--", "portkit", "--version").code == 0
    bad = portkit("lab", "exec", lab_name, "nohost", "--", "true")
    assert bad.code == 2 and "client1" in bad.stderr
    # A killed service shows in status (exit 1) and a second `up` repairs the lab.
    record = state.read(lab_name)
    assert record is not None
    os.kill(record["runners"]["server"]["pid"], 9)
    st2 = portkit("lab", "status", lab_name)
    assert st2.code == 1 and "degraded" in st2.stdout
    assert "is up" in portkit("lab", "up", "nat-pat", "--name", lab_name).stdout
    assert portkit("lab", "status", lab_name).code == 0


@pytest.mark.root
def test_down_after_half_failed_up(lab_name: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = (LABS / "nat-pat.yaml").read_text().replace("masquerade: [{oif: wan}]", 'masquerade: [{oif: wan}]\n    firewall: "table inet x { oops }"')
    broken.write_text(text)
    r = portkit("lab", "up", str(broken), "--name", lab_name)
    # nft refusing the scenario's own firewall text is a bad scenario: exit 2, file and key named
    assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{broken}:" in r.stderr and "hosts.router.firewall: nft rejects line 1" in r.stderr
    assert leftovers(lab_name) == []
    down = portkit("lab", "down", lab_name)
    assert down.code == 2 and "no lab named" in down.stderr


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
    assert r.code == 2
    assert r.stderr.startswith(f"portkit: {path}:{line}: ") and problem in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert leftovers("bad") == []


def test_help_teaches_the_schema() -> None:
    r = portkit("lab", "up", "--help")
    assert r.code == 0 and "masquerade" in r.stdout and "kind: echo|http|banner|silent" in r.stdout


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
    assert st.code == 1 and "creating" in st.stdout
    down = portkit("lab", "down", lab_name)
    assert down.code == 0, down.stderr
    assert leftovers(lab_name) == []


@pytest.mark.root
def test_up_rebuilds_an_edited_scenario_but_not_another_file(lab_name: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text((LABS / "loopback-only.yaml").read_text())
    assert portkit("lab", "up", str(path), "--name", lab_name).code == 0
    path.write_text(path.read_text().replace("5.7.0-mysql", "8.0.0-mysql"))
    again = portkit("lab", "up", str(path), "--name", lab_name)
    assert again.code == 0 and "is up" in again.stdout  # rebuilt, not "already up"
    other = portkit("lab", "up", str(LABS / "nat-pat.yaml"), "--name", lab_name)
    assert other.code == 2 and "already up from" in other.stderr
    assert portkit("lab", "status", lab_name).code == 0


def _two_hosts(firewall_block: str) -> str:
    return (
        "hosts:\n"
        "  a:\n"
        "    firewall: |\n"
        f"{firewall_block}"
        "  b: {}\n"
        "links:\n"
        "  - {name: lan, ends: {a: [10.0.99.1/24], b: [10.0.99.2/24]}}\n"
    )


@pytest.mark.root
def test_nft_error_in_a_firewall_block_names_the_file_line(lab_name: str, tmp_path: Path) -> None:
    block = (
        "      table inet filter {\n"
        "        chain input {\n"
        "          type filter hook input priority 0; policy accept;\n"
        "          tcp dport 80 acept\n"  # file line 7: the typo
        "        }\n"
        "      }\n"
    )
    path = tmp_path / "typo.yaml"
    path.write_text(_two_hosts(block))
    r = portkit("lab", "up", str(path), "--name", lab_name)
    assert r.code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"portkit: {path}:7: hosts.a.firewall: nft rejects line 4 of it")
    assert state.read(lab_name) is None  # nothing is left of the half-made lab
    assert not any(ns.startswith(f"pk-{lab_name}-") for ns in _netns())


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


@pytest.mark.root
def test_lab_exec_passes_signals_to_the_command(lab_name: str, tmp_path: Path) -> None:
    """SIGTERM sent to `portkit lab exec` reaches the command (it replaces the process, as
    `ip netns exec` does), instead of killing portkit and orphaning the command."""
    path = tmp_path / "two.yaml"
    path.write_text(_two_hosts("      table inet t { }\n"))
    assert portkit("lab", "up", str(path), "--name", lab_name).code == 0
    ready = tmp_path / "ready"
    script = f"trap 'exit 42' TERM; touch {ready}; while :; do sleep 0.05; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "portkit", "lab", "exec", lab_name, "a", "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(ready.exists, timeout=20)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 42, err
    assert "Traceback" not in err


@pytest.mark.root
def test_lab_exec_exit_status_and_pipes(lab_name: str, tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(_two_hosts("      table inet t { }\n"))
    assert portkit("lab", "up", str(path), "--name", lab_name).code == 0
    assert portkit("lab", "exec", lab_name, "b", "--", "sh", "-c", "exit 7").code == 7
    # SIGPIPE is the default again in the command: `yes | head` ends quietly.
    r = subprocess.run(
        f"{sys.executable} -m portkit lab exec {lab_name} b -- yes | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.stdout == "y\n" and r.stderr == ""
    st = json.loads(portkit("lab", "status", lab_name, "--json").stdout)
    assert st["schema"] == 1 and st["lab"]["state"] == "up"


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (["up", "nat-pat"], "creates network namespaces"),
        (["down", "nat-pat"], "deletes its network namespaces"),
        (["exec", "nat-pat", "router", "--", "true"], "enters the host's network namespace"),
    ],
)
def test_without_root_each_action_says_what_needs_root(action: list[str], words: str) -> None:
    r = portkit("lab", *action, user=65534 if os.geteuid() == 0 else None)
    assert r.code == 3
    assert (
        r.stderr.count("\n") == 1
        and f"'portkit lab {action[0]}' needs root" in r.stderr
        and words in r.stderr
    )


@pytest.mark.root
def test_an_unreadable_state_file_is_listed_and_its_error_says_what_to_do(lab_name: str) -> None:
    path = Path(state.state_path(lab_name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{broken")
    try:
        labs = json.loads(portkit("lab", "ls", "--json").stdout)["labs"]
        assert {"name": lab_name, "state": "unreadable"}.items() <= next(
            x for x in labs if x["name"] == lab_name
        ).items()
        r = portkit("lab", "down", lab_name)
        assert r.code == 4 and r.stderr.count("\n") == 1
        assert f"delete that file and any 'ip netns' namespaces named pk-{lab_name}-*" in r.stderr
    finally:
        path.unlink()


@pytest.mark.root
def test_lab_down_forgets_the_kernel_forwards_of_its_namespaces(lab_name: str) -> None:
    """A kernel forward's table dies with its namespace; its record must go too, or the next
    lab of that name lists it as MISSING."""
    assert portkit("lab", "up", "port-forward", "--name", lab_name).code == 0
    router = f"pk-{lab_name}-router"
    records = Path(os.environ.get("PORTKIT_RUN_DIR", "/run/portkit")) / "forward"

    def recorded() -> list[Path]:  # filed by the namespace's identity, labelled with its name
        return [p for p in records.glob("net-*.json") if json.loads(p.read_text()).get("netns") == router]

    r = portkit("forward", "--kernel", "--netns", router, "9797:10.0.30.2:2988")
    assert r.code == 0, r.stderr
    assert len(recorded()) == 1
    assert portkit("lab", "down", lab_name).code == 0
    assert recorded() == []
    assert portkit("lab", "up", "port-forward", "--name", lab_name).code == 0
    listed = portkit("forward", "--list", "--netns", router, "--json")
    assert listed.code == 1 and json.loads(listed.stdout)["forwards"] == []
