"""A traceroute aimed at a port: one row per TTL, and where the probes stopped.

Field names are the JSON contract of ``portkit trace --json``::

    {"target": str, "address": str, "port": int, "proto": str, "reached": bool,
     "state": "open"|"closed"|"filtered"|"open|filtered",
     "hops": [{"ttl": int, "address": str|null, "rtt_ms": float|null}], "last_hop": str|null}
"""

from __future__ import annotations

from dataclasses import dataclass

from portkit.model.fields import internal

# What answered a probe at one TTL (``TraceHop.kind``; internal fields stay out of JSON).
HOP_TIME_EXCEEDED = "time-exceeded"  # a router on the way
HOP_DESTINATION = "destination"  # the target itself answered (open or closed)
HOP_UNREACHABLE = "unreachable"  # an ICMP destination-unreachable (its reason names the code)
HOP_SILENT = "silent"  # nothing came back


@dataclass(frozen=True, slots=True)
class TraceHop:
    ttl: int
    address: str | None
    rtt_ms: float | None
    kind: str = internal(default=HOP_SILENT)
    reason: str | None = internal(default=None)  # e.g. "admin-prohibited", "syn-ack", "conn-refused"


@dataclass(frozen=True, slots=True)
class TraceResult:
    target: str
    address: str
    port: int
    proto: str
    reached: bool
    state: str
    hops: tuple[TraceHop, ...]
    last_hop: str | None
    reason: str = internal(default="no-response")  # how the destination answered (nmap reason vocabulary)
    reason_from: str | None = internal(default=None)  # sender of an ICMP error that ended the trace
    # "recverr" (error queue of ordinary sockets), "raw", or "recverr+raw"
    method: str = internal(default="recverr")

    @property
    def last_hop_ttl(self) -> int | None:
        """TTL of the last hop that answered, or None when nothing did."""
        answered = [h.ttl for h in self.hops if h.address is not None]
        return answered[-1] if answered else None
