"""QA of ``portkit lab`` as a user drives it: errors that name the file line, signals that
reach the command of ``lab exec``, and privilege messages that say what needs root."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portkit.lab import state
from tests.conftest import needs_root

NOBODY = 65534


def portkit(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "portkit", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def lab_name() -> Iterator[str]:
    name = f"qa-{secrets.token_hex(3)}"
    yield name
    if state.read(name) is not None:
        portkit("lab", "down", name)


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


@needs_root
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
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"portkit: {path}:7: hosts.a.firewall: nft rejects line 4 of it")
    assert state.read(lab_name) is None  # nothing is left of the half-made lab
    assert not any(ns.startswith(f"pk-{lab_name}-") for ns in _netns())


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


@needs_root
@pytest.mark.root
def test_lab_exec_passes_signals_to_the_command(lab_name: str, tmp_path: Path) -> None:
    """SIGTERM sent to `portkit lab exec` reaches the command (it replaces the process, as
    `ip netns exec` does), instead of killing portkit and orphaning the command."""
    path = tmp_path / "two.yaml"
    path.write_text(_two_hosts("      table inet t { }\n"))
    assert portkit("lab", "up", str(path), "--name", lab_name).returncode == 0
    ready = tmp_path / "ready"
    script = f"trap 'exit 42' TERM; touch {ready}; while :; do sleep 0.05; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "portkit", "lab", "exec", lab_name, "a", "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 42, err
    assert "Traceback" not in err


@needs_root
@pytest.mark.root
def test_lab_exec_exit_status_and_pipes(lab_name: str, tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(_two_hosts("      table inet t { }\n"))
    assert portkit("lab", "up", str(path), "--name", lab_name).returncode == 0
    assert portkit("lab", "exec", lab_name, "b", "--", "sh", "-c", "exit 7").returncode == 7
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
    r = portkit("lab", *action, user=NOBODY if os.geteuid() == 0 else None)
    assert r.returncode == 3
    assert (
        r.stderr.count("\n") == 1
        and f"'portkit lab {action[0]}' needs root" in r.stderr
        and words in r.stderr
    )


@needs_root
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
        assert r.returncode == 4 and r.stderr.count("\n") == 1
        assert f"delete that file and any 'ip netns' namespaces named pk-{lab_name}-*" in r.stderr
    finally:
        path.unlink()


@needs_root
@pytest.mark.root
def test_lab_down_forgets_the_kernel_forwards_of_its_namespaces(lab_name: str) -> None:
    """A kernel forward's table dies with its namespace; its record must go too, or the next
    lab of that name lists it as MISSING."""
    assert portkit("lab", "up", "port-forward", "--name", lab_name).returncode == 0
    router = f"pk-{lab_name}-router"
    record = Path(os.environ.get("PORTKIT_RUN_DIR", "/run/portkit")) / "forward" / f"{router}.json"
    r = portkit("forward", "--kernel", "--netns", router, "9797:10.0.30.2:2988")
    assert r.returncode == 0, r.stderr
    assert record.exists()
    assert portkit("lab", "down", lab_name).returncode == 0
    assert not record.exists()
    assert portkit("lab", "up", "port-forward", "--name", lab_name).returncode == 0
    listed = portkit("forward", "--list", "--netns", router, "--json")
    assert listed.returncode == 1 and json.loads(listed.stdout)["forwards"] == []
