"""A forked worker that runs ``portkit``'s ``main()`` in a sealed-off world, for the CLI fuzz test.

Theory of operation. The fuzz test runs thousands of malformed command lines as root; none
may reach the host, and each must be checked for what it changed. One worker process is
forked from the test session and seals itself off once:

- it enters a fresh ``pk-`` network namespace (made by the caller, holding only ``lo``), so
  no packet, rule or route reaches the host's network;
- it unshares its mount namespace (private propagation) and lays an overlay over ``/etc``,
  ``/run`` and ``/var`` whose upper layers are on a tmpfs: whatever portkit writes there
  (``/etc/portkit``, ``/etc/systemd/system``, ``/etc/netns``, ``/run/portkit``, state
  files) lands in the upper layer, never on the host, and shows up there;
- ``/etc/resolv.conf`` is replaced by an empty file, so no name is sent to a real resolver
  (glibc then asks 127.0.0.1, which inside the namespace nobody answers).

Each invocation is then one more ``fork()`` of the worker, which has portkit imported
already: the child points fds 0-2 at /dev/null and two temp files, calls
``portkit.cli.main.main(argv)`` and leaves with its return value. Forking the warm worker
costs a few milliseconds where ``python -m portkit`` costs a hundred or more. The worker
kills a child (and its process group) after ``timeout`` seconds, and compares the upper
layers' listing and the namespace's nftables generation before and after each run.

The session talks to the worker over a pipe pair, one JSON document per line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 0x1000
MS_RDONLY, MS_REMOUNT = 1, 32
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
OVERLAID = ("/etc", "/run", "/var")
#: The ruleset cache (ops/nftlive.py) is written by reading commands; it is not state.
CACHE_PREFIX = "/run/portkit/cache"
#: A YAML bomb must meet MemoryError, not the machine's OOM killer.
CHILD_MEMORY = 1536 << 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


@dataclass(frozen=True)
class Outcome:
    """What one invocation did."""

    argv: list[str]
    code: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float
    changed: list[str] = field(default_factory=list)  # files written, ruleset changes


def _upper_listing(uppers: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for upper in uppers:
        for dirpath, dirnames, filenames in os.walk(upper):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                shown = path[len(upper) :]
                shown = OVERLAID[uppers.index(upper)] + shown
                try:
                    if os.path.islink(path) or not os.path.isfile(path):
                        out[shown] = "dir" if os.path.isdir(path) else "other"
                    else:
                        with open(path, "rb") as f:
                            out[shown] = hashlib.sha256(f.read()).hexdigest()[:16]
                except OSError:
                    out[shown] = "unreadable"
    return out


def _nft_generation() -> str:
    try:
        from portkit.backends.nftnl import NftSocket

        s = NftSocket()
        try:
            gen, raw = s.ruleset()
            tables = len(raw.tables)
        finally:
            s.close()
        return f"generation {gen}, {tables} tables"
    except Exception as exc:  # no nf_tables: nothing can change there either
        return f"unreadable: {exc}"


def _enter_pid_namespace() -> None:
    """Go on as pid 1 of a new PID namespace with its own /proc: no invocation can see or
    signal a process of the host (``who --kill``, ``lab down``). The process that was the
    worker waits for its namespace's init, and leaves with its status."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    pid = os.fork()
    if pid != 0:
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


