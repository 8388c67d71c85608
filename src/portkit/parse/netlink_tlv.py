r"""Netlink attributes (TLVs): the framing every netlink family shares.

An attribute is ``struct nlattr { u16 len; u16 type; }`` followed by its payload, padded to
four bytes; nested attributes are attributes inside a payload::

    b"\x08\x00\x01\x00ssh\x00"  -> {1: b"ssh\x00"}     (attrs)
    attr_str(b"ssh\x00")         -> "ssh"
    be_int(b"\x00\x16")          -> 22                   (nf_tables sends numbers big-endian)

Pure: bytes in, values out.
"""

from __future__ import annotations

import struct

_HDR = struct.Struct("=HH")  # nla_len, nla_type: host order, as every netlink header
BE_S32 = struct.Struct("!i")  # a signed 32-bit attribute sent big-endian (verdict codes, priorities)


def attrs(buf: bytes, off: int = 0) -> dict[int, bytes]:
    """Netlink attributes of ``buf`` from ``off``: {type: payload} (nested flag masked off)."""
    out: dict[int, bytes] = {}
    end = len(buf)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln, typ = unpack(buf, off)
        if ln < 4:
            break
        out[typ & 0x3FFF] = buf[off + 4 : off + ln]
        off += (ln + 3) & ~3
    return out


def attr_list(buf: bytes) -> list[bytes]:
    """Payloads of a nested list (NFTA_LIST_ELEM ...), in order."""
    out: list[bytes] = []
    off, end = 0, len(buf)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln, _typ = unpack(buf, off)
        if ln < 4:
            break
        out.append(buf[off + 4 : off + ln])
        off += (ln + 3) & ~3
    return out


def attr_str(b: bytes | None) -> str:
    """A NUL-terminated string attribute ("" when absent)."""
    return b.split(b"\0", 1)[0].decode("utf-8", "replace") if b else ""


def be_int(b: bytes | None) -> int:
    """A big-endian unsigned number of any width (0 when absent)."""
    return int.from_bytes(b, "big") if b else 0
