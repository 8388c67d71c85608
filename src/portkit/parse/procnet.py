"""``/proc/net/{tcp,tcp6,udp,udp6}`` text -> socket rows.

Theory of operation: each line after the header describes one socket; the fields used
are ``local_address``, ``rem_address`` (hex address in host byte order per 32-bit word,
colon, hex port), ``st`` (hex kernel state), ``uid`` and ``inode``::

    "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 12345 ..."
      -> ("tcp", "ipv4", 10, "127.0.0.1", 22, None, None, 0, 12345)

IPv6 addresses are four such words: ``00000000000000000000000001000000`` is ``::1``.
The row shape is the one :mod:`portkit.parse.sockdiag` produces, so both backends feed
the same code above them. Pure: the text is read by :mod:`portkit.backends.sockets`.
"""

from __future__ import annotations

from portkit.parse.sockdiag import Row, format_ipv6

_ZERO4 = "00000000"
_ZERO6 = "0" * 32


def hex_to_ipv4(word: str) -> str:
    """``"0100007F"`` -> ``"127.0.0.1"`` (the kernel prints the address as a host-order u32)."""
    raw = bytes.fromhex(word)
    if len(raw) != 4:
        raise ValueError(f"not an IPv4 word: {word!r}")
    return f"{raw[3]}.{raw[2]}.{raw[1]}.{raw[0]}"


def hex_to_ipv6(words: str) -> str:
    """Four host-order u32 words -> compressed IPv6 text; ``0...01000000`` -> ``"::1"``."""
    if len(words) != 32:
        raise ValueError(f"not an IPv6 address: {words!r}")
    raw = b"".join(bytes.fromhex(words[i : i + 8])[::-1] for i in range(0, 32, 8))
    return format_ipv6(raw)


def parse_procnet(text: str, proto: str, family: str, states: int) -> list[Row]:
    """Rows of one ``/proc/net`` table whose state bit is set in ``states``.

    ``family`` is ``"ipv4"`` for ``tcp``/``udp`` and ``"ipv6"`` for ``tcp6``/``udp6``.
    Raises ``ValueError`` on a malformed line.
    """
    six = family == "ipv6"
    convert = hex_to_ipv6 if six else hex_to_ipv4
    zero = _ZERO6 if six else _ZERO4
    cache: dict[str, str] = {}
    out: list[Row] = []
    lines = text.splitlines()
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        try:
            state = int(parts[3], 16)
            if not (states >> state) & 1:
                continue
            laddr_hex, lport_hex = parts[1].split(":")
            raddr_hex, rport_hex = parts[2].split(":")
            uid = int(parts[7])
            inode = int(parts[9])
            local = cache.get(laddr_hex)
            if local is None:
                local = cache[laddr_hex] = convert(laddr_hex)
            rport = int(rport_hex, 16)
            if rport == 0 and raddr_hex == zero:
                out.append((proto, family, state, local, int(lport_hex, 16), None, None, uid, inode))
                continue
            remote = cache.get(raddr_hex)
            if remote is None:
                remote = cache[raddr_hex] = convert(raddr_hex)
            out.append((proto, family, state, local, int(lport_hex, 16), remote, rport, uid, inode))
        except (IndexError, ValueError) as exc:
            raise ValueError(f"line {lineno}: cannot parse {line.strip()!r}: {exc}") from None
    return out
