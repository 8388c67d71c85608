"""The ``nft`` command: read the ruleset as JSON, load a script in one transaction.

libnftables' Python binding is not on PyPI (only in Debian's python3-nftables, built for
the system interpreter), so portkit drives the ``nft`` binary: ``nft -j list ruleset``
reads, ``nft -f -`` loads a whole script atomically (one netlink batch: either all of it
or none of it is applied).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from portkit.errors import PrivilegeError, SystemRefused


def nft_binary() -> str:
    from portkit.backends.host import require_tool

    return require_tool("nft", package="nftables")


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
    except (OSError, ValueError, IndexError):  # no /proc status: fall back to the euid
        pass
    return os.geteuid() == 0


def require_net_admin(what: str) -> None:
    """PrivilegeError (exit 3) naming ``what`` unless this process has CAP_NET_ADMIN: asked
    first, so a command that would also look up a namespace says the missing privilege."""
    if not _has_net_admin():
        raise PrivilegeError(f"{what} needs CAP_NET_ADMIN (run as root)")


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
    except OSError:  # cannot enter the namespace: no JSON ruleset; the caller reports it unknown
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


def list_table_text(family: str, name: str, *, netns: str | None = None) -> str | None:
    """``nft list table FAMILY NAME`` or None when the table does not exist."""
    try:
        return _run(["list", "table", family, name], netns=netns)
    except SystemRefused as exc:
        if "No such file" in str(exc) or "does not exist" in str(exc):
            return None
        raise


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
    except (PortkitError, OSError):  # no cookie or generation: the ruleset is not cached, only read again
        return None
    finally:
        sock.close()
