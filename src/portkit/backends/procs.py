"""Processes behind sockets: one walk of ``/proc/*/fd``, names, users, command lines.

Theory of operation: the kernel's socket tables give each socket's inode and owner uid,
never a pid. A process holds a socket when one of its ``/proc/PID/fd/N`` links reads
``socket:[INODE]``, so :func:`socket_owners` walks every process's fd directory once per
call (``ss -p``, lsof and psutil do the same). Each directory is opened once and its
links are read relative to that directory fd, which spares the kernel a full path lookup
per descriptor. Directories we may not read (other users' processes when not root) are
skipped and reported, so the caller can say once that root sees more.

Inode numbers of sockets are unique across network namespaces, so the same walk serves
``--netns``.
"""

from __future__ import annotations

import marshal
import os
import pwd
import sys
from collections.abc import Collection

PROC = "/proc"

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def socket_owners(
    inodes: Collection[int] | None = None, *, proc: str = PROC, parallel: bool | None = None
) -> tuple[dict[int, list[int]], bool]:
    """Map socket inode -> pids holding it (ascending); second value: some fd dir was unreadable.

    With ``inodes`` given, only those sockets are looked for (a set lookup of the raw link
    text, with no parsing of other links). With ``parallel`` (default: when it pays and is
    safe, see :func:`_split_worthwhile`), a forked child walks half of the processes.
    """
    try:
        entries = os.listdir(proc)
    except OSError:  # no /proc to walk: no owners, and the answer says it is incomplete
        return {}, True
    pids = sorted(int(e) for e in entries if e.isdigit())
    wanted: dict[str, int] | None = None
    if inodes is not None:
        wanted = {f"socket:[{i}]": i for i in inodes if i}
        if not wanted:
            return {}, False
    if parallel is None:
        parallel = _split_worthwhile(pids, proc)
    if parallel:
        halves = _balanced_halves(pids, proc)
        if halves is not None:
            got = _walk_forked(halves, wanted, proc)
            if got is not None:
                return got
    return _walk(pids, wanted, proc)


def _walk(pids: list[int], wanted: dict[str, int] | None, proc: str) -> tuple[dict[int, list[int]], bool]:
    owners: dict[int, list[int]] = {}
    incomplete = False
    want_all = len(wanted) if wanted is not None else 0
    readlink = os.readlink
    listdir = os.listdir
    osopen = os.open
    close = os.close
    for pid in pids:
        try:
            dfd = osopen(f"{proc}/{pid}/fd", _O_DIR)
        except PermissionError:  # another user's process: say the answer is incomplete
            incomplete = True
            continue
        except OSError:  # gone, or a kernel thread
            continue
        try:
            try:
                names = listdir(dfd)
            except OSError:  # the process exited while it was walked
                continue
            if wanted is not None:
                # fds list in ascending order and a listener is usually opened first, so a
                # server holding every wanted socket is left early, skipping its connections.
                found_here = 0
                for name in names:
                    try:
                        ino = wanted.get(readlink(name, dir_fd=dfd))
                    except OSError:  # the descriptor was closed while it was read
                        continue
                    if ino is not None:
                        lst = owners.get(ino)
                        if lst is None:
                            owners[ino] = [pid]
                        elif lst[-1] != pid:
                            lst.append(pid)
                        else:
                            continue  # a second fd of the same socket
                        found_here += 1
                        if found_here == want_all:
                            break
            else:
                for name in names:
                    try:
                        link = readlink(name, dir_fd=dfd)
                    except OSError:  # the descriptor was closed while it was read
                        continue
                    if link[:8] == "socket:[":
                        ino = int(link[8:-1])
                        lst = owners.get(ino)
                        if lst is None:
                            owners[ino] = [pid]
                        elif lst[-1] != pid:
                            lst.append(pid)
        finally:
            close(dfd)
    return owners, incomplete


# Below this many descriptors in all, a fork costs more than it saves.
PARALLEL_MIN_FDS = 4000


def _fd_counts(pids: list[int], proc: str) -> list[int]:
    # Since Linux 6.2 the size of /proc/PID/fd is its number of open descriptors (0 before).
    counts: list[int] = []
    for pid in pids:
        try:
            counts.append(os.stat(f"{proc}/{pid}/fd").st_size)
        except OSError:  # gone, or not ours to stat: counted as no descriptors
            counts.append(0)
    return counts


