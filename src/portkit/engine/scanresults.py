"""What a scan's raw verdicts become: one host's result rows, and the warnings they imply.

Theory of operation: the drivers return a verdict per (host index, port); this module groups
them (protocol, state, reason) so that only the listed ports become result objects (a full
scan has 65,535 verdicts of which a handful are shown; :func:`portkit.engine.scanplan.summarise`
decides which groups are counted instead), and reads the signature of a host that
rate-limits its ICMP errors out of its UDP verdicts.
"""

from __future__ import annotations

from collections.abc import Callable

from portkit.engine.scanplan import GroupKey, summarise
from portkit.model.probe import HostResult, PortResult, PortState, Verdict

__all__ = ["host_result", "icmp_rate_limit_warnings"]


def icmp_rate_limit_warnings(
    group: list[str], results: dict[tuple[int, int], Verdict], late_closed: dict[int, int]
) -> list[str]:
    """A warning per host whose silent UDP ports are likely closed ports muted by its ICMP
    rate limit.

    A Linux host sends about one ICMP error a second after a burst of 6 (unless its
    net.ipv4.icmp_ratelimit is 0): past the burst, closed ports fall silent and read
    open|filtered. The signatures: a port-unreachable that came only for a retransmission,
    or a handful of closed ports (burst-sized) against many silent ones.
    """
    out: list[str] = []
    for hi, address in enumerate(group):
        closed = silent = 0
        for (h, _p), v in results.items():
            if h == hi:
                if v.state is PortState.CLOSED:
                    closed += 1
                elif v.state is PortState.OPEN_FILTERED:
                    silent += 1
        late = late_closed.get(hi, 0)
        burst_sized = 1 <= closed <= 12 and silent >= 20 and silent >= 4 * closed
        if silent and (late or burst_sized):
            out.append(
                f"{address} seems to rate-limit its ICMP errors (only {closed} closed UDP port(s) "
                f"answered): some of its {silent} open|filtered port(s) may be closed; scan fewer "
                "ports, or slowly (--rate 1), for an exact answer"
            )
    return out


def host_result(
    target: str,
    address: str,
    hi: int,
    outcomes: dict[str, dict[tuple[int, int], Verdict]],
    port_lists: dict[str, tuple[int, ...]],
    all_ports: bool,
    service_name: Callable[[int, str], str | None],
) -> HostResult:
    """One host's rows: listed ports, and the groups summarised as counts (``service_name``
    names a port: the registry's name, else nmap's)."""
    # Group on the verdicts first and build result objects only for the listed ports:
    # a full scan has 65,535 verdicts of which a handful are shown.
    members: dict[GroupKey, list[int]] = {}
    verdicts: dict[tuple[str, int], Verdict] = {}
    scanned = 0
    for proto, results in outcomes.items():
        for port in port_lists[proto]:
            v = results.get((hi, port))
            if v is None:
                continue  # never probed: the scan was interrupted
            scanned += 1
            members.setdefault((proto, v.state, v.reason), []).append(port)
            verdicts[(proto, port)] = v
    hidden, not_shown = summarise(members, collapse=not all_ports)
    rows: list[PortResult] = []
    for key, ports in members.items():
        if key in hidden:
            continue
        for port in ports:
            v = verdicts[(key[0], port)]
            rows.append(
                PortResult(
                    port, key[0], v.state, v.reason, service_name(port, key[0]), v.reason_from, v.rtt_ms
                )
            )
    rows.sort(key=lambda r: (r.proto, r.port))
    return HostResult(target, address, tuple(rows), not_shown, scanned=scanned)
