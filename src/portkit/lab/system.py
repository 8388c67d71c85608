"""The lab's hands on the system: iproute2 batches, sysctls, nft and processes in namespaces.

Work inside a namespace runs in a thread that has ``setns()``-ed into it (see
:mod:`portkit.backends.netns`): a sysctl write from that thread lands in the namespace's
``/proc/sys/net``, and a child spawned from it (``nft``, the service runner) is born in the
namespace — cheaper than wrapping every command in ``ip netns exec``.

Processes are only ever killed by recorded pid, after checking that the pid still runs
the lab's service runner for this lab (command line and start time match).
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from portkit.backends import state
from portkit.backends.host import require_tool
from portkit.backends.netns import NETNS_RUN_DIR, run_in_netns
from portkit.backends.state import ETC_NETNS
from portkit.errors import PrivilegeError, SystemRefused, map_os_error
from portkit.lab.plan import OPTIONAL_SYSCTLS

T = TypeVar("T")
RUNNER_MODULE = "portkit.lab.runner"


def ip_binary() -> str:
    return require_tool("ip", package="iproute2", what="ip (iproute2)")


def nft_binary() -> str:
    return require_tool("nft", package="nftables")


def _refused(what: str, proc: subprocess.CompletedProcess[str]) -> SystemRefused | PrivilegeError:
    err = " | ".join(ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip())[:400]
    if "Operation not permitted" in err or "Permission denied" in err:
        return PrivilegeError(f"{what}: {err or 'not permitted'} (run as root)")
    return SystemRefused(f"{what} failed: {err or f'exit status {proc.returncode}'}")


def ip_batch(text: str, *, netns: str | None = None, force: bool = False) -> None:
    """Run ``ip [-n NS] [-force] -batch -`` with ``text``; SystemRefused names the failing line."""
    if not text.strip():
        return
    argv = [ip_binary()]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise _refused(f"ip{' -n ' + netns if netns else ''} -batch", proc)


def wait_links_up(ns: str, devs: Sequence[str], timeout: float = 3.0) -> None:
    """Wait until every interface in ``devs`` has operstate UP.

    A new veth's carrier is applied by the kernel's linkwatch work, which batches events
    and may run up to a second later; until then the device's qdisc is the no-op one and
    every frame sent through it is dropped (seen: the first IPv6 neighbour solicitation
    across a lab bridge was lost and the first connection waited for the 1 s
    retransmission). So ``up`` returns only once the links really carry traffic.
    """
    want = set(devs)
    if not want:
        return
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            [ip_binary(), "-n", ns, "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=False
        )
        up = set()
        for line in proc.stdout.splitlines():
            parts = line.split(": ", 2)
            if len(parts) >= 3 and " state UP " in parts[2]:
                up.add(parts[1].split("@", 1)[0])
        if want <= up or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def ns_path(ns: str) -> str:
    return os.path.join(NETNS_RUN_DIR, ns)


def ns_exists(ns: str) -> bool:
    return os.path.exists(ns_path(ns))


def in_ns(ns: str, fn: Callable[[], T]) -> T:
    return run_in_netns(ns_path(ns), fn)


def write_sysctls(ns: str, items: Sequence[tuple[str, str]]) -> None:
    def work() -> None:
        for key, value in items:
            try:
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write(value)
            except OSError as exc:
                # A kernel without IPv6 has no ipv6 keys; some keys are per-namespace only lately.
                if isinstance(exc, FileNotFoundError) and ("ipv6" in key or key in OPTIONAL_SYSCTLS):
                    continue
                missing = {errno.ENOENT: (SystemRefused, "this kernel has no such sysctl")}
                raise map_os_error(exc, f"cannot set {key.replace('/', '.')}={value} in {ns}", errnos=missing) from exc

    in_ns(ns, work)


def run_in(ns: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as a child born inside ``ns`` (no /etc/netns bind mounts: use ip netns exec for those)."""

    def work() -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False)

    return in_ns(ns, work)


def nft_load(ns: str, script: str) -> None:
    proc = run_in(ns, [nft_binary(), "-f", "-"], input=script)
    if proc.returncode != 0:
        raise _refused(f"nft in {ns}", proc)


def spawn_runner(ns: str, lab: str, host: str, services: list[dict[str, Any]]) -> subprocess.Popen[bytes]:
    """Start the host's service runner in ``ns``, in its own session (it outlives us)."""
    argv = [sys.executable, "-m", RUNNER_MODULE, lab, host]
    # Run from / (the caller's directory may be a temporary one) yet import this same portkit.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (package_root, env.get("PYTHONPATH", "")) if x)

    def work() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd="/",
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    proc = in_ns(ns, work)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(services).encode())
    proc.stdin.close()
    return proc


