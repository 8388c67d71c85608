"""Shared test configuration.

Markers: ``root`` (needs root: namespaces, nftables, raw sockets) and ``slow``.
Tests that need root or a system tool skip with a stated reason instead of failing.
The lab fixtures (``lab``, ...) come from :mod:`portkit.lab.pytest_plugin`; :mod:`tests.hostguard`
fails the session when the host's ruleset, routes or /etc/systemd/system changed.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["portkit.lab.pytest_plugin", "tests.hostguard"]

IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces, nftables, raw sockets)")


def needs_tool(name: str) -> pytest.MarkDecorator:
    """Skip unless the command ``name`` is installed (scripts/setup --dev installs it as root)."""
    found = shutil.which(name) or any(os.access(f"{d}/{name}", os.X_OK) for d in ("/usr/sbin", "/sbin"))
    return pytest.mark.skipif(not found, reason=f"needs the {name} command (scripts/setup --dev installs it)")
