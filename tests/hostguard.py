"""A session-wide guard: the test suite leaves the host's ruleset, routes and units alone.

Tests work in ``pk-`` namespaces and temporary directories; nothing they do may reach the
host. This plugin records, at session start, the host's nftables ruleset (``nft list
ruleset``), its routes (``ip route show table all`` and ``ip -6 route show table all``)
and the listing and content hashes of ``/etc/systemd/system``, and compares them at the
end. A difference fails the session with a message naming what changed. Other sessions
on the same machine may change the host for a moment (a lab's veth pair is born in the
root namespace), so a difference must persist for a few seconds before it counts.

Skipped when not root (the ruleset cannot be read, and nothing could be changed anyway).
Set ``PK_HOSTGUARD=0`` to switch it off by hand.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import subprocess
import time

import pytest

UNIT_DIR = "/etc/systemd/system"
SETTLE_SECONDS = 5.0

_KEY = pytest.StashKey[dict[str, str]]()


def _run(argv: list[str]) -> str:
    exe = shutil.which(argv[0]) or next(
        (f"{d}/{argv[0]}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{argv[0]}", os.X_OK)), None
    )
    if exe is None:
        return f"<{argv[0]} not installed>"
    r = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=60, check=False)
    return r.stdout if r.returncode == 0 else f"<{' '.join(argv)} failed: {r.stderr.strip()}>"


def _units(root: str | None = None) -> str:
    """One line per entry under ``root`` (default: UNIT_DIR): path, kind and content hash or link target."""
    root = UNIT_DIR if root is None else root
    lines: list[str] = []
    if not os.path.isdir(root):
        return "<no such directory>"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path):
                    lines.append(f"{path} -> {os.readlink(path)}")
                elif os.path.isdir(path):
                    lines.append(f"{path}/")
                else:
                    with open(path, "rb") as f:
                        lines.append(f"{path} sha256:{hashlib.sha256(f.read()).hexdigest()}")
            except OSError as exc:
                lines.append(f"{path} <unreadable: {exc.strerror}>")
    return "\n".join(lines) + "\n"


def snapshot() -> dict[str, str]:
    """The host facts this guard compares, by name."""
    return {
        "nftables ruleset": _run(["nft", "list", "ruleset"]),
        "IPv4 routes": _run(["ip", "route", "show", "table", "all"]),
        "IPv6 routes": _run(["ip", "-6", "route", "show", "table", "all"]),
        "unit directory " + UNIT_DIR: _units(),
    }


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """A short unified diff per fact that changed."""
    out: list[str] = []
    for name, old in before.items():
        new = after.get(name, "")
        if old != new:
            diff = list(
                difflib.unified_diff(old.splitlines(), new.splitlines(), "before", "after", lineterm="", n=1)
            )
            shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
            out.append(f"the host's {name} changed during the test session:\n{shown}")
    return out


def _enabled() -> bool:
    return os.geteuid() == 0 and os.environ.get("PK_HOSTGUARD", "1") != "0"


def pytest_configure(config: pytest.Config) -> None:
    # pytest_configure is a historic hook: it runs even when this plugin is registered late
    # (a conftest found during collection), so the snapshot is always taken before any test.
    if _enabled() and not hasattr(config, "workerinput"):
        config.stash[_KEY] = snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_KEY, None)
    if before is None:
        return
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        found = differences(before, snapshot())
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = "hostguard: the test suite changed the host\n" + "\n".join(found)
    if reporter is not None:
        reporter.write_sep("=", "hostguard", red=True)
        reporter.write_line(text)
    else:
        print(text)  # no terminal reporter (e.g. -p no:terminal)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
