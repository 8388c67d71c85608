"""Exposure of a listening address: who can reach a socket bound there.

``loopback``: 127.0.0.0/8, ``::1`` or an IPv4-mapped loopback (``::ffff:127.0.0.1``) —
only this host. ``all``: the unspecified address (``0.0.0.0``, ``::``, ``::ffff:0.0.0.0``)
— every interface; on Linux a ``::`` socket also takes IPv4 unless it is v6only.
``address``: one specific non-loopback address — whoever can route to it.
"""

from __future__ import annotations

import ipaddress


def exposure(address: str) -> str:
    """``"loopback"``, ``"all"`` or ``"address"`` for a local address in text form.

    Raises ``ValueError`` when ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "all"
    if ip.is_loopback:
        return "loopback"
    return "address"
