"""The session-wide host guard (tests/hostguard.py) notices a change and fails the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hostguard

REPO = Path(__file__).resolve().parents[2]


def test_units_listing_sees_content_links_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "a.service").write_text("[Unit]\n")
    (tmp_path / "multi-user.target.wants").mkdir()
    (tmp_path / "multi-user.target.wants" / "a.service").symlink_to(tmp_path / "a.service")
    before = hostguard._units(str(tmp_path))
    assert "a.service sha256:" in before and "-> " in before and "multi-user.target.wants/" in before
    assert hostguard._units(str(tmp_path)) == before
    (tmp_path / "a.service").write_text("[Unit]\nExecStartPre=/bin/evil\n")
    changed = hostguard._units(str(tmp_path))
    assert changed != before
    found = hostguard.differences({"unit directory": before}, {"unit directory": changed})
    assert len(found) == 1 and "unit directory changed" in found[0] and "-" in found[0]
    assert hostguard.differences({"x": "same"}, {"x": "same"}) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the guard runs only as root")
def test_a_session_that_changes_the_host_fails(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(
        "from tests import hostguard\n"
        f"hostguard.UNIT_DIR = {str(units)!r}\n"
        "hostguard.SETTLE_SECONDS = 0.5\n"
        'pytest_plugins = ["tests.hostguard"]\n'
    )
    (inner / "test_touch.py").write_text(
        f"def test_leaves_a_unit_behind():\n    open({str(units / 'leak.service')!r}, 'w').close()\n"
    )
    (inner / "test_clean.py").write_text("def test_nothing():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PK_HOSTGUARD": "1"}

    def run(*files: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(inner),
            "-c",
            os.devnull,
        ]
        return subprocess.run(
            [*argv, *files], cwd=inner, env=env, capture_output=True, text=True, timeout=120
        )

    clean = run("test_clean.py")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    dirty = run("test_touch.py")
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert "hostguard: the test suite changed the host" in dirty.stdout
    assert "leak.service" in dirty.stdout
