"""Firewall model: the portkit policy, a live nftables ruleset, a packet, and a verdict.

Two rule worlds meet here. A :class:`Policy` is what the user writes (ufw-like, ordered,
first match wins). An :class:`NftRuleset` is what the kernel really has (``nft -j list
ruleset`` parsed into statements the evaluator understands). Both are judged for one
:class:`Packet` of a new connection, giving a :class:`FwCheckResult` whose field names are
the ``fw check --json`` contract.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

VERDICTS = ("accept", "drop", "reject", "unknown")
HOOKS = ("in", "out", "forward")
# IP protocol numbers by the names nft and iptables use, and the protocols with ports
PROTO_NUMBERS = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
    "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136,
}  # fmt: skip
PORT_PROTOS = frozenset({"tcp", "udp", "udplite", "sctp", "dccp"})
ACTIONS = ("allow", "deny", "reject")
PROTOS = ("tcp", "udp", "icmp", "icmpv6", "any")
Direction = Literal["in", "out"]


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class PortRange:
    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"

    def contains(self, port: int) -> bool:
        return self.lo <= port <= self.hi


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ordered rule. Empty ``ports``/``sources``/``destinations`` mean "any"."""

    direction: str  # "in" | "out"
    action: str  # "allow" | "deny" | "reject"
    proto: str = "any"  # tcp | udp | icmp | icmpv6 | any (ports with any: tcp and udp)
    ports: tuple[PortRange, ...] = ()
    port_text: tuple[str, ...] = ()  # as written (service names kept), parallel to ports
    sources: tuple[str, ...] = ()  # normalised CIDRs ("10.0.0.0/8", "2001:db8::1/128")
    destinations: tuple[str, ...] = ()
    interface: str | None = None
    family: str = "any"  # ipv4 | ipv6 | any
    log: bool = False
    comment: str | None = None
    line: int | None = None  # line in the policy file, for messages


