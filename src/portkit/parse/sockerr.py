"""ICMP errors as Linux reports them on a socket's error queue (IP_RECVERR / IPV6_RECVERR).

A socket with ``IP_RECVERR`` set gets, for each ICMP error about its traffic, a control
message whose data is a ``struct sock_extended_err`` followed by the offender's address
(``SO_EE_OFFENDER``, the router or host that sent the ICMP)::

    struct sock_extended_err {           /* <linux/errqueue.h>, 16 bytes */
        __u32 ee_errno; __u8 ee_origin; __u8 ee_type; __u8 ee_code; __u8 ee_pad;
        __u32 ee_info; __u32 ee_data;
    };                                   /* then struct sockaddr_in or sockaddr_in6 */

Example (IPv4, admin-prohibited from 10.0.0.2):
``71000000 02 03 0d 00 00000000 00000000 | 0200 0000 0a000002 ...``
-> ``SockExtendedErr(errno=113, origin=2, type=3, code=13, offender="10.0.0.2")``.

:func:`icmp_reason` turns (family, type, code) into nmap's reason names.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from portkit.model.probe import PortState, Reason

__all__ = [
    "SO_EE_ORIGIN_ICMP",
    "SO_EE_ORIGIN_ICMP6",
    "SO_EE_ORIGIN_LOCAL",
    "SockExtendedErr",
    "icmp_reason",
    "parse_sock_extended_err",
    "state_for",
]

SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
AF_INET = 2  # Linux values; this module does not import socket (pure layer)
AF_INET6 = 10

_EE = struct.Struct("=IBBBBII")


@dataclass(frozen=True, slots=True)
class SockExtendedErr:
    errno: int
    origin: int
    type: int
    code: int
    info: int
    data: int
    offender: str | None

    @property
    def is_icmp(self) -> bool:
        return self.origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6)

    @property
    def family(self) -> int:
        return 6 if self.origin == SO_EE_ORIGIN_ICMP6 else 4


def _offender(raw: bytes) -> str | None:
    if len(raw) < 2:
        return None
    fam = int.from_bytes(raw[:2], "little")  # sa_family is host order (little-endian here)
    if fam == AF_INET and len(raw) >= 8:
        return str(ipaddress.IPv4Address(raw[4:8]))
    if fam == AF_INET6 and len(raw) >= 24:
        addr = ipaddress.IPv6Address(raw[8:24])
        mapped = addr.ipv4_mapped
        return str(mapped if mapped is not None else addr)
    return None


def parse_sock_extended_err(data: bytes) -> SockExtendedErr:
    """Decode the data of an IP_RECVERR/IPV6_RECVERR control message."""
    if len(data) < _EE.size:
        raise ValueError(f"sock_extended_err needs {_EE.size} bytes, got {len(data)}")
    ee_errno, origin, typ, code, _pad, info, ee_data = _EE.unpack_from(data)
    return SockExtendedErr(ee_errno, origin, typ, code, info, ee_data, _offender(bytes(data[_EE.size :])))


# ICMPv4 destination unreachable (type 3) codes -> reason, as nmap's portreasons.cc names them.
_ICMP4_UNREACH = {
    0: Reason.NET_UNREACH,
    1: Reason.HOST_UNREACH,
    2: Reason.PROTO_UNREACH,
    3: Reason.PORT_UNREACH,
    6: Reason.NET_UNREACH,  # destination network unknown
    7: Reason.HOST_UNREACH,  # destination host unknown
    9: Reason.NET_PROHIBITED,
    10: Reason.HOST_PROHIBITED,
    11: Reason.NET_UNREACH,  # network unreachable for TOS
    12: Reason.HOST_UNREACH,  # host unreachable for TOS
    13: Reason.ADMIN_PROHIBITED,
}
# ICMPv6 destination unreachable (type 1) codes.
_ICMP6_UNREACH = {
    0: Reason.NET_UNREACH,  # no route to destination
    1: Reason.ADMIN_PROHIBITED,
    2: Reason.HOST_UNREACH,  # beyond scope of source address
    3: Reason.HOST_UNREACH,  # address unreachable
    4: Reason.PORT_UNREACH,
    5: Reason.ADMIN_PROHIBITED,  # source address failed ingress/egress policy
    6: Reason.ADMIN_PROHIBITED,  # reject route to destination
}


def icmp_reason(family: int, icmp_type: int, code: int) -> Reason:
    """nmap's reason for an ICMP error (family 4 or 6)."""
    if family == 6:
        if icmp_type == 1:
            return _ICMP6_UNREACH.get(code, Reason.ICMP_OTHER)
        if icmp_type == 4 and code == 1:  # parameter problem: unrecognized next header
            return Reason.PROTO_UNREACH
        return Reason.ICMP_OTHER
    if icmp_type == 3:
        return _ICMP4_UNREACH.get(code, Reason.ICMP_OTHER)
    return Reason.ICMP_OTHER


def state_for(proto: str, reason: Reason) -> PortState:
    """The state an ICMP error implies: port-unreachable means closed for UDP only."""
    if proto == "udp" and reason is Reason.PORT_UNREACH:
        return PortState.CLOSED
    return PortState.FILTERED
