"""The one exception hierarchy of portkit, and the exit status each class maps to.

Every error portkit raises on purpose derives from :class:`PortkitError`. The CLI maps the
class to an exit status and prints ``str(error)`` as one line on stderr; a library user
catches the same classes. Foreign errors (OSError from the kernel, CalledProcessError from
``nft``) are mapped at each boundary, once, with the :func:`map_exceptions` context manager
(httpx's idea): ``with map_exceptions("reading /proc/net/tcp"): ...`` turns an OSError into
the matching portkit error, so no caller writes its own ``except OSError`` to do it. Where a
handler must catch the OSError itself (to close a socket first, or to tell EADDRINUSE
apart), it raises ``map_os_error(exc, what)``, or ``map_file_error(exc, path, kind)`` for a
file the user named; tests/unit/test_error_mapping.py refuses a handler that builds a
portkit error from an OSError by hand.

    PortkitError                    (generic; exit 1 is never used for errors)
    ├── InputError                  exit 2  bad input: a port of 70000, a malformed rule file
    │   ├── PortSpecError                   a bad port / port range / port spec
    │   ├── TargetError                     a malformed address or CIDR
    │   ├── ResolveError                    a name that does not resolve
    │   └── FileFormatError                 a malformed file (carries path, line)
    ├── PrivilegeError              exit 3  missing root / CAP_NET_ADMIN / CAP_NET_RAW
    ├── SystemRefused               exit 4  the kernel or nft said no
    │   ├── ResourceLimit                   e.g. the open-files limit
    │   └── UntrustedState                  a state file someone else could have written
    ├── Undetermined                exit 5  no answer could be determined
    └── Interrupted                 exit 130
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status, the same on every command."""

    OK = 0  # yes / done
    NO = 1  # no: closed, unreachable, nobody holds it
    BAD_INPUT = 2
    PRIVILEGE = 3
    REFUSED = 4  # the system refused (kernel, nft)
    UNDETERMINED = 5
    INTERRUPTED = 130


class PortkitError(Exception):
    """Base of every portkit error. ``hint`` is an optional second sentence: what to do."""

    exit_code: ExitCode = ExitCode.REFUSED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(PortkitError):
    """Bad input from the user: names the value and what would be valid."""

    exit_code = ExitCode.BAD_INPUT


class PortSpecError(InputError):
    """A bad port number, range or port specification."""


class TargetError(InputError):
    """A malformed address, CIDR block or endpoint."""