def wait_ready(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """Wait for each runner's ready line; SystemRefused with the first error."""
    sel = selectors.DefaultSelector()
    bufs: dict[str, bytes] = {}
    for host, p in procs.items():
        assert p.stdout is not None
        sel.register(p.stdout, selectors.EVENT_READ, host)
        bufs[host] = b""
    deadline = time.monotonic() + timeout
    pending = set(procs)
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemRefused(f"services of {', '.join(sorted(pending))} not ready within {timeout:.0f} s")
            for key, _ in sel.select(left):
                host = key.data
                chunk = os.read(key.fd, 4096)
                bufs[host] += chunk
                if b"\n" in bufs[host] or not chunk:
                    line = bufs[host].split(b"\n", 1)[0].decode(errors="replace").strip()
                    sel.unregister(key.fileobj)
                    pending.discard(host)
                    if line != "ready":
                        detail = line.removeprefix("error: ") or "the service runner exited"
                        raise SystemRefused(f"services of host {host!r} could not start: {detail}")
    finally:
        sel.close()
        for p in procs.values():
            if p.stdout is not None:
                p.stdout.close()


def proc_starttime(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:  # the process is gone
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:  # the process is gone
        return []


def is_runner(pid: int, lab: str, host: str | None = None, starttime: int | None = None) -> bool:
    """Does ``pid`` (still) run this lab's service runner? Guards against pid reuse."""
    argv = proc_cmdline(pid)
    if RUNNER_MODULE not in argv:
        return False
    rest = argv[argv.index(RUNNER_MODULE) + 1 :]
    if not rest or rest[0] != lab or (host is not None and rest[1:2] != [host]):
        return False
    return starttime is None or proc_starttime(pid) == starttime


def _gone(pid: int) -> bool:
    """Has ``pid`` exited? Reaps it when it is our child (a lab runner started by this process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    return _dead(pid)


def _dead(pid: int) -> bool:
    """Gone or a zombie, without reaping."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:  # no /proc entry: gone
        return True
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] in (b"Z", b"X")


def kill_pids(pids: Sequence[int], timeout: float = 2.0) -> None:
    """SIGTERM the (already verified) pids, wait, SIGKILL what is left."""
    live = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            live.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [p for p in live if not _gone(p)]
        if live:
            time.sleep(0.005)
    for pid in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in live:
        end = time.monotonic() + 1.0
        while not _gone(pid) and time.monotonic() < end:
            time.sleep(0.005)


def runners_of(lab: str) -> list[int]:
    """Pids of live runners of ``lab`` (a fallback for an ``up`` that died before recording them)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and is_runner(int(entry), lab):
            out.append(int(entry))
    return out


def write_etc(ns: str, files: dict[str, str]) -> None:
    d = state.make_dir(os.path.join(ETC_NETNS, ns), 0o755)
    for name, text in files.items():
        state.write_file(os.path.join(d, name), text, 0o644)  # read by every process in the namespace


def remove_etc(ns: str) -> None:
    """Remove /etc/netns/NS, and only a directory directly under /etc/netns."""
    if not ns or "/" in ns or ns in (".", ".."):
        raise SystemRefused(f"refusing to remove {os.path.join(ETC_NETNS, ns)!r}: not a namespace directory")
    shutil.rmtree(os.path.join(ETC_NETNS, ns), ignore_errors=True)


def bound_ports(pid: int) -> set[tuple[str, int]] | None:
    """(proto, port) of the sockets ``pid`` holds that listen (TCP) or are bound (UDP).

    Read from /proc/PID/net/* (the tables of the pid's own namespace) and matched by
    socket inode against /proc/PID/fd. None when that cannot be read (not root, pid gone).
    """
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # the descriptor was closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found: set[tuple[str, int]] = set()
        for table, proto, state in (("tcp", "tcp", "0A"), ("tcp6", "tcp", "0A"), ("udp", "udp", "07"), ("udp6", "udp", "07")):
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    # local "ADDR:PORT", state, ..., inode is the 10th field
                    if len(parts) > 9 and parts[3] == state and parts[9] in inodes:
                        found.add((proto, int(parts[1].rsplit(":", 1)[1], 16)))
        return found
    except OSError:  # gone, or /proc unreadable: unknown, said as None
        return None


def pids_in(namespaces: Sequence[str]) -> list[int]:
    """Pids whose network namespace is one of ``namespaces`` (matched by inode)."""
    wanted = set()
    for ns in namespaces:
        try:
            st = os.stat(ns_path(ns))
        except OSError:  # the namespace is gone: no pid is in it
            continue
        wanted.add((st.st_dev, st.st_ino))
    if not wanted:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # the process exited meanwhile
            continue
        if (st.st_dev, st.st_ino) in wanted and not _dead(int(entry)):
            out.append(int(entry))
    return sorted(out)
