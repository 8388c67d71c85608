"""Contract tests: every socket backend keeps the documented API and sees the same sockets."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator

import pytest

from portkit.backends import netns as netns_mod
from portkit.backends.sockets import BACKEND_NAMES, SocketBackend, default_backend_name, make_backend
from tests.conftest import needs_tool

LISTEN_MASKS = {"tcp": 1 << 10, "udp": 1 << 7}
ALL_MASKS = {"tcp": (1 << 14) - 2, "udp": (1 << 7) | (1 << 1)}
FAMS = ("ipv4", "ipv6")


@pytest.fixture
def own_sockets() -> Iterator[dict[str, socket.socket]]:
    socks: dict[str, socket.socket] = {}
    t4 = socket.socket()
    t4.bind(("127.0.0.1", 0))
    t4.listen(4)
    t6 = socket.socket(socket.AF_INET6)
    t6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    t6.bind(("::1", 0))
    t6.listen(4)
    u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u4.bind(("127.0.0.1", 0))
    client = socket.create_connection(t4.getsockname())
    server, _ = t4.accept()
    socks.update(t4=t4, t6=t6, u4=u4, client=client, server=server)
    yield socks
    for s in socks.values():
        s.close()


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_backend_contract(name: str, own_sockets: dict[str, socket.socket]) -> None:
    backend: SocketBackend = make_backend(name)
    assert backend.name == name and isinstance(backend.per_thread_netns, bool)
    rows = backend.dump(ALL_MASKS, FAMS)
    for r in rows:
        proto, fam, state, laddr, lport, raddr, rport, uid, ino = r
        assert proto in ("tcp", "udp") and fam in FAMS and isinstance(state, int)
        assert isinstance(laddr, str) and isinstance(lport, int) and isinstance(uid, int) and isinstance(ino, int)
        assert (raddr is None) == (rport is None)
    index = {(r[0], r[3], r[4], r[2]): r for r in rows}
    t4 = own_sockets["t4"].getsockname()
    t6 = own_sockets["t6"].getsockname()
    u4 = own_sockets["u4"].getsockname()
    c = own_sockets["client"].getsockname()
    wanted = {
        "t4": ("tcp", t4[0], t4[1], 10),
        "t6": ("tcp", "::1", t6[1], 10),
        "u4": ("udp", u4[0], u4[1], 7),
        "client": ("tcp", c[0], c[1], 1),
    }
    for label, key in wanted.items():
        assert key in index, f"{name} misses {label} {key}"
    conn = index[wanted["client"]]
    assert (conn[5], conn[6]) == (t4[0], t4[1])
    owners, _incomplete = backend.owners(rows, None)
    for label, key in wanted.items():
        assert os.getpid() in owners.get(index[key][8], []), f"{name}: no owner for {label}"
    # Listening masks give only listening/unconnected sockets.
    for r in backend.dump(LISTEN_MASKS, FAMS):
        assert r[2] == (10 if r[0] == "tcp" else 7)


def test_default_backend_is_netlink_on_linux() -> None:
    if "PORTKIT_SOCKET_BACKEND" in os.environ:
        pytest.skip("backend forced by the environment")
    assert default_backend_name() == "netlink"


@pytest.mark.root
@needs_tool("ip")
@pytest.mark.parametrize("name", [n for n in BACKEND_NAMES if n != "psutil"])
def test_backends_look_into_a_namespace(name: str) -> None:
    ns = f"pk-insp-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        backend = make_backend(name)

        def inside() -> list[tuple[object, ...]]:
            s = socket.socket()
            s.bind(("127.0.0.1", 4321))
            s.listen(1)
            try:
                return list(backend.dump(LISTEN_MASKS, FAMS))
            finally:
                s.close()

        rows = netns_mod.run_in_netns(netns_mod.netns_path(ns), inside)
        assert [(r[3], r[4]) for r in rows] == [("127.0.0.1", 4321)]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_forked_walk_matches_sequential(own_sockets: dict[str, socket.socket]) -> None:
    from portkit.backends import procs

    mine = {os.fstat(s.fileno()).st_ino for s in own_sockets.values()}
    dup = os.dup(own_sockets["t4"].fileno())  # a second fd of one socket must not count twice
    try:
        only_t4, _ = procs.socket_owners({os.fstat(dup).st_ino}, parallel=False)
        assert only_t4 == {os.fstat(dup).st_ino: [os.getpid()]}
    finally:
        os.close(dup)
    seq, _ = procs.socket_owners(mine, parallel=False)
    par, _ = procs.socket_owners(mine, parallel=True)
    assert seq == par and set(seq) == mine and all(v == [os.getpid()] for v in seq.values())
    seq_all, _ = procs.socket_owners(None, parallel=False)
    par_all, _ = procs.socket_owners(None, parallel=True)
    for ino in mine:
        assert seq_all[ino] == par_all[ino] == [os.getpid()]
    halves = procs._balanced_halves([os.getpid(), 1], "/proc")
    assert halves is None or sorted(halves[0] + halves[1]) == sorted([os.getpid(), 1])