@dataclass(frozen=True, slots=True)
class Policy:
    default_in: str = "deny"  # allow | deny | reject
    default_out: str = "allow"
    essential_icmp: bool = True
    log_default: bool = False  # log packets dropped/rejected by the default action
    rules: tuple[PolicyRule, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    line: int | None
    rule: int  # 1-based rule number
    message: str


# --------------------------------------------------------------------------- packets and results


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a new connection, as a hook sees it."""

    hook: str  # "in" | "out" | "forward"
    proto: str  # tcp | udp | icmp | icmpv6 | sctp ... (or a number as text)
    src: IPAddress
    dst: IPAddress
    dport: int | None = None
    sport: int | None = None
    iif: str | None = None
    oif: str | None = None
    icmp_type: str | None = None  # for icmp/icmpv6; None means echo-request
    ct_state: str = "new"  # "established": a later packet (the handshake's ACK); nat chains skipped

    @property
    def family(self) -> int:
        return self.src.version


@dataclass(frozen=True, slots=True)
class DecidedBy:
    table: str
    chain: str
    handle: int | None
    rule: str


@dataclass(frozen=True, slots=True)
class TraceStep:
    table: str
    chain: str
    rule: str
    result: str


@dataclass(frozen=True, slots=True)
class TranslatedDestination:
    address: str
    port: int | None


@dataclass(frozen=True, slots=True)
class FwCheckResult:
    verdict: str  # accept | drop | reject | unknown
    hook: str
    decided_by: DecidedBy | None
    trace: tuple[TraceStep, ...] = ()
    translated_destination: TranslatedDestination | None = None
    reason: str | None = None  # why "unknown": the expression portkit could not evaluate


@dataclass(frozen=True, slots=True)
class DnatEntry:
    """A DNAT/redirect rule of a nat prerouting chain that a packet would meet."""

    table: str
    chain: str
    handle: int | None
    rule: str
    proto: str | None
    dport: int | None
    target: TranslatedDestination


# --------------------------------------------------------------------------- live ruleset
# Statements are a small closed vocabulary; anything else becomes Unknown(text).


@dataclass(frozen=True, slots=True)
class Lit:
    value: str | int | bool


@dataclass(frozen=True, slots=True)
class Prefix:
    addr: str
    length: int


@dataclass(frozen=True, slots=True)
class Range:
    lo: str | int
    hi: str | int


@dataclass(frozen=True, slots=True)
class SetRef:
    name: str


@dataclass(frozen=True, slots=True)
class AnonSet:
    elements: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Concat:
    parts: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Flags:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Opaque:
    text: str


Value: TypeAlias = Lit | Prefix | Range | SetRef | AnonSet | Concat | Flags | Opaque


@dataclass(frozen=True, slots=True)
class Match:
    """``left op right``; ``key`` names the packet field(s) ("ip saddr", "tcp dport", ...)."""

    key: tuple[str, ...]
    op: str
    right: Value
    mask: Value | None = None  # left is ``key & mask`` (tcp flags)


@dataclass(frozen=True, slots=True)
class VerdictStmt:
    kind: str  # accept drop reject jump goto return continue queue
    target: str | None = None  # chain for jump/goto; reject type for reject


@dataclass(frozen=True, slots=True)
class VMap:
    key: tuple[str, ...]
    data: SetRef | tuple[tuple[Value, VerdictStmt], ...]


@dataclass(frozen=True, slots=True)
class Nat:
    kind: str  # dnat snat masquerade redirect
    addr: str | None = None
    port: int | None = None
    opaque: str | None = None  # set when the target cannot be evaluated (maps, ranges)


@dataclass(frozen=True, slots=True)
class SetMark:
    what: str  # "meta mark" | "ct mark"
    value: int | None  # None: not a plain constant


@dataclass(frozen=True, slots=True)
class Passive:
    """counter, log, limit, quota-less statements that do not change the verdict."""

    name: str


@dataclass(frozen=True, slots=True)
class Unknown:
    text: str


Stmt: TypeAlias = Match | VerdictStmt | VMap | Nat | SetMark | Passive | Unknown


@dataclass(frozen=True, slots=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int | None
    stmts: tuple[Stmt, ...]
    text: str
    comment: str | None = None
    # nft's listing drops a ``meta nfproto`` match written before ``reject with tcp reset``
    # in inet tables; until the bytecode says which, such a rule is ambiguous (the reason).
    ambiguous: str | None = None
    # Read from netlink and not decoded yet: the rule's bytecode (NFTA_RULE_EXPRESSIONS);
    # ``stmts`` is empty until portkit.parse.nftnetlink.decode_rule fills it.
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class NftChain:
    family: str
    table: str
    name: str
    rules: tuple[NftRule, ...] = ()
    type: str | None = None  # filter | nat | route; None for a regular chain
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None
    device: str | None = None

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True, slots=True)
class SetElement:
    key: Value
    verdict: VerdictStmt | None = None
    data: Value | None = None  # a map's non-verdict data (dnat addresses, marks)


@dataclass(frozen=True, slots=True)
class NftSet:
    family: str
    table: str
    name: str
    key_type: tuple[str, ...]
    elements: tuple[SetElement, ...] = ()
    is_map: bool = False
    map_type: str | None = None
    # Read from netlink: the elements come in a dump of their own, read when needed.
    complete: bool = True
    flags: int = 0  # NFT_SET_* (interval, map, anonymous ...)
    key_ids: tuple[int, ...] = ()  # nft datatype ids of the key's fields
    field_lens: tuple[int, ...] = ()
    key_len: int = 0


@dataclass(frozen=True, slots=True)
class NftRuleset:
    chains: tuple[NftChain, ...] = ()
    sets: tuple[NftSet, ...] = ()
    tables: tuple[tuple[str, str], ...] = ()  # (family, name)
    notes: tuple[str, ...] = field(default=())  # e.g. "xt rules read through iptables-save"
    ifnames: tuple[tuple[int, str], ...] = ()  # interface indexes (netlink reader: to decode "iif")


# --------------------------------------------------------------------------- views and outcomes


@dataclass(frozen=True, slots=True)
class ShowRule:
    handle: int | None
    rule: str


@dataclass(frozen=True, slots=True)
class ShowChain:
    table: str  # "inet portkit"
    chain: str
    type: str | None
    hook: str | None
    prio: int | None
    policy: str | None
    device: str | None
    rules: tuple[ShowRule, ...]


@dataclass(frozen=True, slots=True)
class ShowSet:
    table: str  # "inet filter"
    name: str
    kind: str  # "set" | "map"
    type: str  # "ipv4_addr", "inet_service : verdict"
    elements: tuple[str, ...]  # "10.0.0.0/8", "22 : accept"


@dataclass(frozen=True, slots=True)
class ShowHook:
    hook: str
    family: str  # "ipv4" / "ipv6" / "netdev"...: which packets these chains see
    chains: tuple[str, ...]  # "inet portkit input" in the order the kernel runs them


@dataclass(frozen=True, slots=True)
class RulesetView:
    hooks: tuple[ShowHook, ...]
    chains: tuple[ShowChain, ...]
    notes: tuple[str, ...] = ()
    sets: tuple[ShowSet, ...] = ()  # named sets and maps, which rules refer to as @name


@dataclass(frozen=True, slots=True)
class PolicyListing:
    path: str
    exists: bool
    default_in: str
    default_out: str
    essential_icmp: bool
    rules: tuple[PolicyRule, ...]
    warnings: tuple[PolicyWarning, ...]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool
    netns: str | None
    table: str
    rules: int
    previous_saved: str | None  # where the previous portkit table was kept
    confirm_deadline: float | None  # epoch seconds; None without --confirm
    warnings: tuple[PolicyWarning, ...] = ()


@dataclass(frozen=True, slots=True)
class FwStatus:
    netns: str | None
    active: bool  # table inet portkit loaded
    rules: int
    policy_file: str
    in_sync: bool | None  # the loaded table is what the policy file compiles to
    pending_rollback: bool
    rollback_seconds_left: float | None
    last_rollback: str | None
    boot_unit: bool  # the systemd unit is installed


def _reduce(self: object) -> tuple[type, tuple[object, ...]]:
    # Pickle by constructor arguments: about twice as fast to load as the generic
    # dataclass __setstate__, which matters for the cached 5,000-rule rulesets.
    return (type(self), tuple(getattr(self, name) for name in type(self).__slots__))  # type: ignore[attr-defined]


for _cls in (Lit, Prefix, Range, SetRef, AnonSet, Concat, Flags, Opaque, Match, VerdictStmt, VMap, Nat,
             SetMark, Passive, Unknown, NftRule, NftChain, SetElement, NftSet, NftRuleset):  # fmt: skip
    _cls.__reduce__ = _reduce  # type: ignore[method-assign]
