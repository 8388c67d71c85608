"""Protocol payloads for UDP probes: a service answers only a request it understands.

An empty datagram makes most UDP services stay silent, which a scanner cannot tell from a
firewall dropping the probe (``open|filtered``). For well-known ports portkit sends a
small, harmless request of that protocol (a query, a status or version request - never
anything that changes state), like nmap's ``nmap-payloads``; other ports get an empty
datagram.
"""

from __future__ import annotations

__all__ = ["UDP_PAYLOADS", "udp_payload"]

_DNS_ROOT_NS = bytes.fromhex("123401000001000000000000") + b"\x00" + bytes.fromhex("00020001")
_MDNS_SERVICES = (
    bytes.fromhex("000000000001000000000000")
    + b"\x09_services\x07_dns-sd\x04_udp\x05local\x00"
    + bytes.fromhex("000c0001")
)
_NTP_CLIENT = b"\xe3" + b"\x00" * 47  # LI=3 (unsynchronised), version 4, mode 3 (client)
_SNMP_V1_GET_SYSDESCR = bytes.fromhex(
    "302702010004067075626c6963a01a02021234020100020100300e300c06082b060102010101000500"
)
_NBSTAT = (
    bytes.fromhex("809400000001000000000000")
    + b"\x20"
    + b"CK"
    + b"A" * 30
    + b"\x00"
    + bytes.fromhex("00210001")
)
_SSDP = (
    b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
    b'MAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n'
)
_MEMCACHED = b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n"
_STUN_BINDING = bytes.fromhex("000100002112a442") + b"portkit-scan"  # 12-byte transaction id
_RPC_PORTMAP_NULL = bytes.fromhex("72fe1d130000000000000002000186a00000000200000000") + b"\x00" * 16

UDP_PAYLOADS: dict[int, bytes] = {
    53: _DNS_ROOT_NS,
    111: _RPC_PORTMAP_NULL,
    123: _NTP_CLIENT,
    137: _NBSTAT,
    161: _SNMP_V1_GET_SYSDESCR,
    1900: _SSDP,
    3478: _STUN_BINDING,
    5353: _MDNS_SERVICES,
    11211: _MEMCACHED,
}


def udp_payload(port: int) -> bytes:
    """The probe payload for ``port`` (empty when portkit knows no protocol for it)."""
    return UDP_PAYLOADS.get(port, b"")
