"""The ``nft`` command: read the ruleset as JSON, load a script in one transaction.

libnftables' Python binding is not on PyPI (only in Debian's python3-nftables, built for
the system interpreter), so portkit drives the ``nft`` binary: ``nft -j list ruleset``
reads, ``nft -f -`` loads a whole script atomically (one netlink batch: either all of it
or none of it is applied).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from portkit.errors import PrivilegeError, SystemRefused

_NFT_PATHS = ("/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft")


def nft_binary() -> str:
    found = shutil.which("nft")
    if found:
        return found
    for p in _NFT_PATHS:
        if os.access(p, os.X_OK):
            return p
    raise SystemRefused("the nft command is not installed", hint="apt-get install nftables")


def _run(args: list[str], *, stdin: str | None = None, netns: str | None = None, timeout: float = 30.0) -> str:
    argv = [nft_binary(), *args]
    if netns is not None:
        from portkit.backends.netns import netns_path

        netns_path(netns)  # a missing namespace is bad input (exit 2), named, not "nft refused"
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SystemRefused(f"nft did not answer within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()
        first = err.splitlines()[0] if err else f"exit status {proc.returncode}"
        if "Operation not permitted" in err or "Permission denied" in err:
            raise PrivilegeError("nft needs CAP_NET_ADMIN (run as root)")
        raise SystemRefused(f"nft refused: {first}" if len(err.splitlines()) <= 1 else f"nft refused: {_compact(err)}")
    return proc.stdout


def _compact(err: str) -> str:
    lines = [ln.strip() for ln in err.splitlines() if ln.strip() and not set(ln.strip()) <= {"^", "~", " "}]
    return " | ".join(lines[:3])


_BINDING_FILE = "/usr/lib/python3/dist-packages/nftables/nftables.py"  # Debian's python3-nftables
_binding_module: Any = None


def _binding() -> Any:
    """libnftables' Python binding (``nftables.Nftables``) when present, else None.

    It is not on PyPI; Debian's python3-nftables installs it for the system interpreter
    only. It is pure Python over ctypes, so it is loaded from its file when the import fails.
    """
    global _binding_module
    if os.environ.get("PORTKIT_NFT_BINDING") == "0":
        return None
    if _binding_module is None:
        _binding_module = False
        try:
            import nftables as mod
        except ImportError:
            mod = None
            if os.path.exists(_BINDING_FILE):
                import importlib.util

                spec = importlib.util.spec_from_file_location("portkit_nftables_binding", _BINDING_FILE)
                if spec is not None and spec.loader is not None:
                    mod = importlib.util.module_from_spec(spec)
                    try:
                        spec.loader.exec_module(mod)
                    except Exception:
                        mod = None
        if mod is not None and hasattr(mod, "Nftables"):
            _binding_module = mod
    return _binding_module or None


def _has_net_admin() -> bool:
    """CAP_NET_ADMIN in the effective set (libnftables prints its own complaint to fd 2
    when it lacks it, so portkit asks first and says it in one line)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 12 & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _list_with_binding(mod: Any, netns: str | None) -> str | None:
    from portkit.backends.netns import netns_path, run_in_netns

    if not _has_net_admin():
        raise PrivilegeError("reading the ruleset needs CAP_NET_ADMIN (run as root)")

    def work() -> tuple[int, str, str]:
        nft = mod.Nftables()  # created inside the namespace: its netlink socket belongs there
        nft.set_json_output(True)
        rc, out, err = nft.cmd("list ruleset")
        return int(rc), str(out), str(err)

    try:
        rc, out, err = run_in_netns(netns_path(netns) if netns is not None else None, work)
    except OSError:
        return None
    if rc != 0:
        if "Operation not permitted" in err or "Permission denied" in err:
            raise PrivilegeError("reading the ruleset needs CAP_NET_ADMIN (run as root)")
        return None  # let the nft binary say it in its own words
    return out


def list_ruleset_json(*, netns: str | None = None) -> dict[str, Any]:
    """``nft -j list ruleset`` as a dict (``{"nftables": [...]}``): through libnftables'
    Python binding when present, the ``nft`` binary otherwise."""
    mod = _binding()
    out = _list_with_binding(mod, netns) if mod is not None else None
    if out is None:
        out = _run(["-j", "list", "ruleset"], netns=netns)
    if not out.strip():
        return {"nftables": []}
    data: dict[str, Any] = json.loads(out)
    return data


def list_ruleset_debug(*, netns: str | None = None) -> str:
    """``nft --debug=netlink list ruleset``: the rules' bytecode (to see what listing hides)."""
    return _run(["--debug=netlink", "list", "ruleset"], netns=netns)


def load_script(script: str, *, netns: str | None = None, check_only: bool = False) -> None:
    """Load ``script`` with ``nft -f -`` as one atomic transaction (``-c``: check only)."""
    args = ["-c", "-f", "-"] if check_only else ["-f", "-"]
    _run(args, stdin=script, netns=netns)


# --------------------------------------------------------------------------- host facts
# The evaluator needs a few facts besides the ruleset: which addresses are local (fib daddr
# type local, DNAT re-routing) and which interface a packet comes in / goes out on.


