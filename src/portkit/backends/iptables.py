"""The iptables side of the firewall: ``iptables-save`` text, for rules nft cannot show.

Rules made by iptables-nft carry xtables matches (``xt match "conntrack"``) whose meaning
lives in the kernel module, not in nft's bytecode listing; ``iptables-save`` prints them in
its own syntax, which :mod:`portkit.parse.iptables_save` reads and merges into the ruleset.
"""

from __future__ import annotations

import subprocess

from portkit.backends.host import find_tool

__all__ = ["iptables_save"]


def iptables_save(*, ipv6: bool = False, netns: str | None = None) -> str | None:
    """``iptables-save`` (or ip6tables-save) text, or None when the command is missing."""
    exe = find_tool("ip6tables-save" if ipv6 else "iptables-save")
    if exe is None:
        return None
    argv = [exe] if netns is None else ["ip", "netns", "exec", netns, exe]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):  # no iptables-save, or it hung: no iptables view, which the caller reports
        return None
    return proc.stdout if proc.returncode == 0 else None
