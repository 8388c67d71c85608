"""Read the kernel's conntrack table as text, in this or another network namespace.

Two sources print the same line format (parsed by :mod:`portkit.parse.conntrack`):

* ``/proc/net/nf_conntrack`` (``/proc/thread-self/net/...`` inside a namespace thread):
  one read, no child process. Preferred: measured fastest (bench/RESULTS.md, ``## forward``).
* ``conntrack -L -o extended``: when the procfs file is not compiled in
  (CONFIG_NF_CONNTRACK_PROCFS=n) — it asks over netlink, as pyroute2 would, but
  without pyroute2's ~200 ms import on every ``portkit nat``.
"""

from __future__ import annotations

import subprocess

from portkit.backends.host import find_tool
from portkit.backends.netns import netns_path, pid_netns_path, run_in_netns
from portkit.errors import PrivilegeError, SystemRefused, map_os_error

PROC_FILE = "nf_conntrack"


def _read_proc(in_thread: bool) -> str | None:
    path = f"/proc/{'thread-self' if in_thread else 'self'}/net/{PROC_FILE}"
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None  # no nf_conntrack in this kernel: no table, which the caller reports
    except PermissionError as exc:
        raise map_os_error(exc, "reading the conntrack table", hint="run as root or with CAP_NET_ADMIN") from None


def _ns_path(netns: str | None, netns_pid: int | None) -> str | None:
    if netns_pid is not None:
        return pid_netns_path(netns_pid)
    return netns_path(netns) if netns is not None else None


def read_proc(netns: str | None = None, *, netns_pid: int | None = None) -> str | None:
    """The procfs table text, or None when this kernel has no /proc/net/nf_conntrack."""
    path = _ns_path(netns, netns_pid)
    if path is None:
        return _read_proc(False)
    return run_in_netns(path, lambda: _read_proc(True))


def read_tool(netns: str | None = None, *, netns_pid: int | None = None, timeout: float = 30.0) -> str:
    """``conntrack -L -o extended`` output (empty table: empty text)."""
    tool = find_tool("conntrack")
    if tool is None:
        raise SystemRefused(
            "cannot read the conntrack table: no /proc/net/nf_conntrack and no conntrack command",
            hint="apt-get install conntrack",
        )
    argv = [tool, "-L", "-o", "extended"]
    if netns is not None:
        netns_path(netns)
        argv = ["ip", "netns", "exec", netns, *argv]
    path = pid_netns_path(netns_pid) if netns_pid is not None else None
    # A child forked from a thread inside the namespace is born in it (--netns-pid).
    proc = run_in_netns(
        path, lambda: subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    )
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        first = err[0] if err else f"exit status {proc.returncode}"
        if "Operation not permitted" in proc.stderr or "Permission denied" in proc.stderr:
            raise PrivilegeError("reading the conntrack table needs root (CAP_NET_ADMIN)")
        raise SystemRefused(f"conntrack refused: {first}")
    return proc.stdout


def read_table(netns: str | None = None, *, source: str = "auto", netns_pid: int | None = None) -> str:
    """The table text from ``source``: "proc", "tool" or "auto" (proc, else the tool)."""
    if source not in ("auto", "proc", "tool"):
        raise ValueError(source)
    if source in ("auto", "proc"):
        text = read_proc(netns, netns_pid=netns_pid)
        if text is not None:
            return text
        if source == "proc":
            raise SystemRefused("this kernel has no /proc/net/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS)")
    return read_tool(netns, netns_pid=netns_pid)
