"""Walk a live nftables ruleset for one packet of a new connection, as the kernel does.

Theory of operation. A packet crosses netfilter hooks in a fixed order: inbound
``prerouting -> input``, routed ``prerouting -> forward -> postrouting``, local
``output -> postrouting`` (netdev/inet ``ingress`` chains bound to the incoming device run
before prerouting). At each hook, every base chain registered there by a table of a family
that applies (``inet`` and ``ip`` for IPv4, ``inet`` and ``ip6`` for IPv6) runs in
priority order. ``accept`` ends only the base chain it occurs in; the packet goes on to the
next base chain and hook. ``drop`` and ``reject`` end everything. ``jump`` pushes a return
position, ``goto`` does not, ``return`` (or the end of a regular chain) pops, and the end
of a base chain applies its policy.

NAT chains are special, as in the kernel's nf_nat core: all ``type nat`` chains of a hook
run together at the NAT core's own priority (-100 for prerouting and output, 100 for input
and postrouting), ordered among themselves by their priority, and only until the first one
that binds a mapping. A DNAT in prerouting changes the destination that later chains see;
when the local addresses are known and the new destination is not one of them, the packet
is routed to forward instead of input (Docker's published ports).

Matches evaluate to true, false or undecided. Inside a rule, a false match anywhere means
the rule does not apply whatever else it holds; an undecided match with a verdict after it
makes the whole answer ``unknown`` naming the expression. The evaluator never guesses.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace

from portkit.engine.nftbytes import PacketImage, certainly_no_match
from portkit.engine.nftmatch import (
    FLAG_KEYS,
    Undecided,
    address_or_none,
    contains,
    contains_concat,
    key_class,
    proto_number,
)
from portkit.model.firewall import (
    PORT_PROTOS,
    AnonSet,
    DecidedBy,
    Flags,
    FwCheckResult,
    IPAddress,
    Lit,
    Match,
    Nat,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    Packet,
    Passive,
    SetMark,
    SetRef,
    TraceStep,
    TranslatedDestination,
    Unknown,
    Value,
    VerdictStmt,
    VMap,
)
from portkit.parse.nftjson import LIMIT_OVER
from portkit.parse.nftnetlink import anonymous_refs, decode_rule, inline_anonymous
from portkit.syntax.nfttext import rule_text

PATHS: dict[str, tuple[str, ...]] = {
    "in": ("ingress", "prerouting", "input"),
    "forward": ("ingress", "prerouting", "forward", "postrouting"),
    "out": ("output", "postrouting"),
}
MAIN_STAGE = {"in": "input", "forward": "forward", "out": "output"}
NAT_CORE_PRIO = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}
_MAX_DEPTH = 64
_OPAQUE_MATCHES = ("xt match ", "iptables -m ")


class _NoField(Exception):
    """The packet has no such header (``tcp dport`` of a UDP packet): the match is false."""


@dataclass(slots=True)
class _State:
    packet: Packet
    dst: IPAddress
    dport: int | None
    mark: int | None = 0
    ctmark: int | None = 0
    ct_state: str = "new"
    translated: TranslatedDestination | None = None
    stage: str = ""
    trace: list[TraceStep] = field(default_factory=list)
    image: tuple[object, PacketImage] | None = None


@dataclass(frozen=True, slots=True)
class _ChainEnd:
    verdict: str  # accept drop reject unknown
    chain: NftChain
    rule: NftRule | None  # None: the chain policy decided
    reason: str | None = None
    nat: Nat | None = None


class _TableSets(dict[str, NftSet]):
    """One table's sets by name. A set read as a header only (netlink reader) has its
    elements loaded through ``load`` the first time a lookup needs it."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[NftSet], NftSet] | None) -> None:
        super().__init__()
        self.load = load

    def get(self, name: str, default: NftSet | None = None) -> NftSet | None:  # type: ignore[override]
        s = dict.get(self, name)
        if s is not None and not s.complete:
            if self.load is None:
                raise Undecided(f"set @{name} (its elements were not read)")
            s = self.load(s)
            self[name] = s
        return s if s is not None else default


