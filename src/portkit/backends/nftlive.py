"""The live nftables ruleset, read as fast as the kernel gives it.

Two readers produce the same model (:class:`NftRuleset`):

* ``netlink`` (default): the kernel's dumps decoded by :mod:`portkit.parse.nftnetlink`.
  Set elements are dumped per set, so :func:`read_live` returns the rules with set headers
  and a loader; the evaluator loads a set the first time a packet reaches a lookup in it
  (a check of one packet against 5,000 rules with 4,490 anonymous sets reads none of them
  when every rule fails on its address first).
* ``json``: ``nft -j list ruleset`` through libnftables (:mod:`portkit.parse.nftjson`).
  ``fw show`` uses it (nft's own rendering of every expression), and it is the fallback
  when the netlink reader cannot open its socket. ``PORTKIT_NFT_READER=json`` forces it.

Parsed rulesets are cached (:mod:`portkit.backends.nftcache`) keyed by the namespace's
cookie (``SO_NETNS_COOKIE``, never reused) and its nftables generation id, which every
commit changes: a cached ruleset is exactly the live one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from portkit.backends import iptables, nftcache
from portkit.backends import nft as nftb
from portkit.errors import SystemRefused
from portkit.model.firewall import NftRule, NftRuleset, NftSet

SetLoader = Callable[[NftSet], NftSet]
_FAMILY_NUMBERS = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}


def _use_cache(cache: bool) -> bool:
    return cache and os.environ.get("PORTKIT_FW_CACHE") != "0"


def read_live(*, netns: str | None = None, cache: bool = True) -> tuple[NftRuleset, SetLoader | None]:
    """(ruleset, set loader): sets of a netlink-read ruleset may be headers only
    (``complete=False``); the loader reads one set's elements. No loader: all complete."""
    if os.environ.get("PORTKIT_NFT_READER") == "json":
        return live_ruleset_json(netns=netns, cache=cache), None
    from portkit.backends import nftnl

    try:
        sock = nftnl.open_socket(netns)
    except SystemRefused:
        return live_ruleset_json(netns=netns, cache=cache), None
    from portkit.parse import nftnetlink

    def load(s: NftSet) -> NftSet:
        msgs = sock.set_elements(_FAMILY_NUMBERS.get(s.family, 0), s.table, s.name)
        return nftnetlink.decode_elements(s, msgs, sock.ifnames)

    path = None
    gen0 = None
    if _use_cache(cache):
        cookie = sock.cookie()
        if cookie is not None:
            gen0 = sock.generation()
            path = nftcache.path_for(f"nl-{cookie}-{gen0}")
            cached = nftcache.load(path)
            if cached is not None:
                return cached, load
    gen, raw = sock.ruleset()
    rs = nftnetlink.decode_ruleset(raw, lazy=True)
    if any(r.raw is not None and nftnetlink.has_xt_bytes(r.raw) for c in rs.chains for r in c.rules):
        rs = _with_iptables(_decoded(rs), netns)  # iptables-nft rules: read through iptables-save
    if path is not None and gen == gen0:
        nftcache.store(path, rs)
    return rs, load


def complete(rs: NftRuleset, load: SetLoader | None) -> NftRuleset:
    """Every rule decoded, every set's elements read, and anonymous sets written back into
    their rules: the model every reader of ``rules``/``sets`` can use as it is."""
    from dataclasses import replace

    if load is None and not any(r.raw is not None for c in rs.chains for r in c.rules):
        return rs  # read through libnftables: already whole
    if load is not None and not all(s.complete for s in rs.sets):
        rs = replace(rs, sets=tuple(s if s.complete else load(s) for s in rs.sets))
    return _decoded(rs, inline=True)


def decoded_nat(rs: NftRuleset) -> NftRuleset:
    """The rules of tables that hold a nat chain decoded (what a DNAT listing reads)."""
    return _decoded(rs, {(c.family, c.table) for c in rs.chains if c.type == "nat"})


def _decoded(rs: NftRuleset, tables: set[tuple[str, str]] | None = None, *, inline: bool = False) -> NftRuleset:
    """Every lazily read rule (of ``tables``) decoded with the sets ``rs`` holds; ``inline``:
    anonymous sets written into their rules (they must have been read)."""
    from dataclasses import replace

    from portkit.parse.nftnetlink import anonymous_refs, decode_rule, inline_anonymous

    if not inline and not any(r.raw is not None for c in rs.chains for r in c.rules):
        return rs
    ifnames = dict(rs.ifnames)
    by_table: dict[tuple[str, str], dict[str, NftSet]] = {}
    for s in rs.sets:
        by_table.setdefault((s.family, s.table), {})[s.name] = s

    def one(r: NftRule) -> NftRule:
        table_sets = by_table.get((r.family, r.table), {})
        r = decode_rule(r, table_sets, ifnames)
        return inline_anonymous(r, table_sets) if inline and anonymous_refs(r) else r

    chains = [
        replace(c, rules=tuple(one(r) for r in c.rules)) if tables is None or (c.family, c.table) in tables else c
        for c in rs.chains
    ]
    return replace(rs, chains=tuple(chains))


def live_ruleset(*, netns: str | None = None, cache: bool = True) -> NftRuleset:
    """The kernel's ruleset, every set read; ``xt`` rules of iptables-nft are read through
    iptables-save."""
    rs, load = read_live(netns=netns, cache=cache)
    return complete(rs, load)


def live_ruleset_json(*, netns: str | None = None, cache: bool = True) -> NftRuleset:
    """The ruleset as libnftables lists it (``nft -j list ruleset``)."""
    from portkit.parse.nftjson import has_ambiguous, hidden_nfproto, parse_ruleset, resolve_hidden

    key = nftb.ruleset_generation(netns=netns) if _use_cache(cache) else None
    path = nftcache.path_for(f"{key[0]}-{key[1]}") if key else None
    if path is not None:
        cached = nftcache.load(path)
        if cached is not None:
            return cached
    rs = parse_ruleset(nftb.list_ruleset_json(netns=netns))
    if has_ambiguous(rs):
        rs = resolve_hidden(rs, hidden_nfproto(nftb.list_ruleset_debug(netns=netns)))
    rs = _with_iptables(rs, netns)
    if path is not None and key is not None and nftb.ruleset_generation(netns=netns) == key:
        nftcache.store(path, rs)
    return rs


def _with_iptables(rs: NftRuleset, netns: str | None) -> NftRuleset:
    from portkit.parse.nftjson import has_xt

    if not has_xt(rs):
        return rs
    from portkit.parse.iptables_save import merge_iptables

    v4 = iptables.iptables_save(netns=netns)
    v6 = iptables.iptables_save(ipv6=True, netns=netns)
    return merge_iptables(rs, v4, v6)
