"""A live ruleset as ``fw show`` presents it: per hook, base chains in the order they run.

Theory of operation. For each hook and address family, the base chains that see those
packets (``inet`` + ``ip`` for IPv4, ``inet`` + ``ip6`` for IPv6, ``netdev`` ingress per
device, ``bridge``/``arp`` on their own) are listed in the order the kernel runs them: by
priority, with all ``type nat`` chains grouped at the NAT core's priority (see
:mod:`portkit.engine.nfteval`). Every chain, base or regular, is listed with one readable
line per rule.
"""

from __future__ import annotations

from collections.abc import Callable

from portkit.engine.nfteval import NAT_CORE_PRIO
from portkit.model.firewall import (
    DnatEntry,
    Lit,
    Match,
    Nat,
    NftChain,
    NftRule,
    NftRuleset,
    RulesetView,
    SetElement,
    ShowChain,
    ShowHook,
    ShowRule,
    ShowSet,
    TranslatedDestination,
    VerdictStmt,
)
from portkit.syntax.nfttext import rule_text, value_text, verdict_text

HOOK_ORDER = ("ingress", "prerouting", "input", "forward", "output", "postrouting", "egress")
_VIEWS = (("ipv4", ("inet", "ip")), ("ipv6", ("inet", "ip6")), ("netdev", ("netdev",)), ("bridge", ("bridge",)), ("arp", ("arp",)))


def _sort_key(item: tuple[int, NftChain]) -> tuple[int, int, int]:
    """Priority; equal priorities run latest-registered (latest listed) first."""
    index, c = item
    if c.type == "nat" and c.hook in NAT_CORE_PRIO:
        return (NAT_CORE_PRIO[c.hook], c.prio or 0, -index)
    return (c.prio or 0, -(1 << 30), -index)


def chain_label(c: NftChain) -> str:
    dev = f" dev {c.device}" if c.device else ""
    return f"{c.family} {c.table} {c.name} ({c.type or 'filter'} prio {c.prio}{dev}, policy {c.policy})"


def _element_data(e: SetElement) -> str:
    if e.verdict is not None:
        return f" : {verdict_text(e.verdict)}"
    return f" : {value_text(e.data)}" if e.data is not None else ""


def ruleset_view(rs: NftRuleset) -> RulesetView:
    hooks: list[ShowHook] = []
    for hook in HOOK_ORDER:
        for view, fams in _VIEWS:
            chains = [(i, c) for i, c in enumerate(rs.chains) if c.hook == hook and c.family in fams]
            if view in ("ipv4", "ipv6") and hook == "ingress":
                chains = [(i, c) for i, c in chains if c.family == "inet"]
            if not chains:
                continue
            chains.sort(key=_sort_key)
            hooks.append(ShowHook(hook, view, tuple(chain_label(c) for _, c in chains)))
    shown = sorted(rs.chains, key=lambda c: (c.family, c.table, not c.is_base, HOOK_ORDER.index(c.hook) if c.hook in HOOK_ORDER else 99, c.name))
    chains_out = tuple(
        ShowChain(
            table=f"{c.family} {c.table}",
            chain=c.name,
            type=c.type,
            hook=c.hook,
            prio=c.prio,
            policy=c.policy,
            device=c.device,
            rules=tuple(ShowRule(r.handle, rule_text(r)) for r in c.rules),
        )
        for c in shown
    )
    sets_out = tuple(
        ShowSet(
            table=f"{st.family} {st.table}",
            name=st.name,
            kind="map" if st.is_map else "set",
            type=" . ".join(st.key_type) + (f" : {st.map_type}" if st.is_map and st.map_type else ""),
            elements=tuple(value_text(e.key) + _element_data(e) for e in st.elements),
        )
        for st in sorted(rs.sets, key=lambda x: (x.family, x.table, x.name))
    )
    return RulesetView(tuple(hooks), chains_out, rs.notes, sets_out)


def list_dnat(ruleset: NftRuleset, *, text: Callable[[NftRule], str] = rule_text) -> tuple[DnatEntry, ...]:
    """DNAT/redirect rules reachable from nat prerouting chains, with their simple port match.

    A static listing (what is published where), not a packet walk: used for the host report's
    "forwarded" rows. Rules whose destination port is not a plain number have ``dport=None``.
    """
    chains = {(c.family, c.table, c.name): c for c in ruleset.chains}
    out: list[DnatEntry] = []
    seen: set[tuple[str, str, str]] = set()
    todo = [c for c in ruleset.chains if c.type == "nat" and c.hook == "prerouting"]
    while todo:
        c = todo.pop(0)
        key = (c.family, c.table, c.name)
        if key in seen:
            continue
        seen.add(key)
        for r in c.rules:
            proto: str | None = None
            dport: int | None = None
            for s in r.stmts:
                if isinstance(s, Match) and len(s.key) == 1:
                    head, _, name = s.key[0].partition(" ")
                    if name == "dport" and s.op == "==" and isinstance(s.right, Lit) and isinstance(s.right.value, int):
                        dport = s.right.value
                        if head != "th":
                            proto = head
                    if s.key[0] == "meta l4proto" and isinstance(s.right, Lit):
                        proto = str(s.right.value)
                elif isinstance(s, VerdictStmt) and s.kind in ("jump", "goto"):
                    t = chains.get((r.family, r.table, s.target or ""))
                    if t is not None:
                        todo.append(t)
                elif isinstance(s, Nat) and s.kind in ("dnat", "redirect") and not s.opaque:
                    addr = s.addr or ("(local)" if s.kind == "redirect" else "")
                    target = TranslatedDestination(addr, s.port if s.port is not None else dport)
                    out.append(DnatEntry(f"{r.family} {r.table}", r.chain, r.handle, text(r), proto, dport, target))
    return tuple(out)
