"""Banners: what a service says first, and whether it speaks TLS. Pure bytes in, text out.

A service that talks first (SSH, SMTP, FTP, MySQL) is identified by its first line. A
silent one is sent a TLS ClientHello (:func:`client_hello`): a TLS server answers with a
handshake record (ServerHello) or an alert, which :func:`describe_tls` recognises; a
plain-text server (HTTP, for one) usually answers the garbage with an error line, which
is shown as the banner instead.

Example: ``b"SSH-2.0-OpenSSH_9.2p1 Debian\\r\\n"`` -> ``"SSH-2.0-OpenSSH_9.2p1 Debian"``;
``16 03 03 00 5a 02 ...`` (a ServerHello) -> ``"TLS 1.2"``.
"""

from __future__ import annotations

import struct

__all__ = ["ECHO", "client_hello", "describe_reply", "describe_tls", "first_line", "http_probe", "is_echo"]

ECHO = "echo (returns what it is sent)"

MAX_BANNER = 200

_TLS_VERSIONS = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}


def first_line(data: bytes) -> str | None:
    """The first non-empty line, printable characters only, at most 200 characters."""
    for raw in data.splitlines():
        text = raw.decode("utf-8", "replace")
        text = "".join(ch if ch.isprintable() else "." for ch in text).strip()
        if text:
            return text[:MAX_BANNER]
    return None


def is_echo(sent: bytes, data: bytes) -> bool:
    """True when ``data`` is (the start of) what was ``sent``: an echo service, not a reply."""
    n = min(len(sent), len(data))
    return n >= 4 and data[:n] == sent[:n]


def describe_reply(sent: bytes, data: bytes) -> str | None:
    """What a service's reply to our ``sent`` probe says: TLS version, echo, or its first line."""
    if not data:
        return None
    if is_echo(sent, data):
        return ECHO
    tls = describe_tls(data)
    return tls if tls is not None else first_line(data)


def http_probe(host: str | None) -> bytes:
    """A read-only HTTP request (nmap's GetRequest probe) for services that wait for one."""
    head = f"Host: {host}\r\n" if host else ""
    return f"GET / HTTP/1.0\r\n{head}\r\n".encode("ascii", "replace")


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def client_hello(server_name: str | None, random32: bytes, key_share32: bytes) -> bytes:
    """A TLS 1.2/1.3 ClientHello record that mainstream servers answer with a ServerHello.

    ``random32`` and ``key_share32`` are 32 random bytes each (an x25519 public key need
    not be valid for the server to reply: it answers before it checks the key).
    """
    if len(random32) != 32 or len(key_share32) != 32:
        raise ValueError("client_hello needs 32-byte random and key share")
    suites = [
        0x1301,
        0x1302,
        0x1303,
        0xC02B,
        0xC02F,
        0xC02C,
        0xC030,
        0xCCA9,
        0xCCA8,
        0xC013,
        0xC014,
        0x009C,
        0x009D,
        0x002F,
        0x0035,
    ]
    exts = b""
    if server_name and not server_name.replace(".", "").isdigit() and ":" not in server_name:
        name = server_name.encode("idna")
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        exts += _ext(0x0000, struct.pack("!H", len(entry)) + entry)
    groups = [0x001D, 0x0017, 0x0018]
    exts += _ext(0x000A, struct.pack("!H", 2 * len(groups)) + b"".join(struct.pack("!H", g) for g in groups))
    exts += _ext(0x000B, b"\x01\x00")  # ec_point_formats: uncompressed
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201]
    exts += _ext(0x000D, struct.pack("!H", 2 * len(sigs)) + b"".join(struct.pack("!H", s) for s in sigs))
    exts += _ext(0x002B, b"\x04\x03\x04\x03\x03")  # supported_versions: 1.3, 1.2
    share = struct.pack("!HH", 0x001D, 32) + key_share32
    exts += _ext(0x0033, struct.pack("!H", len(share)) + share)
    body = (
        b"\x03\x03"
        + random32
        + b"\x00"  # no session id
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", c) for c in suites)
        + b"\x01\x00"  # compression: null
        + struct.pack("!H", len(exts))
        + exts
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def describe_tls(data: bytes) -> str | None:
    """``"TLS 1.3"``, ``"TLS 1.2"``, ``"TLS (alert)"``... if ``data`` is a TLS reply, else None."""
    if len(data) < 5 or data[0] not in (0x15, 0x16) or data[1] != 0x03 or data[2] > 0x04:
        return None
    if data[0] == 0x15:
        return "TLS (alert)"
    version = _TLS_VERSIONS.get(int.from_bytes(data[1:3], "big"), "TLS")
    # handshake: type 2 = ServerHello; look for supported_versions (TLS 1.3 negotiates there)
    hs = data[5:]
    if hs and hs[0] != 2:
        # any other handshake message first (a ClientHello: an echo service sending ours
        # back) is not a TLS server's answer
        return None
    if len(hs) >= 38 and hs[0] == 2:
        version = _TLS_VERSIONS.get(int.from_bytes(hs[4:6], "big"), version)
        pos = 38
        if len(hs) > pos:
            pos += 1 + hs[pos]  # session id
            pos += 2 + 1  # cipher suite, compression
            if len(hs) >= pos + 2:
                end = min(len(hs), pos + 2 + int.from_bytes(hs[pos : pos + 2], "big"))
                pos += 2
                while pos + 4 <= end:
                    etype = int.from_bytes(hs[pos : pos + 2], "big")
                    elen = int.from_bytes(hs[pos + 2 : pos + 4], "big")
                    if etype == 0x002B and elen == 2:
                        version = _TLS_VERSIONS.get(int.from_bytes(hs[pos + 4 : pos + 6], "big"), version)
                    pos += 4 + elen
    return version if version.startswith(("TLS", "SSL")) else "TLS"
