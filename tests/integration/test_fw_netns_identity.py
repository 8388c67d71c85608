"""Per-namespace firewall state is keyed by the namespace's identity, not by its name.

Issue 12, item 1: two namespaces entered with ``ip netns exec`` / ``nsenter`` (no --netns)
used to share the one rollback ``firewall-host``: B's apply replaced A's pending rollback, A
never rolled back and B was restored to A's previous ruleset.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import needs_tool

pytestmark = [pytest.mark.root, needs_tool("nft")]

OLD = "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: %d}\n"
NEW = "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 9999}\n"


def _nft_ruleset(ns: str | None) -> str:
    argv = ["nft", "list", "ruleset"] if ns is None else ["nsenter", f"--net=/run/netns/{ns}", "nft", "list", "ruleset"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def two(tmp_path: pathlib.Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    names = [f"pk-fwid-{secrets.token_hex(3)}" for _ in range(2)]
    env = {**os.environ, "PORTKIT_RUN_DIR": str(tmp_path / "run")}
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        yield names[0], names[1], env
    finally:
        for n in names:  # timers live inside their namespace: confirm them so they end
            subprocess.run(
                ["nsenter", f"--net=/run/netns/{n}", sys.executable, "-m", "portkit", "fw", "confirm"],
                env=env, capture_output=True, check=False, timeout=60,
            )  # fmt: skip
            subprocess.run(["ip", "netns", "del", n], check=False)


def _portkit_in(ns: str, how: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    enter = ["ip", "netns", "exec", ns] if how == "ip" else ["nsenter", f"--net=/run/netns/{ns}"]
    return subprocess.run(
        [*enter, sys.executable, "-m", "portkit", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_two_namespaces_roll_back_each_to_its_own_ruleset(
    two: tuple[str, str, dict[str, str]], tmp_path: pathlib.Path
) -> None:
    a, b, env = two
    host_before = _nft_ruleset(None)
    for ns, port, how in ((a, 1111, "ip"), (b, 2222, "nsenter")):
        old = tmp_path / f"old-{port}.yaml"
        old.write_text(OLD % port)
        old.chmod(0o600)
        r = _portkit_in(ns, how, env, "fw", "apply", "--policy", str(old), "--force")
        assert r.returncode == 0, r.stderr
    new = tmp_path / "new.yaml"
    new.write_text(NEW)
    new.chmod(0o600)
    # A, then B within A's window, both entered without --netns
    for ns, how in ((a, "ip"), (b, "nsenter")):
        r = _portkit_in(ns, how, env, "fw", "apply", "--policy", str(new), "--force", "--confirm", "3")
        assert r.returncode == 0, r.stderr
        assert "9999" in _nft_ruleset(ns)
    # each namespace has a rollback of its own, filed by identity
    pending = sorted(p.name for p in (tmp_path / "run" / "rollback").iterdir() if p.is_dir())
    assert len(pending) == 2 and all(p.startswith("firewall-net-") for p in pending), pending
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ("9999" in _nft_ruleset(a) or "9999" in _nft_ruleset(b)):
        time.sleep(0.2)
    ra, rb = _nft_ruleset(a), _nft_ruleset(b)
    assert "dport 1111" in ra and "2222" not in ra and "9999" not in ra, ra
    assert "dport 2222" in rb and "1111" not in rb and "9999" not in rb, rb
    assert _nft_ruleset(None) == host_before


def test_named_and_entered_namespace_share_one_key(two: tuple[str, str, dict[str, str]]) -> None:
    a, _b, env = two
    code = "from portkit.backends.netns import state_key; print(state_key({}))"
    by_name = subprocess.run(
        [sys.executable, "-c", code.format(repr(a))], env=env, capture_output=True, text=True, check=True
    ).stdout
    entered = subprocess.run(
        ["nsenter", f"--net=/run/netns/{a}", sys.executable, "-c", code.format("None")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    host = subprocess.run([sys.executable, "-c", code.format("None")], env=env, capture_output=True, text=True, check=True)
    assert by_name == entered and by_name.startswith("net-")
    assert host.stdout.strip() == "host"


def test_policy_path_with_a_newline_loads_nothing(two: tuple[str, str, dict[str, str]], tmp_path: pathlib.Path) -> None:
    a, _b, env = two
    evil = tmp_path / "inj\ntable inet evil { chain c { type filter hook input priority -300; policy drop; }; }\n#.yaml"
    evil.write_text(NEW)
    evil.chmod(0o600)
    before = _nft_ruleset(a)
    r = _portkit_in(a, "nsenter", env, "fw", "apply", "--policy", str(evil), "--force")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "control character" in r.stderr
    assert _nft_ruleset(a) == before and "evil" not in _nft_ruleset(a)
    assert not (tmp_path / "run" / "firewall").exists() or not any((tmp_path / "run" / "firewall").iterdir())
