"""State an unprivileged user planted is refused by root (issue 12, "What broke" 3).

The directories are made world-writable by hand, as an older portkit under ``umask 000``
left them; user nobody then plants a lab state file and swaps a pending rollback's
``meta.json`` and ``restore.nft``. Root's ``lab down`` and root's rollback timer refuse,
in one line, and nothing is deleted or loaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_tool

pytestmark = [pytest.mark.root, needs_tool("setpriv"), needs_tool("nft")]

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def plant(path: Path, text: str) -> None:
    """Write ``path`` as user nobody (replacing what is there, as a rename would)."""
    subprocess.run([*AS_NOBODY, "sh", "-c", 'rm -f "$1" && cat > "$1"', "sh", str(path)], input=text, text=True, check=True, timeout=10)
    assert path.stat().st_uid == 65534


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pk-state-"))
    d.chmod(0o755)
    monkeypatch.setenv("PORTKIT_RUN_DIR", str(d))
    monkeypatch.delenv("PORTKIT_LAB_STATE_DIR", raising=False)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def portkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portkit", *args], capture_output=True, text=True, timeout=60, check=False)


def test_root_refuses_a_planted_lab_state_file(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    labs = run_dir / "labs"
    labs.mkdir()
    labs.chmod(0o777)  # as left by a run under umask 000
    plant(labs / "x.json", json.dumps({"name": "x", "status": "up", "namespaces": [f"../../..{victim}"], "pids": {}}))
    r = portkit("lab", "down", "x")
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().splitlines() == [f"portkit: refusing {labs}: writable by others"]
    assert (victim / "keep").read_text() == "precious"
    labs.chmod(0o755)  # a trusted directory, but the file is nobody's
    r = portkit("lab", "down", "x")
    assert r.returncode == 4 and r.stderr.strip() == f"portkit: refusing {labs / 'x.json'}: owned by uid 65534", r.stderr
    assert (victim / "keep").exists()


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"pk-st-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def tables(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def test_roots_timer_refuses_a_swapped_rollback(run_dir: Path, ns: str) -> None:
    from portkit.backends import rollback
    from portkit.backends.netns import state_key

    name = f"firewall-{state_key(ns)}"  # the name 'fw apply --netns NS --confirm' arms
    st = rollback.arm(name, "add table inet good_old_state\n", 60, netns=ns)
    assert st.armed and st.pid is not None
    d = run_dir / "rollback" / name
    (run_dir / "rollback").chmod(0o755)
    d.chmod(0o777)  # as left by a run under umask 000
    plant(d / "restore.nft", "add table inet attacker\n")
    plant(d / "meta.json", json.dumps({"name": name, "deadline": 0, "netns": ns, "pid": st.pid}))
    deadline = time.monotonic() + 20
    result = run_dir / "rollback" / f"{name}.result.json"
    while not result.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result.exists(), "the timer never reported"
    got = json.loads(result.read_text())["result"]
    assert got == f"rollback failed: refusing {d}: writable by others", got
    assert "attacker" not in tables(ns) and "good_old_state" not in tables(ns)
    # root's own commands refuse the same state in one line, exit 4
    r = portkit("fw", "confirm", "--netns", ns)
    assert r.returncode == 4 and r.stderr.strip().splitlines() == [f"portkit: refusing {d}: writable by others"], r.stderr
    os.chmod(d, 0o700)
