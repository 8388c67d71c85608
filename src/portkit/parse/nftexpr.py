r"""One nf_tables rule expression (an NFTA_LIST_ELEM payload) -> a small tuple.

A rule's bytecode is a list of expressions, each a name and its attributes::

    elem("payload", dreg=1, base=2, offset=2, len=2)  -> ("payload", 0, 2, 2, 2)
    elem("cmp", sreg=1, op=0, data=b"\x00\x16")       -> ("cmp", 0, "==", b"\x00\x16")
    elem("immediate", verdict=accept)                   -> ("verdict", "accept", None)

Registers become the index of their first 32-bit slot (:func:`register_slot`), so the
decompiler (:mod:`portkit.parse.nftdecompile`) tracks concatenations across slots. Results
are cached by the expression's exact bytes, since most expressions (loads, verdicts,
counters) repeat across thousands of rules. Pure: bytes in, tuples out.
"""

from __future__ import annotations

from typing import Any

from portkit.parse.netlink_tlv import BE_S32, attr_str, attrs, be_int
from portkit.parse.nftconst import CMP_OPS, CT_KEYS, LIMIT_UNITS, META_KEYS, PASSIVE_EXPRS, VERDICTS

Expr = tuple[Any, ...]  # (kind, operands...): see _expr
_cache: dict[bytes, Expr] = {}


def data_value(b: bytes | None) -> bytes:
    """The value of an nft_data attribute (NFTA_DATA_VALUE)."""
    return attrs(b).get(1, b"") if b else b""


def register_slot(reg: int) -> int:
    """A register number as the index of its first 32-bit slot (NFT_REG_1..4 are 16 bytes)."""
    return (reg - 1) * 4 if 1 <= reg <= 4 else reg - 8


def expr(elem: bytes) -> Expr:
    got = _cache.get(elem)
    if got is not None:
        return got
    # cmp carries each rule's own constant, so it is parsed at its fixed offsets (the
    # kernel's nft_cmp_dump layout) and not cached; anything unexpected takes the slow path.
    if (
        elem[4:8] == b"cmp\0" and elem[12:19] == b"\x08\x00\x01\x00\x00\x00\x00"
        and elem[20:27] == b"\x08\x00\x02\x00\x00\x00\x00" and elem[34:36] == b"\x01\x00"
    ):  # fmt: skip
        vlen = int.from_bytes(elem[32:34], "little") - 4
        return ("cmp", register_slot(elem[19]), CMP_OPS.get(elem[27], "?"), elem[36 : 36 + vlen])
    got = _expr(elem)
    if len(_cache) < 50000:
        _cache[elem] = got
    return got


