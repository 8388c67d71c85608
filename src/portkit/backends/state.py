"""Every path portkit keeps state in, and how each is created and trusted.

portkit runs as root, so a file it reads back from its own directories is as good as a
command line: whoever can write it steers root. This module is the one place that names
those directories and the one way to create, write and read what is in them.

Where (``PORTKIT_RUN_DIR`` moves the run directory, for tests and unprivileged runs)::

    /run/portkit/            run_dir()       0755  gone at reboot
        firewall/            firewall_dir()  0700  previous/applied tables per namespace
        rollback/            rollback_dir()  0700  pending rollback timers (meta.json, restore.nft)
        cache/               cache_dir()     0700  parsed rulesets (pickles: never load a stranger's)
        forward/             forwards_dir()  0755  kernel forwards per namespace
        labs/                labs_dir()      0755  one JSON file per lab that is up
    /etc/portkit/            config_dir()    0755  the firewall policy
    /var/lib/portkit/        data_dir()      0700  what must survive a reboot (histories, later)

Creation. :func:`make_dir` creates each missing directory with an explicit ``chmod`` after
``mkdir``, so the umask cannot widen it (``umask 000`` once gave 0777 directories and 0666
files). :func:`write_file` writes atomically: a temporary file created in the same directory
with ``O_EXCL|O_NOFOLLOW`` and an explicit mode, fsync'd, then renamed over the target.

Trust. Before a state file is read (:func:`open_state`), :func:`check_trusted` walks its
directory chain from ``/``: each directory must be owned by root or the effective uid and
writable by no one else. Above portkit's own directories a sticky directory such as
``/tmp`` is allowed (only its owner may rename what is in it); portkit's own directories
and the file itself may not be symlinks. The file is opened with ``O_NOFOLLOW`` and its
descriptor checked again (regular file, owner, mode), so a swap between the check and the
open is caught too. A violation raises :class:`~portkit.errors.UntrustedState` (exit 4):
``refusing /run/portkit/labs/x.json: writable by others``.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from portkit.errors import UntrustedState

__all__ = [
    "ETC_NETNS",
    "cache_dir",
    "check_trusted",
    "config_dir",
    "data_dir",
    "firewall_dir",
    "forwards_dir",
    "labs_dir",
    "make_dir",
    "open_lock",
    "open_state",
    "read_state_bytes",
    "read_state_json",
    "read_state_text",
    "rollback_dir",
    "run_dir",
    "write_file",
    "write_json",
]

#: Where ``ip netns exec`` finds a namespace's own hosts and resolv.conf (labs write there).
ETC_NETNS = "/etc/netns"


def run_dir() -> str:
    """/run/portkit, or ``$PORTKIT_RUN_DIR``."""
    return os.path.abspath(os.environ.get("PORTKIT_RUN_DIR") or "/run/portkit")


def firewall_dir() -> str:
    return os.path.join(run_dir(), "firewall")


def rollback_dir() -> str:
    return os.path.join(run_dir(), "rollback")


def cache_dir() -> str:
    return os.path.join(run_dir(), "cache")


def forwards_dir() -> str:
    return os.path.join(run_dir(), "forward")


def labs_dir() -> str:
    """run_dir()/labs, or ``$PORTKIT_LAB_STATE_DIR`` (kept for the lab tests)."""
    return os.path.abspath(os.environ.get("PORTKIT_LAB_STATE_DIR") or os.path.join(run_dir(), "labs"))


def config_dir() -> str:
    """/etc/portkit, or ``$PORTKIT_CONFIG_DIR``."""
    return os.path.abspath(os.environ.get("PORTKIT_CONFIG_DIR") or "/etc/portkit")


def data_dir() -> str:
    """/var/lib/portkit, or ``$PORTKIT_DATA_DIR``."""
    return os.path.abspath(os.environ.get("PORTKIT_DATA_DIR") or "/var/lib/portkit")


def _known_modes() -> dict[str, int]:
    """The mode each of portkit's own directories is made with (the table above)."""
    return {
        run_dir(): 0o755, firewall_dir(): 0o700, rollback_dir(): 0o700, cache_dir(): 0o700,
        forwards_dir(): 0o755, labs_dir(): 0o755, config_dir(): 0o755, data_dir(): 0o700,
    }  # fmt: skip


def _roots() -> list[str]:
    """portkit's own top directories, deepest first: below them everything is strict."""
    return sorted({run_dir(), labs_dir(), config_dir(), data_dir(), ETC_NETNS}, key=len, reverse=True)


# --------------------------------------------------------------------------- trust


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def _problem(st: os.stat_result, *, allow_sticky: bool) -> str | None:
    """Why a file or directory with this stat cannot be trusted, or None."""
    if not _owner_ok(st):
        return f"owned by uid {st.st_uid}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022 and not (allow_sticky and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX):
        return "writable by others" if mode & 0o002 else "writable by its group"
    return None


def _refuse(path: str, why: str) -> UntrustedState:
    return UntrustedState(f"refusing {path}: {why}", path=path, problem=why)


