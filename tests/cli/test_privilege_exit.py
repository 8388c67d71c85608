"""Missing privilege is exit status 3 on every command (issue 12, item 9), run as nobody."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody"
)

POLICY = "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 22}\n"

COMMANDS = [
    ["lab", "up", str(LABS / "nat-pat.yaml")],
    ["lab", "down", "nat-pat"],
    ["lab", "exec", "nat-pat", "router", "--", "true"],
    ["fw", "apply", "--policy", "{policy}", "--force"],
    ["fw", "show"],
    ["fw", "reset"],
    ["fw", "allow", "80"],
    ["fw", "check", "--src", "192.0.2.1", "--dst", "127.0.0.1", "--dport", "22"],
    ["forward", "--kernel", "8080:127.0.0.1:80"],
    ["forward", "127.0.0.1:1:127.0.0.1:2"],
    ["nat"],
    ["scan", "127.0.0.1", "-sS", "-p", "22"],
    ["who", "22", "--netns-pid", "1"],
    ["ls", "--netns-pid", "1"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_missing_privilege_is_exit_3(argv: list[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    tmp_path.chmod(0o755)
    policy.chmod(0o644)
    args = [a.replace("{policy}", str(policy)) for a in argv]
    r = subprocess.run(
        [*NOBODY, sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert r.returncode == 3, (args, r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
