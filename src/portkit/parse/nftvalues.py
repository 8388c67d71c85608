"""Values and field names as nft writes them: ``Prefix("10.0.0.0", 8)`` -> ``10.0.0.0/8``.

The parsers need this themselves: a statement portkit cannot model keeps nft's own text
(``dnat to tcp dport map { 80 : 10.0.0.1 }``, built by :mod:`portkit.parse.nftjson`; the
decompiler's ``tcp dport map @m``). The statement and rule printer,
:mod:`portkit.syntax.nfttext`, builds on it.
"""

from __future__ import annotations

from portkit.model.firewall import AnonSet, Concat, Flags, Lit, Prefix, Range, SetRef, Value

# the fields nft lists without their "meta" prefix
SHORT_KEYS = {"meta iifname": "iifname", "meta oifname": "oifname", "meta iif": "iif", "meta oif": "oif"}


def key_text(key: str) -> str:
    """A field name as nft lists it: ``meta iifname`` -> ``iifname``."""
    return SHORT_KEYS.get(key, key)


def value_text(v: Value) -> str:
    if isinstance(v, Lit):
        if isinstance(v.value, bool):
            return "exists" if v.value else "missing"
        if isinstance(v.value, str) and (" " in v.value or v.value == "" or "*" in v.value):
            return f'"{v.value}"'
        return str(v.value)
    if isinstance(v, Prefix):
        return f"{v.addr}/{v.length}"
    if isinstance(v, Range):
        return f"{v.lo}-{v.hi}"
    if isinstance(v, SetRef):
        return f"@{v.name}"
    if isinstance(v, AnonSet):
        return "{ " + ", ".join(value_text(e) for e in v.elements) + " }"
    if isinstance(v, Concat):
        return " . ".join(value_text(p) for p in v.parts)
    if isinstance(v, Flags):
        return ",".join(v.names)
    return v.text