class ResolveError(InputError):
    """A host name that does not resolve."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        msg = f"cannot resolve host name {name!r}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)
        self.name = name


class FileFormatError(InputError):
    """A malformed file; carries the path and, when known, the line."""

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class PrivilegeError(PortkitError):
    """The operation needs a privilege this process does not have."""

    exit_code = ExitCode.PRIVILEGE


class SystemRefused(PortkitError):
    """The kernel, nft or another system component refused."""

    exit_code = ExitCode.REFUSED


class ResourceLimit(SystemRefused):
    """A resource limit (open files, memory) stands in the way."""


class UntrustedState(SystemRefused):
    """A state file or directory that someone other than root (or this user) could have
    written or swapped: ``refusing /run/portkit/labs/x.json: writable by others``."""

    def __init__(self, message: str, *, path: str, problem: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


class Undetermined(PortkitError):
    """No answer could be determined."""

    exit_code = ExitCode.UNDETERMINED


class Interrupted(PortkitError):
    """The user interrupted (Ctrl-C)."""

    exit_code = ExitCode.INTERRUPTED


#: What an errno means where the caller of :func:`map_os_error` stands, when it is not the
#: default (EADDRNOTAVAIL on a bind is a bad address, exit 2): a class taking
#: ``(message, *, hint)``, or such a class and the reason to print instead of ``strerror``.
ErrnoMapping = Mapping[int, type[PortkitError] | tuple[type[PortkitError], str]]

#: The errnos that say a path names nothing usable (for ``errnos=dict.fromkeys(NOT_A_PATH,
#: InputError)`` where the path came from the user).
NOT_A_PATH = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG)

_PRIVILEGE_HINT = "run as root or with CAP_NET_ADMIN/CAP_NET_RAW"


def map_os_error(exc: OSError, what: str, *, hint: str | None = None, errnos: ErrnoMapping | None = None) -> PortkitError:
    """The one mapping from an OSError raised while doing ``what`` to a portkit error.

    ``what`` names the value and the operation ("cannot listen on 0.0.0.0:80/tcp") and starts
    the one-line message; the system's reason follows. ``errnos`` first (the caller knows
    that, say, EADDRNOTAVAIL on a bind means a bad address), then:

    ==========================  ==================  ====
    EPERM, EACCES               PrivilegeError      3
    EMFILE, ENFILE              ResourceLimit       4    (the open-files limit)
    ENOBUFS, ENOMEM             ResourceLimit       4    (memory)
    anything else               SystemRefused       4
    ==========================  ==================  ====

    ``hint`` replaces the default hint of the class. A file the user named goes through
    :func:`map_file_error` instead, which says what is wrong with the path (exit 2).

    >>> str(map_os_error(OSError(errno.EROFS, "Read-only file system"), "cannot set /proc/sys/x"))
    'cannot set /proc/sys/x: Read-only file system'
    """
    detail = exc.strerror or str(exc)
    chosen = (errnos or {}).get(exc.errno) if exc.errno is not None else None
    if chosen is not None:
        cls, reason = chosen if isinstance(chosen, tuple) else (chosen, detail)
        return cls(f"{what}: {reason}", hint=hint) if hint else cls(f"{what}: {reason}")
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PrivilegeError(f"{what}: {detail}", hint=hint or _PRIVILEGE_HINT)
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return ResourceLimit(f"{what}: {detail}", hint=hint or "the open-files limit is reached")
    if exc.errno in (errno.ENOBUFS, errno.ENOMEM):
        return ResourceLimit(f"{what}: {detail}", hint=hint or "the system is short of memory")
    return SystemRefused(f"{what}: {detail}", hint=hint)


def map_file_error(exc: OSError, path: str, kind: str, *, writing: bool = False) -> PortkitError:
    """The one mapping for an OSError on a file the user named (``kind``: "policy file"):
    EPERM/EACCES is a missing privilege (exit 3); a path that names no usable file is bad
    input, said in words (exit 2), and so is any other failure to read it (``/proc/self/mem``
    answers EIO: the file named is the problem); a failure to write one that is not the
    path's (ENOSPC, EROFS) goes through :func:`map_os_error` (exit 4).

    >>> str(map_file_error(FileNotFoundError(errno.ENOENT, "No such file"), "/x.yaml", "policy file"))
    '/x.yaml: no such policy file'
    """
    verb = "write" if writing else "read"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PrivilegeError(f"cannot {verb} {kind} {path}: {exc.strerror or exc}")
    if exc.errno == errno.ENOENT:
        parent = os.path.dirname(os.path.abspath(path))
        problem = f"no such directory {parent}" if writing else f"no such {kind}"
    elif exc.errno == errno.ENOTDIR:
        problem = f"a part of the path is not a directory, so there is no {kind} there"
    elif exc.errno == errno.ELOOP:
        problem = "too many levels of symbolic links"
    elif exc.errno == errno.ENAMETOOLONG:
        problem = "the file name is too long"
    elif exc.errno == errno.EISDIR:
        problem = f"is a directory, not a {kind}"
    elif exc.errno in (errno.ENXIO, errno.ENODEV):  # a socket or a device without a driver
        problem = f"is not a regular file; a {kind} must be one"
    elif not writing:
        problem = f"cannot read {kind}: {exc.strerror or exc}"
    else:
        return map_os_error(exc, f"cannot write {kind} {path}")
    return FileFormatError(path, problem)


@contextmanager
def map_exceptions(
    what: str,
    mapping: Mapping[type[BaseException], type[PortkitError]] | None = None,
    *,
    hint: str | None = None,
    errnos: ErrnoMapping | None = None,
) -> Iterator[None]:
    """Map foreign exceptions raised inside the block to portkit errors, at one boundary.

    ``what`` names the operation ("cannot listen on 0.0.0.0:80/tcp") and starts the message.
    ``mapping`` sends other exception classes to a portkit class (checked in order, first
    match wins); an OSError not in it goes through :func:`map_os_error` (with ``hint`` and
    ``errnos``). A PortkitError passes through untouched.
    """
    try:
        yield
    except PortkitError:
        raise
    except BaseException as exc:
        for foreign, ours in (mapping or {}).items():
            if isinstance(exc, foreign):
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                message = f"{what}: {detail}" if detail else what
                raise (ours(message, hint=hint) if hint else ours(message)) from exc
        if isinstance(exc, OSError):
            raise map_os_error(exc, what, hint=hint, errnos=errnos) from exc
        raise
