"""Read the nftables ruleset straight from the kernel (NETLINK_NETFILTER dumps).

The socket is opened inside the target namespace (a netlink socket stays bound to the
namespace it was created in), so later dumps, such as one set's elements when the
evaluator first needs them, reuse it from any thread. Decoding is in
:mod:`portkit.parse.nftnetlink`; this module only sends requests and collects replies.

A dump interrupted by a concurrent commit (``NLM_F_DUMP_INTR``), or a generation id that
changed between the first and the last dump, restarts the read: the result is always one
consistent generation of the ruleset.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from portkit.errors import PrivilegeError, SystemRefused, map_os_error
from portkit.parse.netlink_tlv import attrs
from portkit.parse.nftnetlink import RawRuleset

_NETLINK_NETFILTER = 12
_SUBSYS = 10 << 8  # NFNL_SUBSYS_NFTABLES
_GETTABLE, _GETCHAIN, _GETRULE, _GETSET, _GETSETELEM, _GETGEN = 1, 4, 7, 10, 13, 16
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")
_SO_NETNS_COOKIE = 71


class DumpInterrupted(Exception):
    """The ruleset changed while it was being read."""


def _attr(typ: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), typ) + data + bytes(-len(data) % 4)


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


class NftSocket:
    """One NETLINK_NETFILTER socket in one namespace."""

    def __init__(self) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        except OSError as exc:
            raise map_os_error(exc, "cannot open a netfilter netlink socket") from None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        self.ifnames = {i: n for i, n in _if_nameindex()}

    def close(self) -> None:
        self.sock.close()

    def cookie(self) -> int | None:
        try:
            return int(struct.unpack("=Q", self.sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8))[0])
        except OSError:  # an older kernel without SO_NETNS_COOKIE: no cookie, no caching
            return None

    def request(self, msg: int, *, family: int = 0, body: bytes = b"", dump: bool = True) -> list[bytes]:
        """Send one request; the payloads (nfgenmsg + attributes) of every reply message."""
        self.seq += 1
        seq = self.seq
        payload = struct.pack("=BBH", family, 0, 0) + body
        flags = _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
        self.sock.send(_HDR.pack(16 + len(payload), _SUBSYS | msg, flags, seq, 0) + payload)
        out: list[bytes] = []
        recv = self.sock.recv
        unpack = _HDR.unpack_from
        while True:
            data = recv(1 << 20)
            off, end = 0, len(data)
            while off + 16 <= end:
                length, mtype, mflags, mseq, _pid = unpack(data, off)
                if length < 16:
                    break
                if mseq != seq:
                    off += (length + 3) & ~3
                    continue
                if mtype == _NLMSG_DONE:
                    return out
                if mtype == _NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err == 0 and not dump:
                        return out
                    self._raise(err, msg)
                if mflags & _NLM_F_DUMP_INTR:
                    raise DumpInterrupted
                out.append(data[off + 16 : off + length])
                if not dump:
                    return out
                off += (length + 3) & ~3

    @staticmethod
    def _raise(err: int, msg: int) -> None:
        if err in (errno.EPERM, errno.EACCES):
            raise PrivilegeError("reading the nftables ruleset needs root (CAP_NET_ADMIN)")
        if err == errno.EINTR:
            raise DumpInterrupted
        raise SystemRefused(f"the kernel refused an nftables dump (message {msg}): {os.strerror(err)}")

    def generation(self) -> int:
        for payload in self.request(_GETGEN, dump=False):
            gen_id = attrs(payload, 4).get(1)  # NFTA_GEN_ID
            if gen_id is not None and len(gen_id) == 4:
                return int.from_bytes(gen_id, "big")
        raise SystemRefused("the kernel sent no nftables generation id")

    def ruleset(self) -> tuple[int, RawRuleset]:
        """(generation, dumps) of one consistent generation."""
        for _ in range(20):
            try:
                gen = self.generation()
                raw = RawRuleset(
                    tables=self.request(_GETTABLE),
                    chains=self.request(_GETCHAIN),
                    sets=self.request(_GETSET),
                    rules=self.request(_GETRULE),
                    ifnames=self.ifnames,
                )
                if self.generation() == gen:
                    return gen, raw
            except DumpInterrupted:
                continue
        raise SystemRefused("the nftables ruleset kept changing while it was read; try again")

    def set_elements(self, family: int, table: str, name: str) -> list[bytes]:
        body = _attr(1, _name(table)) + _attr(2, _name(name))
        for _ in range(20):
            try:
                return self.request(_GETSETELEM, family=family, body=body)
            except DumpInterrupted:
                continue
        raise SystemRefused(f"the elements of set {name} kept changing while they were read")


def _if_nameindex() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:  # no interface list: rules show interface indexes instead of names
        return []


def open_socket(netns: str | None = None) -> NftSocket:
    """A socket in ``netns`` (a name under /run/netns) or in this process's namespace."""
    if netns is None:
        return NftSocket()
    from portkit.backends.netns import netns_path, run_in_netns

    return run_in_netns(netns_path(netns), NftSocket)
