"""Run an operation from another network namespace's vantage point (--netns / --netns-pid)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_from(netns: str | None, netns_pid: int | None, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside the namespace named by --netns NAME or --netns-pid PID (or right here).

    The work runs in a throwaway thread that entered the namespace, so sockets, netlink
    and the tools it starts all see that namespace's addresses, routes and rules."""
    if netns is None and netns_pid is None:
        return fn()
    from portkit.backends.netns import resolve, run_in_netns  # ctypes: only when a namespace is asked for

    return run_in_netns(resolve(netns, netns_pid), fn)
