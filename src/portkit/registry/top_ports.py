"""The most commonly open ports, for ``portkit scan --top N`` when nmap is not installed.

When nmap is installed, ``--top N`` ranks ports by the open-frequencies of its
``nmap-services`` file (read at run time, see :mod:`portkit.backends.nmapdata`), exactly
like ``nmap --top-ports``. Without it, portkit falls back to its own list below: well-known
services in rough order of how often they are seen open on servers and home networks,
then the rest of the privileged range, then common high ports.
"""

from __future__ import annotations

__all__ = ["OWN_TOP_TCP", "OWN_TOP_UDP", "own_top_ports"]

OWN_TOP_TCP: tuple[int, ...] = (
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993, 5900,
    1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, 8443, 8000,
    32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631, 631, 49153, 8081,
    2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, 144,
    7, 389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646,
    49157, 1028, 873, 1755, 2717, 4899, 9100, 119, 37, 6379, 27017, 9200, 11211, 5672, 15672, 9090,
    9443, 2375, 2376, 6443, 10250, 5601, 8086, 8200, 8500, 8600, 9000, 9092, 2181, 61616, 1883, 8883,
    5984, 7001, 7002, 8161, 4369, 25565, 3690, 5938, 6667, 1194, 1521, 500, 4500, 1812, 3260, 860,
)

OWN_TOP_UDP: tuple[int, ...] = (
    631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514, 49152, 162,
    69, 5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 1813, 2049, 5060, 11211, 3478,
    1194, 51820, 443, 427, 19, 7, 9, 17, 177, 1645, 1646, 5683, 47808, 10000,
)


def own_top_ports(n: int, proto: str = "tcp") -> tuple[int, ...]:
    """The first ``n`` ports of portkit's own ranking (then 1-1023, then 1024-65535)."""
    base = OWN_TOP_TCP if proto == "tcp" else OWN_TOP_UDP
    seen: dict[int, None] = dict.fromkeys(base)
    if len(seen) < n:
        for p in range(1, 65536):
            seen.setdefault(p, None)
            if len(seen) >= n:
                break
    return tuple(seen)[:n]
