"""Scan planning: timing profiles from the user's overrides, and how results are grouped.

Theory of operation: the defaults follow nmap -T4 (initial timeout 500 ms, at most
1250 ms, at least 100 ms, 6 retransmissions at most; see :mod:`portkit.engine.timing`).
``--timeout T`` pins every probe's wait to T seconds; ``--max-retries`` caps
retransmissions; ``--rate`` caps probes per second. Results are listed port by port, except
groups of more than 25 ports sharing protocol, state and reason, which are summarised as a
count (nmap's "Not shown: 998 closed tcp ports (conn-refused)"). Open ports are always listed.
"""

from __future__ import annotations

from portkit.engine.timing import TimingProfile
from portkit.model.probe import NotShown, PortResult, PortState, Reason

__all__ = [
    "COLLAPSE_OVER",
    "DEFAULT_MAX_WINDOW",
    "GroupKey",
    "compact_ports",
    "group_ports",
    "profile_for",
    "summarise",
]

COLLAPSE_OVER = 25
DEFAULT_MAX_WINDOW = 8192


def profile_for(
    *,
    timeout: float | None = None,
    retries: int | None = None,
    rate: float | None = None,
    initial: float = 0.5,
    max_window: int = DEFAULT_MAX_WINDOW,
) -> TimingProfile:
    """A TimingProfile from the command-line overrides (None = default)."""
    if timeout is not None:
        return TimingProfile(
            initial_rtt=timeout,
            min_rtt=timeout,
            max_rtt=timeout,
            lan_min_rtt=None,
            max_retries=6 if retries is None else retries,
            rate=rate,
            max_window=max_window,
        )
    return TimingProfile(
        initial_rtt=initial,
        max_rtt=max(1.25, initial),
        max_retries=6 if retries is None else retries,
        rate=rate,
        initial_window=64 if rate is None else 16,
        max_window=max_window,
    )


GroupKey = tuple[str, PortState, Reason]  # (proto, state, reason)


def summarise(
    members: dict[GroupKey, list[int]], *, collapse: bool = True
) -> tuple[set[GroupKey], tuple[NotShown, ...]]:
    """Which (proto, state, reason) groups are summarised, and their NotShown records
    (largest first). Open ports are never summarised."""
    hidden = {
        key
        for key, ports in members.items()
        if collapse and len(ports) > COLLAPSE_OVER and key[1] is not PortState.OPEN
    }
    order = sorted(hidden, key=lambda k: (-len(members[k]), k[0], k[1].value, k[2].value))
    return hidden, tuple(
        NotShown(k[1], k[2], len(members[k]), k[0], compact_ports(members[k])) for k in order
    )


def group_ports(
    rows: list[PortResult], *, collapse: bool = True
) -> tuple[tuple[PortResult, ...], tuple[NotShown, ...]]:
    """(ports to list, summarised groups), both sorted (by port; groups by size)."""
    members: dict[GroupKey, list[int]] = {}
    for r in rows:
        members.setdefault((r.proto, r.state, r.reason), []).append(r.port)
    hidden, groups = summarise(members, collapse=collapse)
    shown = tuple(
        sorted(
            (r for r in rows if (r.proto, r.state, r.reason) not in hidden), key=lambda r: (r.proto, r.port)
        )
    )
    return shown, groups


def compact_ports(ports: list[int] | tuple[int, ...]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (nmap's ``services`` attribute)."""
    out: list[str] = []
    ps = sorted(set(ports))
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        out.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return ",".join(out)
