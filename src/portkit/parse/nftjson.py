"""``nft -j list ruleset`` (libnftables-json(5)) -> :class:`NftRuleset`.

Each rule's ``expr`` list becomes a tuple of statements from a small closed vocabulary
(:mod:`portkit.model.firewall`). An expression outside it becomes ``Unknown(text)`` so the
evaluator can name it instead of guessing. A rule's one-line nft-like text (``fw show``,
verdict explanations) is printed by :mod:`portkit.syntax.nfttext`. Example::

    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
               "right": {"set": [22, {"range": [80, 90]}]}}}
    -> Match(key=("tcp dport",), op="==", right=AnonSet((Lit(22), Range(80, 90))))
    -> "tcp dport { 22, 80-90 }"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from portkit.model.firewall import (
    PORT_PROTOS,
    AnonSet,
    Concat,
    Flags,
    Lit,
    Match,
    Nat,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    Opaque,
    Passive,
    Prefix,
    Range,
    SetElement,
    SetMark,
    SetRef,
    Stmt,
    Unknown,
    Value,
    VerdictStmt,
    VMap,
)
from portkit.parse.nftvalues import key_text, value_text

_VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")
_PASSIVE = ("counter", "log", "limit", "notrack", "flow", "synproxy", "quota")


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def parse_key(obj: Any) -> tuple[str, ...] | None:
    """The left side of a match as field names ("ip saddr"); None if not a plain field."""
    if not isinstance(obj, dict) or len(obj) != 1:
        return None
    (kind, body), = obj.items()
    if kind == "concat" and isinstance(body, list):
        parts: list[str] = []
        for part in body:
            sub = parse_key(part)
            if sub is None or len(sub) != 1:
                return None
            parts.append(sub[0])
        return tuple(parts)
    if not isinstance(body, dict):
        return None
    if kind == "payload" and "protocol" in body:
        return (f"{body['protocol']} {body['field']}",)
    if kind == "payload":
        return (f"@{body.get('base')},{body.get('offset')},{body.get('len')}",)
    if kind in ("meta", "ct", "rt", "socket", "osf", "ipsec"):
        extra = f" {body['dir']}" if "dir" in body else ""
        return (f"{kind}{extra} {body.get('key')}",)
    if kind == "fib":
        flags = body.get("flags", [])
        flags = [flags] if isinstance(flags, str) else list(flags)
        return (f"fib {' . '.join(flags)} {body.get('result')}",)
    if kind == "exthdr":
        return (f"exthdr {body.get('name')} {body.get('field', '')}".strip(),)
    return None


def parse_value(obj: Any) -> Value:
    if isinstance(obj, bool | int | str):
        if isinstance(obj, str) and obj.startswith("@"):
            return SetRef(obj[1:])
        return Lit(obj)
    if isinstance(obj, list):
        if all(isinstance(x, str) for x in obj):
            return Flags(tuple(obj))
        return AnonSet(tuple(parse_value(x) for x in obj))
    if isinstance(obj, dict) and len(obj) == 1:
        (kind, body), = obj.items()
        if kind == "prefix" and isinstance(body, dict):
            return Prefix(str(body["addr"]), int(body["len"]))
        if kind == "range" and isinstance(body, list) and len(body) == 2:
            lo, hi = body
            if isinstance(lo, int | str) and isinstance(hi, int | str):
                return Range(lo, hi)
        if kind == "set":
            items = body if isinstance(body, list) else [body]
            return AnonSet(tuple(parse_value(x) for x in items))
        if kind == "concat" and isinstance(body, list):
            return Concat(tuple(parse_value(x) for x in body))
        if kind == "elem" and isinstance(body, dict):
            return parse_value(body.get("val"))
    return Opaque(_compact(obj))


def _verdict(kind: str, body: Any) -> VerdictStmt:
    if kind in ("jump", "goto") and isinstance(body, dict):
        return VerdictStmt(kind, str(body.get("target")))
    return VerdictStmt(kind)


def parse_stmt(obj: Any) -> Stmt:
    if not isinstance(obj, dict) or len(obj) != 1:
        return Unknown(_compact(obj))
    (kind, body), = obj.items()
    if kind == "match" and isinstance(body, dict):
        left = body.get("left")
        mask: Value | None = None
        if isinstance(left, dict) and "&" in left and isinstance(left["&"], list) and len(left["&"]) == 2:
            mask = parse_value(left["&"][1])
            left = left["&"][0]
        key = parse_key(left)
        if key is None:
            return Unknown(f"match on {_compact(left)}")
        return Match(key, str(body.get("op", "==")), parse_value(body.get("right")), mask)
    if kind in _VERDICTS:
        return _verdict(kind, body)
    if kind == "reject":
        rtype = None
        if isinstance(body, dict) and body:
            rtype = str(body.get("type", ""))
            if body.get("expr"):
                rtype += f" type {body['expr']}"
        return VerdictStmt("reject", rtype)
    if kind == "vmap" and isinstance(body, dict):
        vkey = parse_key(body.get("key"))
        data = body.get("data")
        if vkey is None:
            return Unknown(f"vmap on {_compact(body.get('key'))}")
        if isinstance(data, str) and data.startswith("@"):
            return VMap(vkey, SetRef(data[1:]))
        if isinstance(data, dict) and isinstance(data.get("set"), list):
            pairs: list[tuple[Value, VerdictStmt]] = []
            for pair in data["set"]:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], dict)):
                    return Unknown(f"vmap {_compact(data)}")
                (vk, vb), = pair[1].items()
                pairs.append((parse_value(pair[0]), _verdict(vk, vb)))
            return VMap(vkey, tuple(pairs))
        return Unknown(f"vmap {_compact(data)}")
    if kind in ("dnat", "snat", "masquerade", "redirect"):
        body = body if isinstance(body, dict) else {}
        addr, port = body.get("addr"), body.get("port")
        opaque = None
        if addr is not None and not isinstance(addr, str):
            opaque = _map_text(addr) or _compact(addr)
        if port is not None and not isinstance(port, int):
            opaque = _compact(port)
        return Nat(kind, addr if isinstance(addr, str) else None, port if isinstance(port, int) else None, opaque)
    if kind == "mangle" and isinstance(body, dict):
        key = parse_key(body.get("key"))
        if key in (("meta mark",), ("ct mark",)):
            val = body.get("value")
            return SetMark(key[0], val if isinstance(val, int) else None)
        return Passive(f"set {key[0] if key else '?'}")
    if kind == "limit" and isinstance(body, dict):
        return Passive(_limit_text(body))  # "limit rate over ..." matches only above the rate
    if kind == "ct count":
        # the number of connections already tracked: not a fact about one new packet
        val = body.get("val") if isinstance(body, dict) else body
        over = "over " if isinstance(body, dict) and body.get("inv") else ""
        return Unknown(f"ct count {over}{val}")
    if kind in _PASSIVE or kind in ("counter", "log", "limit"):
        if kind == "quota":
            return Unknown("quota")
        return Passive(kind)
    if kind == "xt" and isinstance(body, dict):
        return Unknown(f"xt {body.get('type', '')} {body.get('name', '')}".replace("  ", " ").strip())
    return Unknown(kind if not isinstance(body, Mapping | list) else f"{kind} {_compact(body)}")


def _map_text(obj: Any) -> str | None:
    """``{"map": {"key": ..., "data": ...}}`` as nft writes it: ``tcp dport map @dm``."""
    body = obj.get("map") if isinstance(obj, dict) else None
    if not isinstance(body, dict):
        return None
    key = parse_key(body.get("key"))
    data = body.get("data")
    if key is None:
        return None
    if isinstance(data, str):
        right = data
    elif isinstance(data, dict) and isinstance(data.get("set"), list):
        pairs = [p for p in data["set"] if isinstance(p, list) and len(p) == 2]
        right = "{ " + ", ".join(f"{value_text(parse_value(k))} : {value_text(parse_value(v))}" for k, v in pairs) + " }"
    else:
        return None
    return f"{' . '.join(key_text(k) for k in key)} map {right}"


def _limit_text(body: Mapping[str, Any]) -> str:
    unit = body.get("rate_unit")
    rate = f"{body.get('rate')}{'' if unit in (None, 'packets') else f' {unit}'}/{body.get('per', 'second')}"
    burst = body.get("burst")
    text = f"limit rate {'over ' if body.get('inv') else ''}{rate}"
    if burst:
        text += f" burst {burst} {body.get('burst_unit', 'packets')}"
    return text


LIMIT_OVER = "limit rate over "


def _map_dependency(e: Any, family: str, before: list[Stmt]) -> Match | None:
    """``dnat to tcp dport map @m``: nft's listing hides the ``meta l4proto tcp`` the map's key
    needs (the bytecode has it), and without it a packet lacking that header would meet a
    statement portkit cannot evaluate instead of a match that fails."""
    if not isinstance(e, dict) or len(e) != 1:
        return None
    (kind, body), = e.items()
    if kind not in ("dnat", "snat") or not isinstance(body, dict):
        return None
    for part in (body.get("addr"), body.get("port")):
        m = part.get("map") if isinstance(part, dict) else None
        key = parse_key(m.get("key")) if isinstance(m, dict) else None
        if not key:
            continue
        head = key[0].split(" ", 1)[0]
        if any(isinstance(s, Match) and any(k.split(" ", 1)[0] == head for k in s.key) for s in before):
            return None  # an earlier match on that header already implies it
        if head in PORT_PROTOS:
            return Match(("meta l4proto",), "==", Lit(head))
        if head in ("ip", "ip6") and family in ("inet", "bridge", "netdev"):
            return Match(("meta nfproto",), "==", Lit("ipv4" if head == "ip" else "ipv6"))
    return None


def _rule(obj: Mapping[str, Any]) -> NftRule:
    parsed: list[Stmt] = []
    for e in obj.get("expr", []):
        dep = _map_dependency(e, str(obj["family"]), parsed)
        if dep is not None:
            parsed.append(dep)
        parsed.append(parse_stmt(e))
    stmts = tuple(parsed)
    comment = obj.get("comment")
    text = ""  # computed on demand by rule_text(): most rules are never shown
    handle = obj.get("handle")
    family = str(obj["family"])
    return NftRule(
        family=family,
        table=str(obj["table"]),
        chain=str(obj["chain"]),
        handle=handle if isinstance(handle, int) else None,
        stmts=stmts,
        text=text,
        comment=str(comment) if comment else None,
        ambiguous=_hidden_family(family, stmts),
    )


_FAMILY_KEYS = {"meta nfproto", "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "ip protocol", "ip6 nexthdr", "meta protocol"}


def _hidden_family(family: str, stmts: tuple[Stmt, ...]) -> str | None:
    if family not in ("inet", "bridge", "netdev"):
        return None
    if not any(isinstance(s, VerdictStmt) and s.kind == "reject" and s.target == "tcp reset" for s in stmts):
        return None
    if any(isinstance(s, Match) and set(s.key) & _FAMILY_KEYS for s in stmts):
        return None
    return "nft's listing hides a 'meta nfproto' match before 'reject with tcp reset' (read the bytecode to tell)"


def hidden_nfproto(debug_text: str) -> dict[tuple[str, str, str, int], str]:
    """``nft --debug=netlink list ruleset`` -> {(family, table, chain, handle): "ipv4"|"ipv6"|""}:
    the family a rule's bytecode starts by comparing ``meta nfproto`` with ("" for none).

    ``"inet t i 2\n  [ meta load nfproto => reg 1 ]\n  [ cmp eq reg 1 0x00000002 ]"`` -> ipv4.
    """
    out: dict[tuple[str, str, str, int], str] = {}
    lines = debug_text.splitlines()
    for i, line in enumerate(lines):
        head = line.split()
        if len(head) < 4 or line.startswith((" ", "\t")) or not head[3].isdigit():
            continue
        fam = ""
        if i + 2 < len(lines):
            load, cmp = lines[i + 1].strip(), lines[i + 2].strip()
            if load.startswith("[ meta load nfproto => reg ") and cmp.startswith("[ cmp eq reg "):
                fam = {"0x00000002": "ipv4", "0x0000000a": "ipv6"}.get(cmp.split()[-2], "?")
        out[(head[0], head[1], head[2], int(head[3]))] = fam
    return out


def resolve_hidden(rs: NftRuleset, families: Mapping[tuple[str, str, str, int], str]) -> NftRuleset:
    """Put the nfproto matches the bytecode shows back into ambiguous rules."""
    chains = []
    for c in rs.chains:
        if not any(r.ambiguous for r in c.rules):
            chains.append(c)
            continue
        rules = []
        for r in c.rules:
            fam = families.get((r.family, r.table, r.chain, r.handle or -1))
            if r.ambiguous and fam is not None and fam != "?":
                if fam:
                    text = f"meta nfproto {fam} {r.text}" if r.text else ""  # else printed from stmts
                    r = replace(r, stmts=(Match(("meta nfproto",), "==", Lit(fam)), *r.stmts), text=text)
                r = replace(r, ambiguous=None)
            rules.append(r)
        chains.append(replace(c, rules=tuple(rules)))
    return replace(rs, chains=tuple(chains))


def has_ambiguous(rs: NftRuleset) -> bool:
    return any(r.ambiguous for c in rs.chains for r in c.rules)


def _set(obj: Mapping[str, Any], is_map: bool) -> NftSet:
    ktype = obj.get("type", "")
    key_type = tuple(str(t) for t in ktype) if isinstance(ktype, list) else (str(ktype),)
    elements: list[SetElement] = []
    for e in obj.get("elem", []) or []:
        if is_map and isinstance(e, list) and len(e) == 2:
            verdict = None
            if isinstance(e[1], dict) and len(e[1]) == 1:
                (vk, vb), = e[1].items()
                if vk in _VERDICTS or vk == "reject":
                    verdict = _verdict(vk, vb)
            data = parse_value(e[1]) if verdict is None else None
            elements.append(SetElement(parse_value(e[0]), verdict, data))
        else:
            elements.append(SetElement(parse_value(e)))
    mtype = obj.get("map")
    return NftSet(
        family=str(obj["family"]),
        table=str(obj["table"]),
        name=str(obj["name"]),
        key_type=key_type,
        elements=tuple(elements),
        is_map=is_map,
        map_type=str(mtype) if mtype is not None else None,
    )


def parse_ruleset(doc: Mapping[str, Any]) -> NftRuleset:
    """Parse the dict ``nft -j list ruleset`` prints. Rules are kept in listing order."""
    items = doc.get("nftables", [])
    tables: list[tuple[str, str]] = []
    chain_meta: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[NftRule]] = {}
    sets: list[NftSet] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (kind, body), = item.items()
        if not isinstance(body, dict):
            continue
        if kind == "table":
            tables.append((str(body["family"]), str(body["name"])))
        elif kind == "chain":
            chain_meta[(str(body["family"]), str(body["table"]), str(body["name"]))] = body
        elif kind == "rule":
            r = _rule(body)
            rules.setdefault((r.family, r.table, r.chain), []).append(r)
        elif kind in ("set", "map"):
            sets.append(_set(body, kind == "map"))
    chains: list[NftChain] = []
    for key, body in chain_meta.items():
        prio = body.get("prio")
        dev = body.get("dev")
        chains.append(
            NftChain(
                family=key[0],
                table=key[1],
                name=key[2],
                rules=tuple(rules.get(key, [])),
                type=str(body["type"]) if "type" in body else None,
                hook=str(body["hook"]) if "hook" in body else None,
                prio=prio if isinstance(prio, int) else None,
                policy=str(body.get("policy", "accept")) if "hook" in body else None,
                device=(dev if isinstance(dev, str) else ",".join(map(str, dev))) if dev else None,
            )
        )
    return NftRuleset(chains=tuple(chains), sets=tuple(sets), tables=tuple(tables))


def has_xt(ruleset: NftRuleset) -> bool:
    return any(
        isinstance(s, Unknown) and s.text.startswith("xt ") for c in ruleset.chains for r in c.rules for s in r.stmts
    )
