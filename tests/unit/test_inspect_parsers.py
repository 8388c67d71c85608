"""Parsers of the kernel's socket tables, on real data captured on this machine.

The fixtures (tests/fixtures/inspect/, made by capture.py there) hold one known set of
sockets, dumped both as /proc/net text and as sock_diag netlink bytes at the same moment.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from portkit.backends.procs import parse_btime, parse_starttime
from portkit.parse import procnet, sockdiag
from portkit.parse.sockdiag import Row

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "inspect"
ALL_TCP = (1 << 14) - 2
UDP_BOTH = (1 << 7) | (1 << 1)
INODES: dict[str, int] = json.loads((FIX / "inodes.json").read_text())


def ino(addr: str, port: int) -> int:
    return INODES[str((addr, port))]


def procnet_rows(name: str, mask: int) -> list[Row]:
    proto = name.rstrip("6")
    fam = "ipv6" if name.endswith("6") else "ipv4"
    return procnet.parse_procnet((FIX / f"proc_net_{name}.txt").read_text(), proto, fam, mask)


def sockdiag_rows(proto: str, fam: str) -> list[Row]:
    return sockdiag.parse_dump([(FIX / f"sockdiag_{proto}_{fam}.bin").read_bytes()], proto)


def test_procnet_tcp_ipv4() -> None:
    rows = procnet_rows("tcp", ALL_TCP)
    conn_port = next(r[4] for r in rows if r[5] == "127.0.0.1" and r[6] == 8080)
    assert sorted(rows) == sorted(
        [
            ("tcp", "ipv4", 10, "127.0.0.1", 6379, None, None, 0, ino("127.0.0.1", 6379)),
            ("tcp", "ipv4", 10, "0.0.0.0", 8080, None, None, 0, ino("0.0.0.0", 8080)),
            ("tcp", "ipv4", 1, "127.0.0.1", 8080, "127.0.0.1", conn_port, 0, ino("127.0.0.1", 8080)),
            ("tcp", "ipv4", 1, "127.0.0.1", conn_port, "127.0.0.1", 8080, 0, ino("127.0.0.1", conn_port)),
        ]
    )


def test_procnet_tcp_ipv6_mapped_dualstack_and_unaccepted() -> None:
    rows = procnet_rows("tcp6", ALL_TCP)
    listen = {(r[3], r[4]) for r in rows if r[2] == 10}
    assert listen == {("::", 8443), ("::ffff:127.0.0.1", 5432), ("::1", 9000)}
    # The connection to [::1]:9000 was never accepted: its server side has no file (inode 0).
    server_side = [r for r in rows if r[2] == 1 and r[4] == 9000]
    assert len(server_side) == 1 and server_side[0][8] == 0 and server_side[0][5] == "::1"


def test_procnet_state_filter_and_udp() -> None:
    assert [r[4] for r in procnet_rows("tcp", 1 << 10)] == [6379, 8080]
    assert procnet_rows("udp", UDP_BOTH) == [("udp", "ipv4", 7, "0.0.0.0", 5353, None, None, 0, ino("0.0.0.0", 5353))]
    assert procnet_rows("udp6", UDP_BOTH) == [("udp", "ipv6", 7, "::", 53, None, None, 0, ino("::", 53))]
    assert procnet_rows("udp6", 1 << 1) == []


@pytest.mark.parametrize(("proto", "fam", "name"), [("tcp", "ipv4", "tcp"), ("tcp", "ipv6", "tcp6"), ("udp", "ipv4", "udp"), ("udp", "ipv6", "udp6")])
def test_sockdiag_matches_procnet(proto: str, fam: str, name: str) -> None:
    """The netlink bytes and the /proc text of the same moment decode to the same rows."""
    mask = ALL_TCP if proto == "tcp" else UDP_BOTH
    nl = sockdiag_rows(proto, fam)
    assert nl, "fixture holds sockets"
    assert sorted(nl) == sorted(procnet_rows(name, mask))


def test_sockdiag_chunk_split_at_message_boundary() -> None:
    data = (FIX / "sockdiag_tcp_ipv6.bin").read_bytes()
    first_len = struct.unpack_from("=I", data)[0]
    whole = sockdiag.parse_dump([data], "tcp")
    split = sockdiag.parse_dump([data[:first_len], data[first_len:]], "tcp")
    assert whole == split


def test_sockdiag_truncated_raises() -> None:
    data = (FIX / "sockdiag_tcp_ipv4.bin").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        sockdiag.Decoder().parse_chunk(data[:50], "tcp", [])


def test_sockdiag_error_reply() -> None:
    err = struct.pack("=IHHII", 36, sockdiag.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    with pytest.raises(sockdiag.SockDiagError) as exc:
        sockdiag.Decoder().parse_chunk(err, "udp", [])
    assert exc.value.errno == 2


def test_build_request_layout() -> None:
    req = sockdiag.build_request(sockdiag.AF_INET6, sockdiag.IPPROTO_UDP, 1 << 7, seq=9)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, mtype, flags, seq, pid) == (72, 20, 0x301, 9, 0) and len(req) == 72
    fam, proto, ext, states = struct.unpack_from("=BBBxI", req, 16)
    assert (fam, proto, ext, states) == (10, 17, 0, 128)


def test_address_words() -> None:
    assert procnet.hex_to_ipv4("0100007F") == "127.0.0.1"
    assert procnet.hex_to_ipv6("00000000000000000000000001000000") == "::1"
    assert procnet.hex_to_ipv6("0000000000000000FFFF00000100007F") == "::ffff:127.0.0.1"
    assert sockdiag.format_ipv6(bytes.fromhex("fe800000000000000000000000000001")) == "fe80::1"
    with pytest.raises(ValueError):
        procnet.hex_to_ipv4("01007F")


def test_procnet_malformed_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        procnet.parse_procnet("header\n   0: zzzz 00000000:0000 0A\n", "tcp", "ipv4", ALL_TCP)


def test_proc_stat_fields() -> None:
    # A process name may hold spaces and parentheses; fields count after the last ')'.
    rest = " ".join(str(i) for i in range(4, 53))  # field N holds the number N
    assert parse_starttime(f"42 (a) b (c)) S {rest}") == 22
    assert parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 9\n") == 1700000000
    with pytest.raises(ValueError):
        parse_btime("cpu 1 2\n")