def _expr(elem: bytes) -> Expr:
    a = attrs(elem)
    name = attr_str(a.get(1))
    d = attrs(a.get(2, b""))
    if name == "cmp":
        return ("cmp", register_slot(be_int(d.get(1))), CMP_OPS.get(be_int(d.get(2)), "?"), data_value(d.get(3)))
    if name == "payload":
        if 5 in d:  # NFTA_PAYLOAD_SREG: a payload write
            return ("passive", "payload set")
        return ("payload", register_slot(be_int(d.get(1))), be_int(d.get(2)), be_int(d.get(3)), be_int(d.get(4)))
    if name == "meta":
        key = META_KEYS.get(be_int(d.get(2)), f"key{be_int(d.get(2))}")
        if 3 in d:
            return ("meta_set", register_slot(be_int(d.get(3))), key)
        return ("load", register_slot(be_int(d.get(1))), f"meta {key}", 0)
    if name == "ct":
        key = CT_KEYS.get(be_int(d.get(2)), f"key{be_int(d.get(2))}")
        if 3 in d:
            key = ("original " if d[3][:1] == bytes(1) else "reply ") + key
        if 4 in d:
            return ("ct_set", register_slot(be_int(d.get(4))), key)
        return ("load", register_slot(be_int(d.get(1))), f"ct {key}", 0)
    if name == "immediate":
        data = attrs(d.get(2, b""))
        if 2 in data:
            v = attrs(data[2])
            code = BE_S32.unpack(v[1])[0] if len(v.get(1, b"")) == 4 else 0
            return ("verdict", VERDICTS.get(code, f"verdict {code}"), attr_str(v.get(2)) or None)
        return ("imm", register_slot(be_int(d.get(1))), data.get(1, b""))
    if name == "bitwise":
        if be_int(d.get(6)) != 0:  # a shift
            return ("unknown_load", register_slot(be_int(d.get(2))), "bitwise shift")
        return ("bitwise", register_slot(be_int(d.get(1))), register_slot(be_int(d.get(2))), data_value(d.get(4)), data_value(d.get(5)))
    if name == "range":
        return ("range", register_slot(be_int(d.get(1))), be_int(d.get(2)), data_value(d.get(3)), data_value(d.get(4)))
    if name == "lookup":
        dreg = register_slot(be_int(d[3])) if 3 in d else None
        return ("lookup", register_slot(be_int(d.get(2))), attr_str(d.get(1)), dreg, bool(be_int(d.get(5)) & 1))
    if name == "fib":
        flags = be_int(d.get(3))
        parts = [n for bit, n in ((1, "saddr"), (2, "daddr"), (4, "mark"), (8, "iif"), (16, "oif")) if flags & bit]
        result = {1: "oif", 2: "oifname", 3: "type"}.get(be_int(d.get(2)), "?")
        return ("load", register_slot(be_int(d.get(1))), f"fib {' . '.join(parts)} {result}", 0)
    if name in PASSIVE_EXPRS:
        return ("passive", PASSIVE_EXPRS[name])
    if name == "limit":
        rate, unit, burst = be_int(d.get(1)), be_int(d.get(2)), be_int(d.get(3))
        per = LIMIT_UNITS.get(unit, f"{unit} seconds")
        text = f"limit rate {'over ' if be_int(d.get(5)) & 1 else ''}{rate}{' bytes' if be_int(d.get(4)) == 1 else ''}/{per}"
        if burst:
            text += f" burst {burst} {'bytes' if be_int(d.get(4)) == 1 else 'packets'}"
        return ("passive", text)
    if name == "reject":
        rtype, code = be_int(d.get(1)), (d.get(2) or b"\0")[0]
        return ("reject", rtype, code)
    if name == "nat":
        regs = tuple(register_slot(be_int(d[i])) if i in d else None for i in (3, 4, 5, 6))
        return ("nat", "dnat" if be_int(d.get(1)) == 1 else "snat", be_int(d.get(2)), *regs)
    if name == "masq":
        return ("nat", "masquerade", 0, None, None, None, None)
    if name == "redir":
        regs = tuple(register_slot(be_int(d[i])) if i in d else None for i in (1, 2))
        return ("nat", "redirect", 0, None, None, *regs)
    if name == "queue":
        return ("verdict", "queue", None)
    if name in ("match", "target"):
        return ("unknown", f"xt {name} {attr_str(d.get(1))}")
    if name == "objref":
        kind = {1: "counter", 2: "quota", 3: "ct helper", 4: "limit"}.get(be_int(d.get(1)), "object")
        obj = attr_str(d.get(2)) or f"map @{attr_str(d.get(4))}"
        return ("passive", f"counter name {obj}") if kind == "counter" else ("unknown", f"{kind} name {obj}")
    if name == "dynset":
        return ("unknown", f"update @{attr_str(d.get(1))}")
    if name == "connlimit":
        return ("unknown", f"ct count {'over ' if be_int(d.get(2)) & 1 else ''}{be_int(d.get(1))}")
    if name == "quota":
        return ("unknown", "quota")
    if name in ("exthdr", "socket", "rt", "osf", "hash", "numgen", "xfrm", "tunnel", "inner"):
        if 1 in d:  # a load into a register: a later compare on it is undecided
            return ("unknown_load", register_slot(be_int(d.get(1))), name)
        return ("unknown", name)
    return ("unknown", name)
