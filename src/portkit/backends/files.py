"""Reading the files a user names (policies, lab scenarios, forward configs), safely.

A user-named file is input, not state (state lives under :mod:`portkit.backends.state`),
so every problem with it is bad input (exit 2) named in one line: a FIFO would block a
plain ``open`` forever, ``/proc/self/mem`` or a device would read garbage or fail oddly,
a symlink loop or an over-long name raise OSErrors of their own. This module opens with
``O_NONBLOCK`` (so a FIFO cannot block), checks the opened descriptor is a regular file,
caps the size, and decodes UTF-8, mapping each failure to :class:`FileFormatError`.
"""

from __future__ import annotations

import errno
import os
import stat

from portkit.errors import FileFormatError, PrivilegeError

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
    except FileNotFoundError:
        if missing_ok:
            return None
        raise FileFormatError(path, f"no such {kind}") from None
    except PermissionError as exc:
        raise PrivilegeError(f"cannot read {kind} {path}: {exc.strerror}") from None
    except OSError as exc:
        raise FileFormatError(path, _why(exc, kind)) from None
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
        raise FileFormatError(path, _why(exc, kind)) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            path, f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); a {kind} is UTF-8 text"
        ) from None


def _why(exc: OSError, kind: str) -> str:
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if exc.errno == errno.ENOTDIR:
        return f"a part of the path is not a directory, so there is no {kind} there"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long"
    return f"cannot read {kind}: {exc.strerror or exc}"