def _split(path: str) -> tuple[str, list[str]]:
    """(the state root holding ``path``, or ``path`` itself; the components below it)."""
    for root in _roots():
        if path == root or path.startswith(root.rstrip("/") + "/"):
            rest = path[len(root) :].strip("/")
            return root, [c for c in rest.split("/") if c]
    return path, []  # not portkit's own: only the path itself is held strictly


def check_trusted(path: str) -> None:
    """Raise :class:`UntrustedState` unless ``path`` (a file or directory, which need not
    exist) and every directory above it are owned by root or this euid and writable by no
    one else. Components that do not exist end the walk: there is nothing to trust yet."""
    path = os.path.abspath(path)
    root, below = _split(path)
    # above portkit's own directories: the real path, sticky directories allowed
    real = os.path.realpath(os.path.dirname(root))
    walked = "/"
    for part in [""] + [c for c in real.split("/") if c]:
        walked = os.path.join(walked, part) if part else "/"
        try:
            st = os.stat(walked)
        except FileNotFoundError:  # nothing there yet: nothing to trust or distrust
            return
        why = _problem(st, allow_sticky=True)
        if why:
            raise _refuse(walked, why)
    # the root and everything below it: no symlinks, no sticky exceptions
    current = root
    for depth in range(len(below) + 1):
        if depth:
            current = os.path.join(current, below[depth - 1])
        try:
            st = os.lstat(current)
        except FileNotFoundError:  # nothing there yet: nothing to trust or distrust
            return
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(current, "is a symlink")
        why = _problem(st, allow_sticky=False)
        if why:
            raise _refuse(current, why)


def _check_fd(path: str, fd: int, *, directory: bool = False) -> None:
    st = os.fstat(fd)
    if directory and not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory")
    if not directory and not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "is not a regular file")
    why = _problem(st, allow_sticky=False)
    if why:
        raise _refuse(path, why)


def open_state(path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor on the state file ``path`` once it is trusted (see the module docstring).

    FileNotFoundError and PermissionError pass through for the caller to decide (a missing
    state file usually means "nothing recorded"); every trust problem raises UntrustedState.
    """
    return _open_trusted(path, flags | os.O_NONBLOCK | os.O_NOCTTY)


def read_state_bytes(path: str) -> bytes | None:
    """The bytes of the trusted state file ``path``; None when it does not exist."""
    try:
        fd = open_state(path)
    except FileNotFoundError:  # no file: nothing recorded (see the docstring)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_state_text(path: str) -> str | None:
    """The UTF-8 text of the trusted state file ``path``; None when it does not exist
    (a decoding error is a ValueError, as for any malformed file)."""
    data = read_state_bytes(path)
    return None if data is None else data.decode("utf-8")


def read_state_json(path: str) -> Any:
    """The JSON document in the trusted state file ``path``; None when it does not exist
    (malformed JSON raises ValueError)."""
    text = read_state_text(path)
    return None if text is None else json.loads(text)


def open_lock(path: str) -> int:
    """A descriptor for ``flock`` on the lock file ``path`` (created 0600 if missing)."""
    return _open_trusted(path, os.O_RDWR | os.O_CREAT)


def _open_trusted(path: str, flags: int) -> int:
    """``open(path, flags)`` (0600 when created) under the trust rules: the directory chain
    checked first, no symlink followed, the opened file checked by its descriptor."""
    path = os.path.abspath(path)
    check_trusted(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise _refuse(path, "is a symlink") from None
        if isinstance(exc, IsADirectoryError):
            raise _refuse(path, "is not a regular file") from None
        raise
    try:
        _check_fd(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------------- creation


def make_dir(path: str, mode: int = 0o700) -> str:
    """Create ``path`` with ``mode`` and its missing parents with their own modes (the
    table above; 0755 for others), whatever the umask, owned by this euid. An existing
    directory must be trusted. Returns ``path``."""
    path = os.path.abspath(path)
    missing: list[str] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    check_trusted(probe)
    modes = _known_modes()
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass  # made meanwhile by another portkit: checked below
        check_trusted(d)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_uid == os.geteuid():
                os.fchmod(fd, mode if d == path else modes.get(d, 0o755))
        finally:
            os.close(fd)
    check_trusted(path)
    if not os.path.isdir(path):
        raise _refuse(path, "is not a directory")
    return path


def write_file(path: str, data: bytes | str, mode: int = 0o600) -> str:
    """Replace ``path`` atomically with ``data`` (str is written as UTF-8) and ``mode``.

    The directory must exist (:func:`make_dir`) and be trusted. A reader sees the old
    file or the new one, never half of it, and a crash leaves at most a ``.*.tmp`` file."""
    path = os.path.abspath(path)
    d, name = os.path.split(path)
    check_trusted(d)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = os.path.join(d, f".{name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o644)
    try:
        try:
            os.fchmod(fd, mode & 0o644)
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # best effort: the error being raised is what counts
            pass
        raise
    return path


def write_json(path: str, obj: object, mode: int = 0o600, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """:func:`write_file` of ``obj`` as JSON."""
    return write_file(path, json.dumps(obj, indent=indent, sort_keys=sort_keys), mode)
