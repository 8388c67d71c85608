"""`portkit why`: the facts gathered about one path to a port, and the diagnosis drawn from them.

Two halves:

* :class:`Facts` is a recorded snapshot of everything the gathering step learned (or could
  not learn, and why). It is plain data, so a snapshot can be written down in a unit test
  and the reasoning replayed on it without a network.
* :class:`Diagnosis` is what the reasoning step (:mod:`portkit.engine.diagnosis`) makes of
  it. Its public field names are the JSON contract of ``portkit why --json``::

    {"target": str, "address": str|null, "port": int, "proto": str, "reachable": bool,
     "findings": [{"code": str, "message": str, "evidence": [str], "fix": str|null}],
     "checks": [{"name": str, "status": "pass"|"fail"|"unknown"|"skipped", "detail": str}]}

Human-readable text is carried twice: the English string (for JSON, stable for scripts) and
a translatable template (an ``internal`` field, left out of JSON) that the renderer shows in the
user's language. model/ imports nothing of portkit but model, so the template type is a
structural :class:`Localizable` (``portkit.i18n.Message`` satisfies it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from portkit.model.fields import NOT_IN_JSON, internal
from portkit.model.text import Localizable
from portkit.model.trace import TraceResult


class Code(StrEnum):
    """Stable finding codes (scripts match on these)."""

    REACHABLE = "REACHABLE"
    NAME_NOT_RESOLVED = "NAME_NOT_RESOLVED"
    NO_ROUTE = "NO_ROUTE"
    FIREWALL_OUTBOUND = "FIREWALL_OUTBOUND"
    FILTERED_ON_PATH = "FILTERED_ON_PATH"
    FIREWALL_FORWARD = "FIREWALL_FORWARD"
    FORWARD_TARGET_UNREACHABLE = "FORWARD_TARGET_UNREACHABLE"
    FORWARD_TARGET_NOT_LISTENING = "FORWARD_TARGET_NOT_LISTENING"
    EXPOSED_DESPITE_INBOUND_DENY = "EXPOSED_DESPITE_INBOUND_DENY"
    FIREWALL_INBOUND_DROP = "FIREWALL_INBOUND_DROP"
    FIREWALL_INBOUND_REJECT = "FIREWALL_INBOUND_REJECT"
    NOT_LISTENING = "NOT_LISTENING"
    LOOPBACK_ONLY = "LOOPBACK_ONLY"
    BOUND_TO_OTHER_ADDRESS = "BOUND_TO_OTHER_ADDRESS"
    UNKNOWN = "UNKNOWN"


class Stage(StrEnum):
    """Where on the path a fact or finding sits; findings are sorted by it."""

    CLIENT = "client"
    PATH = "path"
    ROUTER = "router"
    SERVER = "server"


STAGE_ORDER = {Stage.CLIENT: 0, Stage.PATH: 1, Stage.ROUTER: 2, Stage.SERVER: 3}

CHECK_STATUSES = ("pass", "fail", "unknown", "skipped")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Unknown:
    """A fact that could not be determined, and why (e.g. no privilege to read the ruleset)."""

    what: str  # a check name: "outbound", "inbound", "listen", "dnat", "forward", "conntrack", ...
    reason: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a host name resolved to (both families), or the resolver's error."""

    name: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RouteFact:
    """``ip route get``: kind is "unicast", "local" (the address is this host's), or "none"."""

    destination: str
    kind: str
    dev: str | None = None
    source: str | None = None
    gateway: str | None = None
    error: str | None = None  # the kernel's answer when kind is "none"