def _ip_json(args: list[str], netns: str | None) -> Any:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def interface_addresses(*, netns: str | None = None) -> dict[str, list[str]]:
    """{interface: [address, ...]} of the namespace (``ip -j addr``)."""
    data = _ip_json(["addr", "show"], netns)
    out: dict[str, list[str]] = {}
    for link in data or []:
        addrs = [a["local"] for a in link.get("addr_info", []) if "local" in a]
        out[str(link.get("ifname"))] = addrs
    return out


def _read_local_addresses() -> list[str]:
    out: list[str] = []
    try:
        with open("/proc/thread-self/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    last = ""
    for line in lines:  # "  |-- 10.0.0.1" then "     /32 host LOCAL"
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last:
            out.append(last)
    try:
        with open("/proc/thread-self/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.append(":".join(hexaddr[i : i + 4] for i in range(0, 32, 4)))
    except OSError:
        pass
    return sorted(set(out))


def local_addresses(*, netns: str | None = None) -> list[str]:
    """Every local address of the namespace (the kernel's local routes and IPv6 addresses),
    read from /proc inside it: no subprocess, fast enough for each ``fw check``."""
    from portkit.backends.netns import netns_path, run_in_netns

    return run_in_netns(netns_path(netns) if netns is not None else None, _read_local_addresses)


def _route_dev_netlink(address: str) -> str | bool | None:
    """RTM_GETROUTE for ``address`` in this thread's namespace: the output interface, "lo"
    for a local address, None for no route, False when netlink cannot answer."""
    import ipaddress
    import socket
    import struct
    import sys

    from portkit.parse.nftnetlink import attrs

    try:
        packed = ipaddress.ip_address(address).packed
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    except (ValueError, OSError):
        return False
    with sock:
        fam = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
        body = struct.pack("=BBBBBBBBI", fam, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0)
        body += struct.pack("=HH", 4 + len(packed), 1) + packed  # RTA_DST
        try:
            sock.settimeout(2.0)
            sock.send(struct.pack("=IHHII", 16 + len(body), 26, 1, 1, 0) + body)  # RTM_GETROUTE, NLM_F_REQUEST
            data = sock.recv(65536)
        except OSError:
            return False
        if len(data) < 28:
            return False
        length, mtype = struct.unpack_from("=IH", data, 0)
        if mtype == 2:  # NLMSG_ERROR: no route (ENETUNREACH ...)
            return None
        if mtype != 24:  # RTM_NEWROUTE
            return False
        if data[16 + 7] == 2:  # RTN_LOCAL
            return "lo"
        oif = attrs(data[:length], 16 + 12).get(4)  # RTA_OIF
        if oif is None or len(oif) != 4:
            return None
        try:
            return socket.if_indextoname(int.from_bytes(oif, sys.byteorder))
        except OSError:
            return None


def route_dev(address: str, *, netns: str | None = None) -> str | None:
    """The interface the namespace routes ``address`` through (a netlink route lookup, as
    ``ip route get`` does), or None."""
    from portkit.backends.netns import netns_path, run_in_netns

    got = run_in_netns(netns_path(netns) if netns is not None else None, lambda: _route_dev_netlink(address))
    if got is not False:
        return got if isinstance(got, str) else None
    data = _ip_json(["route", "get", address], netns)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        dev = data[0].get("dev")
        if data[0].get("type") == "local":
            return "lo"
        return str(dev) if dev else None
    return None


def default_route_dev(*, family: int = 4, netns: str | None = None) -> str | None:
    data = _ip_json([f"-{family}", "route", "show", "default"], netns)
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("dev"):
        return str(data[0]["dev"])
    return None


def list_table_text(family: str, name: str, *, netns: str | None = None) -> str | None:
    """``nft list table FAMILY NAME`` or None when the table does not exist."""
    try:
        return _run(["list", "table", family, name], netns=netns)
    except SystemRefused as exc:
        if "No such file" in str(exc) or "does not exist" in str(exc):
            return None
        raise


def iptables_save(*, ipv6: bool = False, netns: str | None = None) -> str | None:
    """``iptables-save`` (or ip6tables-save) text, or None when the command is missing."""
    cmd = "ip6tables-save" if ipv6 else "iptables-save"
    exe = shutil.which(cmd) or next((p for p in (f"/usr/sbin/{cmd}", f"/sbin/{cmd}") if os.access(p, os.X_OK)), None)
    if exe is None:
        return None
    argv = [exe] if netns is None else ["ip", "netns", "exec", netns, exe]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


# --------------------------------------------------------------------------- ruleset generation
# Every nftables commit (nft, iptables-nft, firewalld, Docker) bumps the namespace's ruleset
# generation. Reading it is one netlink round trip, so a parsed ruleset can be cached and
# reused for exactly as long as the kernel's ruleset has not changed.


def ruleset_generation(*, netns: str | None = None) -> tuple[int, int] | None:
    """(netns cookie, generation id) naming the current ruleset exactly, or None. The cookie
    (SO_NETNS_COOKIE) is never reused while the machine runs, unlike a namespace inode, so a
    deleted and recreated namespace cannot be mistaken for the old one."""
    from portkit.backends import nftnl
    from portkit.errors import PortkitError

    try:
        sock = nftnl.open_socket(netns)
    except PortkitError:
        return None
    try:
        cookie = sock.cookie()
        return (cookie, sock.generation()) if cookie is not None else None
    except (PortkitError, OSError):
        return None
    finally:
        sock.close()