class Evaluator:
    """Evaluates packets against one ruleset; build once, call :meth:`evaluate` many times."""

    def __init__(
        self,
        ruleset: NftRuleset,
        *,
        local_addresses: Collection[IPAddress] | None = None,
        route: Callable[[IPAddress], str | None] | None = None,
        load_set: Callable[[NftSet], NftSet] | None = None,
    ) -> None:
        """``local_addresses``: the host's own addresses (fib daddr type, DNAT re-routing);
        ``route``: the output interface for a destination, used after a DNAT re-routes a
        packet to forward; ``load_set``: reads the elements of a set given as a header only.
        All are facts the caller gathers; without them, the matches that need them are
        undecided."""
        self.ruleset = ruleset
        self.local = frozenset(local_addresses) if local_addresses is not None else None
        self.route = route
        self._chains = {(c.family, c.table, c.name): c for c in ruleset.chains}
        self._sets: dict[tuple[str, str], _TableSets] = {}
        self._headers: dict[tuple[str, str], dict[str, NftSet]] = {}  # for decoding lookups
        for s in ruleset.sets:
            self._sets.setdefault((s.family, s.table), _TableSets(load_set))[s.name] = s
            self._headers.setdefault((s.family, s.table), {})[s.name] = s
        self._empty = _TableSets(load_set)
        self._ifnames = dict(ruleset.ifnames)
        self._decoded: dict[int, NftRule] = {}
        self.prefilter = True  # the byte-level no-match check of rules read from netlink

    def _full(self, rule: NftRule) -> NftRule:
        """A rule read lazily from netlink, decoded (once)."""
        got = self._decoded.get(id(rule))
        if got is None:
            headers = self._headers.get((rule.family, rule.table), {})
            got = self._decoded[id(rule)] = decode_rule(rule, headers, self._ifnames)
        return got

    def rule_text(self, rule: NftRule) -> str:
        """The rule as one nft-like line, anonymous sets written out."""
        names = anonymous_refs(rule) if not rule.text else ()
        if names:
            sets = self._sets.get((rule.family, rule.table), self._empty)
            for n in names:
                with contextlib.suppress(Undecided):
                    sets.get(n)  # read it, to be written out
            rule = inline_anonymous(rule, sets)
        return rule_text(rule)

    # ------------------------------------------------------------------ packet fields

    def _field(self, key: str, st: _State) -> object:
        p = st.packet
        proto = p.proto.lower()
        if key in ("ip saddr", "ip daddr", "ip protocol"):
            if p.family != 4:
                raise _NoField
            if key == "ip protocol":
                return self._proto_num(p)
            return p.src if key == "ip saddr" else st.dst
        if key in ("ip6 saddr", "ip6 daddr", "ip6 nexthdr"):
            if p.family != 6:
                raise _NoField
            if key == "ip6 nexthdr":
                return self._proto_num(p)
            return p.src if key == "ip6 saddr" else st.dst
        head, _, name = key.partition(" ")
        if head in PORT_PROTOS or head == "th":
            if name not in ("sport", "dport", "flags"):
                raise Undecided(key)
            if head == "th":
                if proto not in PORT_PROTOS:
                    raise Undecided(f"{key} of a {proto} packet")
            elif proto != head:
                raise _NoField
            if name == "flags":
                if head != "tcp":
                    raise Undecided(key)
                return frozenset({"syn"} if st.ct_state == "new" else {"ack"})
            port = p.sport if name == "sport" else st.dport
            if port is None:
                raise Undecided(f"{key} (the packet's {name} is not given)")
            return port
        if head in ("icmp", "icmpv6"):
            want = "icmp" if p.family == 4 else "icmpv6"
            if proto not in ("icmp", "icmpv6", "ipv6-icmp") or head != want:
                raise _NoField
            if name != "type":
                raise Undecided(key)
            return p.icmp_type or "echo-request"
        if head == "meta":
            return self._meta(name, st)
        if head == "ct":
            if name == "state":
                return frozenset({st.ct_state})
            if name == "status":
                return frozenset({"dnat"}) if st.translated else frozenset()
            if name == "mark":
                if st.ctmark is None:
                    raise Undecided("ct mark (set by an earlier rule portkit could not follow)")
                return st.ctmark
            if name == "direction":
                return "original"
            if name == "zone":
                return 0
            raise Undecided(key)
        if head == "fib":
            return self._fib(name, st)
        raise Undecided(key)

    def _proto_num(self, p: Packet) -> int:
        n = proto_number(p.proto)
        if n is None:
            raise Undecided(f"protocol {p.proto}")
        if n == 1 and p.family == 6:
            return 58
        return n

    def _meta(self, name: str, st: _State) -> object:
        p = st.packet
        if name == "l4proto":
            return self._proto_num(p)
        if name == "nfproto":
            return "ipv4" if p.family == 4 else "ipv6"
        if name == "protocol":
            return "ip" if p.family == 4 else "ip6"
        # A hook without that device (no input device for local output, no output device
        # before routing) stores "" as the name and 0 as the index (nft_meta_store_ifname),
        # so `oifname != "lan"` in prerouting is true and `oifname "lan"` false.
        if name in ("iifname", "iif"):
            if st.stage in ("output",) or (st.stage == "postrouting" and p.hook == "out"):
                return ""
            if p.iif is None:
                raise Undecided(f"meta {name} (no input interface given)")
            return p.iif
        if name in ("oifname", "oif"):
            if st.stage in ("ingress", "prerouting", "input"):
                return ""
            if p.oif is None:
                raise Undecided(f"meta {name} (no output interface given)")
            return p.oif
        if name == "mark":
            if st.mark is None:
                raise Undecided("meta mark (set by an earlier rule portkit could not follow)")
            return st.mark
        if name == "pkttype":
            if st.dst.is_multicast:
                return "multicast"
            if st.dst == ipaddress.IPv4Address("255.255.255.255"):
                return "broadcast"
            return "host"
        raise Undecided(f"meta {name}")

    def _fib(self, name: str, st: _State) -> object:
        if name == "daddr type":
            if st.dst.is_multicast:
                return "multicast"
            if st.dst == ipaddress.IPv4Address("255.255.255.255"):
                return "broadcast"
            if self.local is None:
                raise Undecided("fib daddr type (the host's local addresses are not known)")
            if st.dst in self.local:
                return "local"
            if st.dst.version == 4 and int(st.dst) & 0xFF == 0xFF:
                raise Undecided("fib daddr type (could be a subnet broadcast address)")
            return "unicast"
        if name in ("saddr . iif oif", "saddr . mark . iif oif"):
            return self._rpf(name, st)
        raise Undecided(f"fib {name}")

    def _rpf(self, name: str, st: _State) -> object:
        """``fib saddr [. mark] . iif oif``: the reverse-path check (firewalld's rpfilter,
        ``... oif missing drop``). The input device when the route back to the source leaves
        through it, else False ("missing"). Answered from the route callback; the cases it
        cannot settle (IPv6, which looks up routes restricted to the device; a mark that
        policy routing may use; a local source) stay undecided."""
        p = st.packet
        what = f"fib {name}"
        if st.stage not in ("ingress", "prerouting", "input") or p.iif is None:
            raise Undecided(f"{what} (no input interface given)")
        if p.iif == "lo":
            return p.iif  # the kernel passes loopback packets without a lookup
        if "mark" in name and st.mark != 0:
            raise Undecided(f"{what} (a packet mark policy routing may use)")
        if self.route is None:
            raise Undecided(f"{what} (the routes are not known)")
        if self.local is not None and p.src in self.local:
            raise Undecided(f"{what} (a local source address)")
        dev = self.route(p.src)
        if dev == p.iif:
            return p.iif
        if p.family == 4 and dev is not None and self.local is not None:
            return False
        raise Undecided(f"{what} (the route back to {p.src} leaves through {dev or 'no interface'}, not {p.iif})")

    # ------------------------------------------------------------------ matches and rules

    def _match(self, m: Match, st: _State, sets: dict[str, NftSet]) -> bool:
        try:
            vals = tuple(self._field(k, st) for k in m.key)
        except _NoField:
            return False
        if len(m.key) > 1:
            kcs = tuple(key_class(k) for k in m.key)
            hit = contains_concat(kcs, vals, m.right, sets)
            if m.op in ("==", "in"):
                return hit
            if m.op == "!=":
                return not hit
            raise Undecided(f"operator {m.op} on a concatenation")
        key, val = m.key[0], vals[0]
        if key in FLAG_KEYS and isinstance(val, frozenset):
            return self._flags(m, val, sets)
        if m.op in ("<", ">", "<=", ">="):
            if not (isinstance(m.right, Lit) and isinstance(m.right.value, int) and isinstance(val, int)):
                raise Undecided(f"{key} {m.op} {m.right!r}")
            r = m.right.value
            return {"<": val < r, ">": val > r, "<=": val <= r, ">=": val >= r}[m.op]
        if m.mask is not None:
            raise Undecided(f"{key} with a bit mask")
        hit = contains(key_class(key), val, m.right, sets)
        if m.op in ("==", "in"):
            return hit
        if m.op == "!=":
            return not hit
        raise Undecided(f"operator {m.op}")

    def _flags(self, m: Match, val: frozenset[str], sets: dict[str, NftSet]) -> bool:
        def names(v: Value | None) -> frozenset[str]:
            if isinstance(v, Lit) and isinstance(v.value, str):
                return frozenset({v.value})
            if isinstance(v, Flags):
                return frozenset(v.names)
            if isinstance(v, SetRef):  # "ct state { new, untracked }" read from netlink
                s = sets.get(v.name)
                if s is None:
                    raise Undecided(f"set @{v.name} (not in the ruleset)")
                out: set[str] = set()
                for e in s.elements:
                    out |= names(e.key)
                return frozenset(out)
            if isinstance(v, AnonSet) and all(isinstance(e, Lit) for e in v.elements):
                return frozenset(str(e.value) for e in v.elements if isinstance(e, Lit))
            raise Undecided(f"flags value {v!r}")

        want = names(m.right)
        if m.mask is not None:
            hit = (val & names(m.mask)) == want
        elif m.op == "==" and isinstance(m.right, Lit):
            hit = val == want
        else:  # "in", a set lookup, or a flag list: any of them
            hit = bool(val & want)
        return not hit if m.op == "!=" else hit

    def _rule(self, rule: NftRule, base: NftChain, st: _State) -> tuple[str, object]:
        """("next", None) | ("verdict", VerdictStmt) | ("nat", Nat) | ("unknown", text)."""
        sets = self._sets.get((rule.family, rule.table), self._empty)
        pending: str | None = None
        pending_action = False
        for s in rule.stmts:
            if isinstance(s, Match):
                try:
                    if not self._match(s, st, sets):
                        return ("next", None)
                except Undecided as exc:
                    pending = pending or str(exc)
            elif isinstance(s, VerdictStmt):
                if pending:
                    return ("unknown", pending)
                if s.kind == "reject" and s.target == "tcp reset" and st.packet.proto.lower() != "tcp":
                    return ("next", None)  # nft adds (and hides) the meta l4proto tcp it needs
                if s.kind == "reject" and rule.family in ("inet", "bridge", "netdev") and s.target:
                    # nft adds (and hides) a meta nfproto match for family-specific rejects
                    if s.target.startswith("icmp ") and st.packet.family != 4:
                        return ("next", None)
                    if s.target.startswith("icmpv6 ") and st.packet.family != 6:
                        return ("next", None)
                    if rule.ambiguous:
                        return ("unknown", rule.ambiguous)
                return ("verdict", s)
            elif isinstance(s, VMap):
                if pending:
                    return ("unknown", pending)
                try:
                    found = self._vmap(s, st, sets)
                except Undecided as exc:
                    return ("unknown", str(exc))
                if found is None:
                    return ("next", None)
                return ("verdict", found)
            elif isinstance(s, Nat):
                if pending:
                    return ("unknown", pending)
                if base.type != "nat":
                    continue
                if s.opaque:
                    return ("unknown", f"{s.kind} to {s.opaque}")
                if s.addr is not None:
                    a = address_or_none(s.addr)
                    if a is None:
                        return ("unknown", f"{s.kind} to {s.addr}")
                    if a.version != st.packet.family:
                        continue  # e.g. "dnat ip to" meets an IPv6 packet: a no-op
                return ("nat", s)
            elif isinstance(s, SetMark):
                if pending:
                    if s.what == "meta mark":
                        st.mark = None
                    else:
                        st.ctmark = None
                elif s.what == "meta mark":
                    st.mark = s.value
                else:
                    st.ctmark = s.value
            elif isinstance(s, Passive):
                if s.name.startswith(LIMIT_OVER):
                    return ("next", None)  # the first packet is under any rate: "over" is false
                if s.name == "notrack" and not pending:
                    st.ct_state = "untracked"
            elif isinstance(s, Unknown):
                pending = pending or s.text
                # an opaque match without a verdict cannot change the packet's fate
                pending_action = pending_action or not s.text.startswith(_OPAQUE_MATCHES)
        if pending and pending_action:
            return ("unknown", pending)
        if not pending:
            st.trace.append(TraceStep(_table(rule), rule.chain, self.rule_text(rule), "continue"))
        return ("next", None)

    def _vmap(self, s: VMap, st: _State, sets: dict[str, NftSet]) -> VerdictStmt | None:
        try:
            vals = tuple(self._field(k, st) for k in s.key)
        except _NoField:
            return None
        kcs = tuple(key_class(k) for k in s.key)
        if isinstance(s.data, SetRef):
            m = sets.get(s.data.name)
            if m is None:
                raise Undecided(f"map @{s.data.name} (not in the ruleset)")
            pairs = [(e.key, e.verdict) for e in m.elements]
        else:
            pairs = [(k, v) for k, v in s.data]
        for k, v in pairs:
            hit = contains_concat(kcs, vals, k, sets) if len(kcs) > 1 else contains(kcs[0], vals[0], k, sets)
            if hit:
                if v is None:
                    raise Undecided("map element without a verdict")
                return v
        return None

    def _image(self, st: _State) -> PacketImage:
        key = (st.packet, st.dst, st.dport)
        if st.image is None or st.image[0] != key:
            st.image = (key, PacketImage(st.packet, st.dst, st.dport))
        return st.image[1]

    def _run_chain(self, base: NftChain, st: _State) -> _ChainEnd:
        stack: list[tuple[NftChain, int]] = []
        chain, i = base, 0
        while True:
            if i >= len(chain.rules):
                if stack:
                    chain, i = stack.pop()
                    continue
                return self._policy(base, st)
            rule = chain.rules[i]
            i += 1
            if rule.raw is not None:
                if self.prefilter and certainly_no_match(rule.raw, self._image(st)):
                    continue
                rule = self._full(rule)
            kind, what = self._rule(rule, base, st)
            if kind == "next":
                continue
            if kind == "unknown":
                st.trace.append(TraceStep(_table(rule), rule.chain, self.rule_text(rule), f"unknown: {what}"))
                return _ChainEnd("unknown", base, rule, reason=f"cannot evaluate {what!s} in: {self.rule_text(rule)}")
            if kind == "nat":
                assert isinstance(what, Nat)
                st.trace.append(TraceStep(_table(rule), rule.chain, self.rule_text(rule), what.kind))
                return _ChainEnd("accept", base, rule, nat=what)
            assert isinstance(what, VerdictStmt)
            v = what.kind
            result = f"{v} {what.target}" if v in ("jump", "goto") else v
            st.trace.append(TraceStep(_table(rule), rule.chain, self.rule_text(rule), result))
            if v in ("accept", "drop", "reject"):
                return _ChainEnd(v, base, rule)
            if v == "continue":
                continue
            if v == "return":
                if stack:
                    chain, i = stack.pop()
                    continue
                return self._policy(base, st)
            if v in ("jump", "goto"):
                target = self._chains.get((rule.family, rule.table, what.target or ""))
                if target is None:
                    return _ChainEnd("unknown", base, rule, reason=f"{v} to a chain not in the ruleset: {what.target}")
                if len(stack) >= _MAX_DEPTH:
                    return _ChainEnd("unknown", base, rule, reason="jumps nested too deep (a loop?)")
                if v == "jump":
                    stack.append((chain, i))
                chain, i = target, 0
                continue
            return _ChainEnd("unknown", base, rule, reason=f"verdict {result} (e.g. a userspace queue) in: {self.rule_text(rule)}")

    def _policy(self, base: NftChain, st: _State) -> _ChainEnd:
        pol = base.policy or "accept"
        st.trace.append(TraceStep(_table(base), base.name, f"policy {pol}", pol))
        return _ChainEnd(pol if pol in ("accept", "drop") else "unknown", base, None)

    # ------------------------------------------------------------------ hooks

    def _stage_chains(self, stage: str, p: Packet) -> Iterator[NftChain | list[NftChain]]:
        """Base chains of ``stage`` that see ``p``, in the order the kernel runs them.

        Lower priority first. Among equal priorities the kernel inserts a new hook before
        the ones already there (nf_hook_entries_grow), so the chain registered later - later
        in the listing - runs first. NAT chains run as one group at the NAT core's priority.
        """
        fams = ("inet", "ip") if p.family == 4 else ("inet", "ip6")
        regular: list[tuple[int, int, NftChain | list[NftChain]]] = []
        nat: list[tuple[int, int, NftChain]] = []
        for index, c in enumerate(self.ruleset.chains):
            if c.hook != stage:
                continue
            if stage == "ingress":
                if c.family not in ("netdev", "inet"):
                    continue
                if p.iif is None:
                    raise Undecided(f"ingress chain {c.family} {c.table} {c.name} (no input interface given)")
                if c.device and p.iif not in c.device.split(","):
                    continue
            elif c.family not in fams:
                continue
            if c.type == "nat":
                if p.ct_state == "new":  # later packets reuse the mapping, nat chains never see them
                    nat.append((c.prio or 0, -index, c))
            else:
                regular.append((c.prio or 0, -index, c))
        if nat:
            nat.sort(key=lambda t: (t[0], t[1]))
            first_registered = min(-t[1] for t in nat)
            regular.append((NAT_CORE_PRIO.get(stage, 0), -first_registered, [t[2] for t in nat]))
        regular.sort(key=lambda t: (t[0], t[1]))
        for _, _, item in regular:
            yield item

    def evaluate(self, packet: Packet) -> FwCheckResult:
        st = _State(packet=packet, dst=packet.dst, dport=packet.dport, ct_state=packet.ct_state)
        path = list(PATHS[packet.hook])
        hook = packet.hook
        ends: list[tuple[str, _ChainEnd]] = []
        idx = 0
        while idx < len(path):
            stage = path[idx]
            st.stage = stage
            try:
                items = list(self._stage_chains(stage, packet))
            except Undecided as exc:
                return self._result("unknown", hook, ends, st, reason=str(exc))
            for item in items:
                group = item if isinstance(item, list) else [item]
                for chain in group:
                    end = self._run_chain(chain, st)
                    ends.append((stage, end))
                    if end.verdict != "accept":
                        return self._result(end.verdict, hook, ends, st, reason=end.reason)
                    if end.nat is not None:
                        self._apply_nat(end.nat, st)
                        break  # the nat core stops at the first chain that binds a mapping
            if stage == "prerouting" and st.translated is not None and self.local is not None:
                local = st.dst in self.local
                if hook == "in" and not local:
                    hook, path = "forward", [*path[: idx + 1], "forward", "postrouting"]
                    oif = st.packet.oif or (self.route(st.dst) if self.route is not None else None)
                    st.packet = replace(st.packet, hook=hook, oif=oif)
                elif hook == "forward" and local:
                    hook, path = "in", [*path[: idx + 1], "input"]
                    st.packet = replace(st.packet, hook=hook, oif=None)
            idx += 1
        return self._result("accept", hook, ends, st)

    def _apply_nat(self, nat: Nat, st: _State) -> None:
        if nat.kind not in ("dnat", "redirect") or st.stage not in ("prerouting", "output"):
            return
        if nat.kind == "redirect":
            # The kernel uses the primary address of the incoming interface (loopback for
            # output); portkit keeps the original destination, which is local either way.
            addr = st.dst if st.stage == "prerouting" else address_or_none("127.0.0.1" if st.packet.family == 4 else "::1")
        else:
            addr = address_or_none(nat.addr or "") or st.dst
        if addr is not None:
            st.dst = addr
        if nat.port is not None:
            st.dport = nat.port
        st.translated = TranslatedDestination(str(st.dst), st.dport)

    def _result(
        self, verdict: str, hook: str, ends: list[tuple[str, _ChainEnd]], st: _State, reason: str | None = None
    ) -> FwCheckResult:
        decider: _ChainEnd | None = None
        if verdict != "accept":
            decider = ends[-1][1] if ends else None
        else:
            # NAT chains translate, they do not filter: with no filter chain on the main hook,
            # a masquerade in postrouting did not "decide" the accept.
            main = [e for s, e in ends if s == MAIN_STAGE[hook]] or [e for _, e in ends if e.chain.type != "nat"]
            ruled = [e for e in main if e.rule is not None and e.nat is None]
            decider = ruled[-1] if ruled else (main[-1] if main else None)
        decided = None
        if decider is not None:
            c = decider.chain
            if decider.rule is not None:
                decided = DecidedBy(_table(c), decider.rule.chain, decider.rule.handle, self.rule_text(decider.rule))
            else:
                decided = DecidedBy(_table(c), c.name, None, f"policy {c.policy or 'accept'}")
        return FwCheckResult(
            verdict=verdict,
            hook=hook,
            decided_by=decided,
            trace=tuple(st.trace),
            translated_destination=st.translated,
            reason=reason if verdict == "unknown" else None,
        )


def _table(obj: NftChain | NftRule) -> str:
    return f"{obj.family} {obj.table}"


def evaluate(
    ruleset: NftRuleset,
    packet: Packet,
    *,
    local_addresses: Collection[IPAddress] | None = None,
    route: Callable[[IPAddress], str | None] | None = None,
) -> FwCheckResult:
    """The verdict of ``ruleset`` for ``packet`` (a new connection). Pure."""
    return Evaluator(ruleset, local_addresses=local_addresses, route=route).evaluate(packet)