def _reap_orphans() -> None:
    """As init of the namespace, reap what the invocations left behind (they are ours)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class _Sealed:
    """The worker's side: seal off, then serve requests until told to stop."""

    def __init__(self, netns_path: str, scratch: str, layers: str) -> None:
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        finally:
            os.close(fd)
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        self.layers = layers
        _mount("pk-fuzz", self.layers, "tmpfs", 0, "mode=0700,size=256m")
        self.uppers: list[str] = []
        self.origs: list[str] = []  # the host's own /etc, /run, /var, read-only, to undo writes from
        for i, lower in enumerate(OVERLAID):
            upper, work, orig = f"{self.layers}/{i}/upper", f"{self.layers}/{i}/work", f"{self.layers}/{i}/orig"
            os.makedirs(upper)
            os.makedirs(work)
            os.makedirs(orig)
            _mount(lower, orig, None, MS_BIND, None)
            _mount("none", orig, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            self.origs.append(orig)
            _mount("overlay", lower, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
            self.uppers.append(upper)
        empty = f"{self.layers}/resolv.conf"
        open(empty, "w").close()
        if os.path.exists("/etc/resolv.conf"):
            _mount(empty, "/etc/resolv.conf", None, MS_BIND, None)
        # Labs, rollbacks and caches other sessions keep in /run/portkit are hidden (a
        # whiteout in the upper layer): the invocations start from an empty state directory.
        if os.path.isdir("/run/portkit"):
            shutil.rmtree("/run/portkit")
        os.mkdir("/run/portkit", 0o755)
        _enter_pid_namespace()
        self.scratch = scratch
        self.out_path = f"{self.layers}/stdout"
        self.err_path = f"{self.layers}/stderr"
        # Warm up: every portkit module imported once, here, so each fork starts hot (the
        # commands import their modules lazily, and compiling them costs ~0.2 s a run).
        import importlib
        import pkgutil

        import portkit
        from portkit.cli import main as cli_main

        for info in pkgutil.walk_packages(portkit.__path__, "portkit."):
            if info.name in ("portkit.__main__", "portkit.lab.pytest_plugin"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # an optional backend (pyroute2, psutil) that is not installed
                continue

        self.main = cli_main.main
        # Caches filled here (service tables, nmap-services) are inherited by every fork.
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for warm in (["info", "80"], ["who", "1", "--json"]):
                self.main(warm)
        self.listing = _upper_listing(self.uppers)
        self.nft = _nft_generation()

    def _undo(self, listing: dict[str, str]) -> None:
        """Undo what one invocation wrote, so each starts from the same world: state in
        /run/portkit is removed (it started empty), anything else is restored from the
        host's read-only original or removed."""
        for path in sorted(set(listing) | set(self.listing), reverse=True):
            if listing.get(path) == self.listing.get(path):
                continue
            top = next(t for t in OVERLAID if path == t or path.startswith(t + "/"))
            orig = None
            if not (path + "/").startswith("/run/portkit/"):
                orig = self.origs[OVERLAID.index(top)] + path[len(top) :]
            _undo_one(path, orig)

    def run(self, argv: list[str], timeout: float) -> dict[str, Any]:
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: one portkit invocation
            child_code = 4
            try:
                os.setpgid(0, 0)
                resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
                os.chdir(self.scratch)
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(self.out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                err = os.open(self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                # sys.stdout may be pytest's capture object, not fd 1: point all three at the fds.
                sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
                sys.stdout = io.TextIOWrapper(
                    io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace"
                )
                sys.stderr = io.TextIOWrapper(
                    io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace"
                )
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                try:
                    child_code = int(self.main(argv))
                except SystemExit as exc:
                    child_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
                except BaseException as exc:
                    sys.stderr.write(f"fuzz worker: main raised {type(exc).__name__}: {exc}\nTraceback\n")
                    child_code = 99
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(child_code)
        code: int | None = None
        timed_out = False
        deadline = t0 + timeout
        # Wait without reaping (WNOWAIT): while the child is a zombie its pid, and so its
        # process group, cannot be reused, so the group kill below reaches only ours.
        while True:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None and info.si_pid == pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                break
            time.sleep(0.002)
        seconds = time.monotonic() - t0
        try:  # anything the child started in its group (nft, ip, a rollback timer) ends too
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status = os.waitpid(pid, 0)
        _reap_orphans()
        if not timed_out:
            code = os.waitstatus_to_exitcode(status)
        changed: list[str] = []
        listing = _upper_listing(self.uppers)
        if listing != self.listing:
            for path in sorted(set(listing) | set(self.listing)):
                if path.startswith(CACHE_PREFIX):  # a cache of what was read, not state
                    continue
                if listing.get(path) != self.listing.get(path):
                    changed.append(
                        f"{path}: {self.listing.get(path, 'absent')} -> {listing.get(path, 'absent')}"
                    )
            self._undo(listing)
            self.listing = _upper_listing(self.uppers)
        nft = _nft_generation()
        if nft != self.nft:
            changed.append(f"nftables ruleset: {self.nft} -> {nft}")
            subprocess.run(["nft", "flush", "ruleset"], check=False, capture_output=True)
            self.nft = _nft_generation()
        return {
            "argv": argv,
            "code": code,
            "stdout": _read_text(self.out_path),
            "stderr": _read_text(self.err_path),
            "seconds": seconds,
            "changed": changed,
        }


def _undo_one(path: str, orig: str | None) -> None:
    """Put ``path`` (in the merged view) back as ``orig`` has it, or remove it."""
    try:
        if orig is not None and os.path.lexists(orig):
            if os.path.islink(orig):
                if os.path.lexists(path):
                    os.unlink(path)
                os.symlink(os.readlink(orig), path)
            elif os.path.isfile(orig):
                shutil.copy2(orig, path)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass  # reported as changed already; the next listing shows what is left


def _read_text(path: str, limit: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


class FuzzWorker:
    """The session's handle on the worker: ``run(argv)`` -> :class:`Outcome`."""

    def __init__(self, netns_path: str, scratch: str, layers: str, *, timeout: float = 20.0) -> None:
        """``layers``: an empty directory the worker mounts its tmpfs on (remove it after close)."""
        self.timeout = timeout
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(req_w)
                os.close(resp_r)
                os.environ.pop("PORTKIT_DEBUG", None)
                os.environ.update({"LANG": "C.UTF-8", "TERM": "dumb"})
                reader = os.fdopen(req_r, "r", encoding="utf-8")
                writer = os.fdopen(resp_w, "w", encoding="utf-8")
                try:
                    sealed = _Sealed(netns_path, scratch, layers)
                    writer.write(json.dumps({"ready": True}) + "\n")
                except BaseException as exc:
                    writer.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
                    raise
                writer.flush()
                for line in reader:
                    req = json.loads(line)
                    if req.get("quit"):
                        break
                    writer.write(json.dumps(sealed.run(req["argv"], req["timeout"])) + "\n")
                    writer.flush()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(resp_w)
        self.pid = pid
        self._req = os.fdopen(req_w, "w", encoding="utf-8")
        self._resp = os.fdopen(resp_r, "r", encoding="utf-8")
        hello = json.loads(self._resp.readline() or '{"ready": false, "error": "worker died"}')
        if not hello.get("ready"):
            self.close()
            raise RuntimeError(f"the fuzz worker could not seal itself off: {hello.get('error')}")

    def run(self, argv: list[str], *, timeout: float | None = None) -> Outcome:
        self._req.write(json.dumps({"argv": argv, "timeout": timeout or self.timeout}) + "\n")
        self._req.flush()
        line = self._resp.readline()
        if not line:
            raise RuntimeError("the fuzz worker died")
        r = json.loads(line)
        return Outcome(r["argv"], r["code"], r["stdout"], r["stderr"], r["seconds"], r["changed"])

    def close(self) -> None:
        try:
            self._req.write(json.dumps({"quit": True}) + "\n")
            self._req.flush()
        except (OSError, ValueError, AttributeError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for f in (getattr(self, "_req", None), getattr(self, "_resp", None)):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
