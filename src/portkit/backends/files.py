"""Reading the files a user names (policies, lab scenarios, forward configs, facts snapshots),
and writing the ones a user asks for, safely.

A user-named file is input, not state (state lives under :mod:`portkit.backends.state`),
so every problem with it is bad input (exit 2) named in one line: a FIFO would block a
plain ``open`` forever, ``/proc/self/mem`` or a device would read garbage or fail oddly,
a symlink loop or an over-long name raise OSErrors of their own. This module opens with
``O_NONBLOCK`` (so a FIFO cannot block), checks the opened descriptor is a regular file,
caps the size, and decodes UTF-8, mapping each failure to :class:`FileFormatError`.
"""

from __future__ import annotations

import contextlib
import os
import stat

from portkit.errors import FileFormatError, PrivilegeError, map_file_error

#: The largest config file portkit reads (policies and scenarios are a few KiB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def check_path_text(path: str, kind: str) -> None:
    """Refuse a path with control characters (a newline, ESC, DEL...): such a path is never
    a file anyone meant, and it would smuggle text into what portkit generates from it
    (nft script comments, systemd unit lines)."""
    bad = next((c for c in path if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise FileFormatError(
            repr(path), f"a {kind} path cannot contain control characters (found {bad!r}); rename the file"
        )


def read_user_file(path: str, kind: str, *, missing_ok: bool = False, limit: int = MAX_CONFIG_BYTES) -> str | None:
    """The UTF-8 text of the user-named file ``path`` (``kind`` says what it is, e.g.
    "policy file"); None when it does not exist and ``missing_ok``.

    >>> read_user_file("/nonexistent.yaml", "policy file", missing_ok=True) is None
    True
    """
    check_path_text(path, kind)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if missing_ok and isinstance(exc, FileNotFoundError):
            return None
        raise map_file_error(exc, path, kind) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileFormatError(path, f"is a directory, not a {kind}")
        if not stat.S_ISREG(st.st_mode):
            raise FileFormatError(path, f"is not a regular file; a {kind} must be one")
        if st.st_size > limit:
            raise FileFormatError(path, f"is {st.st_size} bytes; a {kind} may be at most {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise FileFormatError(path, f"is larger than {limit} bytes; a {kind} may be at most that")
            chunks.append(chunk)
    except OSError as exc:
        raise map_file_error(exc, path, kind) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            path, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); a {kind} is UTF-8 text"
        ) from None


def check_user_file_writable(path: str, kind: str) -> None:
    """Refuse, before any work is done, a user-named output file that could not be written:
    a missing or unwritable directory, or something there that is not a regular file
    (a device, a FIFO, a directory), which :func:`write_user_file` would not replace."""
    if "\0" in path or not path:
        raise FileFormatError(repr(path), f"not a usable {kind} path")
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None  # a new file: its directory is checked below
    except OSError as exc:
        raise map_file_error(exc, path, kind, writing=True) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise FileFormatError(path, f"is {what}; a {kind} is written as a regular file")
    parent = os.path.dirname(real) or "."
    if not os.path.isdir(parent):
        raise FileFormatError(path, f"no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PrivilegeError(f"cannot write {kind} {path}: permission denied in {parent}")


def write_user_file(path: str, text: str, kind: str) -> None:
    """Write ``text`` (UTF-8) to the user-named file ``path`` whole or not at all: into a
    temporary file beside it, then renamed over it (a symlink's target is the file
    replaced). An existing file keeps its mode; a new one is 0644."""
    import tempfile

    check_user_file_writable(path, kind)
    real = os.path.realpath(path)
    parent = os.path.dirname(real) or "."
    tmp: str | None = None
    try:
        try:
            mode = stat.S_IMODE(os.stat(real).st_mode)
        except FileNotFoundError:
            mode = 0o644  # a new file
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(real)}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, real)
        tmp = None
    except OSError as exc:  # EACCES: exit 3; ENOSPC, EROFS, ...: the system refused
        raise map_file_error(exc, path, kind, writing=True) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # best effort: the error above is what counts
                os.unlink(tmp)


def read_stdin_text(kind: str, *, limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text on standard input (a ``-`` in place of a file name), capped like a file."""
    import sys

    name = "<stdin>"
    try:
        raw = sys.stdin.buffer.read(limit + 1)
    except OSError as exc:
        raise map_file_error(exc, name, kind) from None
    if len(raw) > limit:
        raise FileFormatError(name, f"is larger than {limit} bytes; a {kind} may be at most that")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            name, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); a {kind} is UTF-8 text"
        ) from None