@dataclass(frozen=True, slots=True)
class ProbeFact:
    """One probe (portkit check) and what answered it, in nmap's vocabulary."""

    address: str
    port: int
    proto: str
    state: str  # open | closed | filtered | open|filtered
    reason: (
        str  # syn-ack, conn-refused, reset, udp-response, port-unreach, no-response, admin-prohibited, ...
    )
    reason_from: str | None = None
    rtt_ms: float | None = None
    vantage: str = "here"  # "here" or the address the probe was sent from (e.g. the router)


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """The firewall's verdict for one packet at one hook, and the rule that decided."""

    hook: str  # in | out | forward
    verdict: str  # accept | drop | reject
    rule: str | None  # the deciding rule's text, or "policy drop"
    packet: str  # the packet that was evaluated, e.g. "tcp 192.0.2.1 -> 10.0.2.2:22 iif wan"
    table: str | None = None  # where the deciding rule lives (None: unknown or no rule)
    chain: str | None = None
    handle: int | None = None  # None with a table/chain: the chain's policy decided
    family: str | None = None  # nft family of the table (inet, ip, ip6), when known

    @property
    def where(self) -> str:
        """``table inet filter chain input handle 4`` (as much of it as is known)."""
        parts: list[str] = []
        if self.table:
            parts.append(f"table {self.family + ' ' if self.family else ''}{self.table}")
        if self.chain:
            parts.append(f"chain {self.chain}")
        if self.handle is not None:
            parts.append(f"handle {self.handle}")
        elif self.chain:
            parts.append("policy")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening (TCP) or bound (UDP) socket on the port in question."""

    address: str
    port: int
    proto: str
    process: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class DnatFact:
    """A prerouting DNAT / port-forward rule that matches the packet."""

    rule: str
    to_address: str
    to_port: int


@dataclass(frozen=True, slots=True)
class ForwardPath:
    """Router vantage: a DNAT'd (or plainly routed) packet and what happens to it beyond here."""

    destination: str  # where the packet goes after prerouting (translated when dnat is set)
    port: int
    dnat: DnatFact | None
    forward: RuleVerdict | None  # None: not determined (see Facts.unknowns "forward")
    route: RouteFact | None = None  # route to the destination
    target_local: bool = False  # the destination is this host (redirect / DNAT to self)
    listeners: tuple[Listener, ...] | None = None  # when target_local: sockets on that port
    probe: ProbeFact | None = None  # when remote: a probe sent from this host to the destination
    nearby: tuple[Listener, ...] = ()  # when target_local and nothing listens: other ports open there


@dataclass(frozen=True, slots=True)
class ConntrackFact:
    """A conntrack entry for the flow, with the translation it records."""

    original: str  # "tcp 10.0.1.2:40000 -> 192.0.2.1:8080"
    translated: str  # "10.0.1.2:40000 -> 10.0.2.2:2988" as it left the host
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything known about one path, from one vantage point (roles say which)."""

    target: str  # as the user typed it
    port: int
    proto: str
    address: str | None  # the address chosen (None: the name did not resolve)
    roles: frozenset[str]  # subset of {"client", "router", "server"}
    client: str | None = None  # the client's address (--from, or our route source)
    resolution: Resolution | None = None  # None: the target was an address literal
    route: RouteFact | None = None
    local_target: bool = False  # the address belongs to this host
    outbound: RuleVerdict | None = None
    probe: ProbeFact | None = None
    trace: TraceResult | None = None
    listeners: tuple[Listener, ...] | None = None  # None: not looked at or not determined
    inbound: RuleVerdict | None = None
    forwards: tuple[ForwardPath, ...] = ()
    conntrack: tuple[ConntrackFact, ...] = ()
    other_family: ProbeFact | None = None  # a probe of the name's address in the other family
    unknowns: tuple[Unknown, ...] = ()

    def unknown(self, what: str) -> Unknown | None:
        for u in self.unknowns:
            if u.what == what:
                return u
        return None


# --------------------------------------------------------------------------- diagnosis


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    message: str
    evidence: tuple[str, ...]
    fix: str | None
    stage: str = field(metadata=NOT_IN_JSON)
    # False: reported, but does not stop the connection (REACHABLE, exposure)
    blocking: bool = field(metadata=NOT_IN_JSON)
    message_text: Localizable = field(metadata=NOT_IN_JSON)
    evidence_text: tuple[Localizable, ...] = field(metadata=NOT_IN_JSON)
    fix_text: Localizable | None = field(metadata=NOT_IN_JSON)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str
    detail_text: Localizable = field(metadata=NOT_IN_JSON)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    target: str
    address: str | None
    port: int
    proto: str
    reachable: bool
    findings: tuple[Finding, ...]
    checks: tuple[Check, ...]
    roles: frozenset[str] = internal(default=frozenset())
    trace: TraceResult | None = internal(default=None)

    @property
    def main(self) -> Finding:
        return self.findings[0]
