"""A live ruleset as ``fw show`` presents it: per hook, base chains in the order they run.

Theory of operation. For each hook and address family, the base chains that see those
packets (``inet`` + ``ip`` for IPv4, ``inet`` + ``ip6`` for IPv6, ``netdev`` ingress per
device, ``bridge``/``arp`` on their own) are listed in the order the kernel runs them: by
priority, with all ``type nat`` chains grouped at the NAT core's priority (see
:mod:`portkit.engine.nfteval`). Every chain, base or regular, is listed with one readable
line per rule.
"""

from __future__ import annotations

from portkit.engine.nfteval import NAT_CORE_PRIO
from portkit.model.firewall import NftChain, NftRuleset, RulesetView, ShowChain, ShowHook, ShowRule
from portkit.parse.nftjson import rule_text

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
    return RulesetView(tuple(hooks), chains_out, rs.notes)