def _split_worthwhile(pids: list[int], proc: str) -> bool:
    """Fork only with several CPUs, many descriptors, and no other thread that a fork
    could catch holding a lock. ``PORTKIT_PARALLEL_WALK=0`` turns it off (benchmarks)."""
    if os.environ.get("PORTKIT_PARALLEL_WALK") == "0" or (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
        return False
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    return sum(_fd_counts(pids, proc)) >= PARALLEL_MIN_FDS


def _balanced_halves(pids: list[int], proc: str) -> tuple[list[int], list[int]] | None:
    counts = _fd_counts(pids, proc)
    if not any(counts):
        return None
    a: list[int] = []
    b: list[int] = []
    wa = wb = 0
    for count, pid in sorted(zip(counts, pids, strict=True), reverse=True):
        if wa <= wb:
            a.append(pid)
            wa += count
        else:
            b.append(pid)
            wb += count
    return sorted(a), sorted(b)


def _walk_forked(
    halves: tuple[list[int], list[int]], wanted: dict[str, int] | None, proc: str
) -> tuple[dict[int, list[int]], bool] | None:
    """Walk ``halves[1]`` in a forked child while this process walks ``halves[0]``.

    Threads do not help here (measured: the readlink loop keeps the GIL busy), a second
    process does (about 1.5x on 2 CPUs for 40,000 descriptors). None when fork fails.
    """
    try:
        rfd, wfd = os.pipe()
    except OSError:  # no pipe: walk in this process alone
        return None
    try:
        child = os.fork()
    except OSError:  # no fork: walk in this process alone
        os.close(rfd)
        os.close(wfd)
        return None
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(rfd)
            data = marshal.dumps(_walk(halves[1], wanted, proc))
            with os.fdopen(wfd, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(wfd)
    mine, incomplete = _walk(halves[0], wanted, proc)
    with os.fdopen(rfd, "rb") as inp:
        data = inp.read()
    try:
        _, status = os.waitpid(child, 0)
    except ChildProcessError:  # the host program reaps its children itself (a SIGCHLD handler)
        status = 0
    if status != 0 or not data:
        theirs, inc2 = _walk(halves[1], wanted, proc)
    else:
        theirs, inc2 = marshal.loads(data)
    for ino, pids in theirs.items():
        lst = mine.get(ino)
        if lst is None:
            mine[ino] = pids
        else:
            mine[ino] = sorted(set(lst).union(pids))
    return mine, incomplete or inc2


_users: dict[int, str] = {}


def user_name(uid: int) -> str:
    """Name of ``uid`` (cached); the number as text when the passwd database has none."""
    name = _users.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _users[uid] = name
    return name


def process_name(pid: int, *, proc: str = PROC) -> str | None:
    """``/proc/PID/comm`` (the kernel's 15-character name), or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:  # the process is gone
        return None


def process_uid(pid: int, *, proc: str = PROC) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:  # the process is gone
        return None


def process_cmdline(pid: int, *, proc: str = PROC) -> str:
    """The command line with arguments joined by spaces ("" for kernel threads or when gone)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:  # the process is gone
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def parse_starttime(stat_text: str) -> int:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks after boot).

    The name in field 2 may hold spaces and parentheses, so fields are counted after the
    last ``)``: ``"42 (a b) S 1 ..."`` -> field 3 is ``S``.
    """
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    return int(rest[19])


def parse_btime(stat_text: str) -> int:
    """``btime`` (boot time, seconds since the epoch) from ``/proc/stat``."""
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


_btime: list[int] = []


def process_started(pid: int, *, proc: str = PROC) -> str | None:
    """When the process started, as local ISO-8601 text with offset; None when unknown."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            ticks = parse_starttime(f.read())
        if not _btime:
            with open(f"{proc}/stat") as f:
                _btime.append(parse_btime(f.read()))
    except (OSError, ValueError, IndexError):  # gone, or /proc/stat unreadable: no start time
        return None
    import datetime as _dt

    ts = _btime[0] + ticks / os.sysconf("SC_CLK_TCK")
    return _dt.datetime.fromtimestamp(round(ts), tz=_dt.UTC).astimezone().isoformat()


def is_gone(pid: int, *, proc: str = PROC) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for its parent)."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            text = f.read()
    except OSError:  # no /proc entry: the process is gone
        return True
    try:
        return text[text.rindex(")") + 2] in "ZX"
    except (ValueError, IndexError):
        return True
