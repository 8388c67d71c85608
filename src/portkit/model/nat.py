"""The kernel's translation table (conntrack) as plain data: what a flow was and what it became."""

from __future__ import annotations

from dataclasses import dataclass

from portkit.model.fields import internal


@dataclass(frozen=True, slots=True)
class NatTuple:
    """One direction of a flow. Ports are None for protocols without ports (icmp, gre)."""

    src: str
    sport: int | None
    dst: str
    dport: int | None

    def text(self) -> str:
        return f"{_ep(self.src, self.sport)} -> {_ep(self.dst, self.dport)}"


def _ep(addr: str, port: int | None) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return host if port is None else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class NatEntry:
    """A translated flow. JSON contract (``nat --json``): the public fields, by name.

    ``original`` is conntrack's original tuple; ``translated`` is the flow as it left the
    host: src = reply.dst, sport = reply.dport, dst = reply.src, dport = reply.sport.
    ``kind`` is "snat" (the source changed), "dnat" (the destination changed) or "both";
    ``port_translated`` is true when a port changed (PAT, or a DNAT to another port).
    """

    proto: str
    state: str | None
    kind: str
    port_translated: bool
    original: NatTuple
    translated: NatTuple
    timeout_s: int
    family: int = internal(default=4)
    flags: tuple[str, ...] = internal(default=())
    conntrack_id: int | None = internal(default=None)

    @property
    def label(self) -> str:
        """SNAT, PAT, DNAT or SNAT+DNAT, as the table shows it."""
        if self.kind == "snat":
            src_port_changed = self.original.sport != self.translated.sport
            return "PAT" if src_port_changed else "SNAT"
        if self.kind == "dnat":
            return "DNAT"
        return "SNAT+DNAT"

    @property
    def key(self) -> tuple[str, NatTuple]:
        """Identifies the flow across two reads (``--watch``)."""
        return (self.proto, self.original)


@dataclass(frozen=True, slots=True)
class NatChange:
    """What changed in the translation table between two reads (``portkit nat --watch``).

    ``at`` is when the second read was made, in seconds since the epoch.
    """

    at: float
    added: tuple[NatEntry, ...]
    gone: tuple[NatEntry, ...]
    changed: tuple[NatEntry, ...]  # flows whose state changed
