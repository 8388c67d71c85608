"""A rollback timer that outlives the command: restore an nft script unless confirmed in time.

Generic: used by ``fw apply --confirm`` and ``forward --kernel --confirm``. ``arm(name,
restore_script, seconds, netns=None)`` stores the script under ``/run/portkit/rollback/<name>/``
and starts a detached process (its own session, no terminal, so closing an SSH session does
not kill it) inside the target namespace, that sleeps until the deadline and then loads
the script with ``nft -f`` there. Callers name timers by the namespace's identity
(:func:`portkit.backends.netns.state_key`), never by the name it was entered by. ``confirm(name)`` disarms it. A lock file
serialises confirm and firing, so a confirm that arrives at the last moment either wins
entirely or comes too late and says so.

Arming again while a timer of the same name is pending keeps the *older* restore script
(the last state known to be good) and restarts the clock.

The outcome of a timer that fired is kept in ``/run/portkit/rollback/<name>.result.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from portkit.backends import state
from portkit.errors import InputError, map_os_error

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_POLL = 0.2


@dataclass(frozen=True, slots=True)
class RollbackStatus:
    name: str
    armed: bool
    deadline: float | None  # epoch seconds
    seconds_left: float | None
    netns: str | None
    pid: int | None
    alive: bool
    last_result: str | None  # what happened the last time a timer of this name fired


def _dir(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(f"invalid rollback timer name {name!r}; use letters, digits, '.', '_' or '-'")
    return os.path.join(state.rollback_dir(), name)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    root = state.rollback_dir()
    try:
        state.make_dir(root, 0o700)
        fd = state.open_lock(os.path.join(root, f"{name}.lock"))
    except PermissionError as exc:
        raise map_os_error(exc, f"cannot use the rollback state under {root}", hint="run as root") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_meta(d: str) -> dict[str, object] | None:
    try:
        data = state.read_state_json(os.path.join(d, "meta.json"))
    except (OSError, ValueError):  # no readable meta.json: no timer recorded
        return None
    return data if isinstance(data, dict) else None


def _pid_is_timer(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:  # the pid is gone: it is no timer
        return False
    return b"portkit.backends.rollback" in argv and name.encode() in argv


def _stop(pid: object, name: str) -> None:
    if isinstance(pid, int) and _pid_is_timer(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)


def arm(name: str, restore_script: str, seconds: float, netns: str | None = None) -> RollbackStatus:
    """Start (or restart) timer ``name``: after ``seconds``, load ``restore_script``."""
    if not 1 <= seconds <= 86400:
        raise InputError(f"bad confirmation timeout {seconds:g} s; use 1-86400 seconds")
    d = _dir(name)
    try:
        with _locked(name):
            old = _read_meta(d) if os.path.isdir(d) else None
            if old is not None:
                _stop(old.get("pid"), name)  # keep its restore script: the older good state
            else:
                shutil.rmtree(d, ignore_errors=True)
                state.make_dir(d, 0o700)
                state.write_file(os.path.join(d, "restore.nft"), restore_script)
            deadline = time.time() + seconds
            proc = _start_timer(name, netns)
            meta = {"name": name, "deadline": deadline, "netns": netns, "pid": proc.pid}
            state.write_json(os.path.join(d, "meta.json"), meta)
    except PermissionError as exc:
        raise map_os_error(exc, f"cannot write the rollback state under {state.rollback_dir()}", hint="run as root") from exc
    return status(name)


def _start_timer(name: str, netns: str | None) -> subprocess.Popen[bytes]:
    """The detached timer, started *inside* the target namespace: it restores into the
    namespace it lives in (which it keeps alive), so no name is looked up again later and a
    namespace made meanwhile under the same name cannot receive another one's rules."""
    from portkit.backends.netns import netns_path, run_in_netns

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "portkit.backends.rollback", "--run", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )

    return run_in_netns(netns_path(netns) if netns is not None else None, start)


def confirm(name: str) -> bool:
    """Disarm timer ``name``. True if one was pending, False if none was (or it had fired)."""
    d = _dir(name)
    if not os.path.isdir(state.rollback_dir()):
        return False
    with _locked(name):
        meta = _read_meta(d)
        if meta is None:
            return False
        shutil.rmtree(d, ignore_errors=True)
        _stop(meta.get("pid"), name)
    return True


def status(name: str) -> RollbackStatus:
    d = _dir(name)
    meta = _read_meta(d)
    last = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        last = str(state.read_state_json(os.path.join(state.rollback_dir(), f"{name}.result.json")).get("result"))
    if meta is None:
        return RollbackStatus(name, False, None, None, None, None, False, last)
    deadline = meta.get("deadline")
    pid = meta.get("pid")
    netns = meta.get("netns")
    dl = float(deadline) if isinstance(deadline, int | float) else None
    return RollbackStatus(
        name=name,
        armed=True,
        deadline=dl,
        seconds_left=max(0.0, dl - time.time()) if dl is not None else None,
        netns=netns if isinstance(netns, str) else None,
        pid=pid if isinstance(pid, int) else None,
        alive=isinstance(pid, int) and _pid_is_timer(pid, name),
        last_result=last,
    )


def pending() -> tuple[RollbackStatus, ...]:
    root = state.rollback_dir()
    if not os.path.isdir(root):
        return ()
    state.check_trusted(root)
    return tuple(status(n) for n in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, n)))


def _fire(name: str) -> None:
    """The detached timer's body: wait, then restore unless confirmed meanwhile."""
    d = _dir(name)
    with _locked(name):
        pass  # arm() holds the lock until it has written our pid into meta.json
    while True:
        meta = _read_meta(d)
        if meta is None or meta.get("pid") != os.getpid():
            return  # confirmed, or re-armed by a newer timer
        deadline = meta.get("deadline")
        left = float(deadline) - time.time() if isinstance(deadline, int | float) else 0.0
        if left <= 0:
            break
        time.sleep(min(_POLL, left))
    with _locked(name):
        meta = _read_meta(d)
        if meta is None or meta.get("pid") != os.getpid():
            return
        netns = meta.get("netns")
        script = state.read_state_text(os.path.join(d, "restore.nft"))
        if script is None:
            raise FileNotFoundError(os.path.join(d, "restore.nft"))
        argv = ["nft", "-f", "-"]  # this process was started inside the namespace (see arm)
        try:
            proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60, check=False)
            result = "rolled back" if proc.returncode == 0 else f"rollback failed: {proc.stderr.strip()[:300]}"
        except (OSError, subprocess.SubprocessError) as exc:  # no nft to run: recorded as the result, which fw status shows
            result = f"rollback failed: {exc}"
        _write_result(name, {"name": name, "result": result, "time": time.time(), "netns": netns})
        shutil.rmtree(d, ignore_errors=True)


def _write_result(name: str, result: dict[str, object]) -> None:
    state.write_json(os.path.join(state.rollback_dir(), f"{name}.result.json"), result)


def clear_result(name: str) -> None:
    """Forget timer ``name`` entirely once it is not armed: its last result and lock file."""
    if status(name).armed:
        return
    for suffix in (".result.json", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state.rollback_dir(), f"{name}{suffix}"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        try:
            _fire(sys.argv[2])
        except Exception as exc:  # detached: nobody to tell but the result file
            with contextlib.suppress(Exception):
                _write_result(sys.argv[2], {"name": sys.argv[2], "result": f"rollback failed: {exc}"})
        raise SystemExit(0)
    raise SystemExit(f"usage: {sys.executable} -m portkit.backends.rollback --run NAME")
