"""The nft rule-text printer: statements and rules as one readable nft-like line.

Used by ``fw show``, verdict explanations and traces, for rules read from either source
(libnftables' JSON or the kernel's netlink dumps), so both print alike::

    (Match(("tcp dport",), "==", AnonSet((Lit(22), Range(80, 90)))), VerdictStmt("accept"))
    -> "tcp dport { 22, 80-90 } accept"

Values print through :func:`portkit.parse.nftvalues.value_text`, which the parsers share.
"""

from __future__ import annotations

from portkit.model.firewall import Lit, Match, Nat, NftRule, Passive, SetMark, SetRef, Stmt, VerdictStmt, VMap
from portkit.parse.nftvalues import SHORT_KEYS, key_text, value_text

__all__ = ["rule_text", "stmt_text", "value_text", "verdict_text"]


def verdict_text(v: VerdictStmt) -> str:
    if v.kind in ("jump", "goto"):
        return f"{v.kind} {v.target}"
    if v.kind == "reject" and v.target:
        return f"reject with {v.target}"
    return v.kind


def stmt_text(s: Stmt) -> str:
    if isinstance(s, Match):
        left = " . ".join(key_text(k) for k in s.key)
        if s.mask is not None:
            left = f"{left} & {value_text(s.mask)}"
        op = "" if s.op in ("==", "in") else f"{s.op} "
        right = value_text(s.right)
        if s.key[0] in SHORT_KEYS and isinstance(s.right, Lit) and not right.startswith('"'):
            right = f'"{right}"'
        return f"{left} {op}{right}"
    if isinstance(s, VerdictStmt):
        return verdict_text(s)
    if isinstance(s, VMap):
        if isinstance(s.data, SetRef):
            return f"{' . '.join(s.key)} vmap @{s.data.name}"
        inner = ", ".join(f"{value_text(k)} : {verdict_text(v)}" for k, v in s.data)
        return f"{' . '.join(s.key)} vmap {{ {inner} }}"
    if isinstance(s, Nat):
        if s.opaque:
            return f"{s.kind} to {s.opaque}"
        if s.kind == "masquerade":
            return "masquerade"
        to = s.addr or ""
        if s.port is not None:
            to = f"[{to}]:{s.port}" if ":" in to else f"{to}:{s.port}"
        return f"{s.kind} to {to}".rstrip()
    if isinstance(s, SetMark):
        return f"{s.what} set {s.value if s.value is not None else '?'}"
    if isinstance(s, Passive):
        return s.name
    return s.text


def rule_text(rule: NftRule) -> str:
    """The rule as one readable nft-like line."""
    if rule.text:
        return rule.text
    text = " ".join(stmt_text(s) for s in rule.stmts)
    if rule.comment:
        text += f' comment "{rule.comment}"'
    return text
