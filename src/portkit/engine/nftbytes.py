"""A byte-level pre-check of a rule's bytecode: "this rule certainly does not match".

Theory of operation. Most rules of a big ruleset fail on their first address or port
compare. Decoding all of them into statements costs more than the whole check may take,
so the evaluator first runs a rule's raw bytecode (as read from netlink) the way the
kernel would, on an image of the packet's headers, and skips the rule when a compare is
certainly false. Only what is known for certain is in the image: the addresses, the
protocol, the ports given, and ``meta nfproto/l4proto/protocol``. Every other load leaves
its register unknown, and a compare on an unknown register decides nothing.

The pre-check never says "matches"; rules it cannot rule out are decoded and evaluated
in full. It stops at the first expression that could change state (a mark, notrack, a
set update, a verdict...), so skipping a rule never skips an effect the rule would have
had before failing. Loads are limited to the fields the decompiler names (``ip saddr``,
``tcp dport``...), so a skipped rule is exactly one the full evaluator would also pass
over: both read the same bytes.
"""

from __future__ import annotations

import struct

from portkit.engine.nftmatch import proto_number
from portkit.model.firewall import PORT_PROTOS, IPAddress, Packet
from portkit.parse.nftexpr import expr

_HDR = struct.Struct("=H")
# (offset, full size) of the network-header fields the decompiler names, per IP version
_NH_FIELDS = {4: {9: 1, 12: 4, 16: 4}, 6: {6: 1, 8: 16, 24: 16}}
_PASSES = ("counter", "log")


class PacketImage:
    """The bytes the kernel would load for one packet at one point of its path."""

    __slots__ = ("family", "meta", "nh", "th")

    def __init__(self, packet: Packet, dst: IPAddress, dport: int | None) -> None:
        self.family = packet.family
        num = proto_number(packet.proto)
        if num == 1 and self.family == 6:
            num = 58
        nh: dict[int, bytes] = {}
        if num is not None and num < 256:
            nh[9 if self.family == 4 else 6] = bytes((num,))
        src_off, dst_off = (12, 16) if self.family == 4 else (8, 24)
        nh[src_off] = packet.src.packed
        nh[dst_off] = dst.packed
        self.nh = nh
        th: dict[int, bytes] = {}
        if packet.proto.lower() in PORT_PROTOS:
            if packet.sport is not None:
                th[0] = packet.sport.to_bytes(2, "big")
            if dport is not None:
                th[2] = dport.to_bytes(2, "big")
        self.th = th
        pad = bytes(3)
        self.meta: dict[str, bytes] = {
            "meta nfproto": bytes((2 if self.family == 4 else 10,)) + pad,
            "meta protocol": (b"\x08\x00" if self.family == 4 else b"\x86\xdd") + bytes(2),
        }
        if num is not None and num < 256:
            self.meta["meta l4proto"] = bytes((num,)) + pad

    def load(self, base: int, off: int, size: int) -> bytes | None:
        if base == 1:
            full = _NH_FIELDS[self.family].get(off)
            if full is None or size > full:
                return None
            got = self.nh.get(off)
            return got[:size] if got is not None else None
        if base == 2 and off in (0, 2) and size == 2:
            return self.th.get(off)
        return None


def certainly_no_match(raw: bytes, img: PacketImage) -> bool:
    """True when a compare in ``raw`` is false for this packet before anything with an
    effect happens; False when unsure."""
    regs: dict[int, bytes | None] = {}
    off, end = 0, len(raw)
    unpack = _HDR.unpack_from
    while off + 4 <= end:  # the list's elements one by one: most rules fail early
        ln = unpack(raw, off)[0]
        if ln < 4:
            return False
        e = expr(raw[off + 4 : off + ln])
        off += (ln + 3) & ~3
        kind = e[0]
        if kind == "cmp":
            v = regs.get(e[1])
            data = e[3]
            assert isinstance(data, bytes)
            if v is None or len(data) > len(v):
                continue
            if e[2] == "==":
                if v[: len(data)] != data:
                    return True
            elif e[2] == "!=" and v[: len(data)] == data:
                return True
            continue
        if kind == "payload":
            _, slot, base, field_off, size = e
            _store(regs, slot, img.load(base, field_off, size), size)
        elif kind == "load":
            _store(regs, e[1], img.meta.get(e[2]), 4)
        elif kind == "bitwise":
            _, sreg, dreg, mask, xor = e
            v = regs.get(sreg)
            assert isinstance(mask, bytes) and isinstance(xor, bytes)
            if v is not None and len(mask) <= len(v) and len(xor) == len(mask):
                v = bytes((a & m) ^ x for a, m, x in zip(v, mask, xor, strict=False))
            else:
                v = None
            _store(regs, dreg, v, len(mask))
        elif kind == "passive" and e[1] in _PASSES:
            continue
        else:
            return False
    return False


def _store(regs: dict[int, bytes | None], slot: int, value: bytes | None, size: int) -> None:
    """Write a register; values overlapping the written 32-bit slots become unknown."""
    n = max(1, (size + 3) // 4)
    for u in list(regs):
        old = regs[u]
        width = max(1, (len(old) + 3) // 4) if old is not None else 1
        if u < slot + n and slot < u + width:
            regs[u] = None
    regs[slot] = value
