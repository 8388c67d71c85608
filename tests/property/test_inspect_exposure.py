"""Properties: exposure classification over IPv4/IPv6, and address round trips through
the /proc/net and sock_diag encodings."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from portkit.parse import procnet, sockdiag
from portkit.registry.exposure import exposure

v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
ports = st.integers(0, 65535)


def expected(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if int(ip) == 0:
        return "all"
    if isinstance(ip, ipaddress.IPv4Address):
        return "loopback" if ip.packed[0] == 127 else "address"
    return "loopback" if int(ip) == 1 else "address"


def test_fixed_points() -> None:
    assert exposure("0.0.0.0") == "all" == exposure("::") == exposure("::ffff:0.0.0.0")
    assert exposure("127.0.0.1") == "loopback" == exposure("127.45.6.7") == exposure("::1")
    assert exposure("::ffff:127.0.0.1") == "loopback" == exposure("::ffff:127.255.0.1")
    assert exposure("10.0.0.1") == "address" == exposure("fd00::1") == exposure("::ffff:10.0.0.1")
    assert exposure("fe80::1%lan") == "address"


@given(v4)
def test_ipv4(ip: ipaddress.IPv4Address) -> None:
    assert exposure(str(ip)) == expected(ip)


@given(v4)
def test_ipv4_mapped_behaves_like_ipv4(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    assert exposure(str(mapped)) == exposure(str(ip))
    assert exposure(f"::ffff:{ip}") == exposure(str(ip))


@given(v6)
def test_ipv6(ip: ipaddress.IPv6Address) -> None:
    assert exposure(str(ip)) == expected(ip)


@given(st.integers(1, 2**24 - 1))
def test_loopback_block_is_all_loopback(low: int) -> None:
    assert exposure(str(ipaddress.IPv4Address((127 << 24) | low))) == "loopback"


def _proc_word(packed: bytes) -> str:
    # /proc/net prints each 32-bit word of the address in host (little-endian) order.
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


@given(v4, ports, v4, ports)
def test_procnet_ipv4_roundtrip(local: ipaddress.IPv4Address, lport: int, remote: ipaddress.IPv4Address, rport: int) -> None:
    line = f"   0: {_proc_word(local.packed)}:{lport:04X} {_proc_word(remote.packed)}:{rport:04X} 01 0:0 0:0 0 1000 0 4242"
    rows = procnet.parse_procnet("header\n" + line + "\n", "tcp", "ipv4", 1 << 1)
    peerless = rport == 0 and int(remote) == 0
    assert rows == [("tcp", "ipv4", 1, str(local), lport, None if peerless else str(remote), None if peerless else rport, 1000, 4242)]


@given(v6, ports, v6, ports, st.integers(0, 2**32 - 1))
def test_sockdiag_ipv6_roundtrip(local: ipaddress.IPv6Address, lport: int, remote: ipaddress.IPv6Address, rport: int, inode: int) -> None:
    body = struct.pack("=BBBB", sockdiag.AF_INET6, 1, 0, 0) + struct.pack(">HH", lport, rport)
    body += local.packed + remote.packed + bytes(4 + 8 + 12) + struct.pack("=II", 65534, inode)
    msg = struct.pack("=IHHII", 16 + len(body), sockdiag.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body
    done = struct.pack("=IHHII", 20, sockdiag.NLMSG_DONE, 2, 1, 0) + bytes(4)
    out: list[sockdiag.Row] = []
    assert sockdiag.Decoder().parse_chunk(msg + done, "tcp", out)
    peerless = rport == 0 and int(remote) == 0

    def text(ip: ipaddress.IPv6Address) -> str:
        return f"::ffff:{ip.ipv4_mapped}" if ip.ipv4_mapped is not None else ip.compressed

    assert out == [("tcp", "ipv6", 1, text(local), lport, None if peerless else text(remote), None if peerless else rport, 65534, inode)]
    assert ipaddress.IPv6Address(out[0][3]) == local
