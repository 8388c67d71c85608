"""The one exception hierarchy of portkit, and the exit status each class maps to.

Every error portkit raises on purpose derives from :class:`PortkitError`. The CLI maps the
class to an exit status and prints ``str(error)`` as one line on stderr; a library user
catches the same classes. Foreign errors (OSError from the kernel, CalledProcessError from
``nft``) are mapped at each boundary, once, with the :func:`map_exceptions` context manager
(httpx's idea): ``with map_exceptions("reading /proc/net/tcp"): ...`` turns an OSError into
the matching portkit error, so no caller writes its own ``except OSError`` to do it.

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


def map_os_error(exc: OSError, what: str) -> PortkitError:
    """Map an OSError raised while doing ``what`` to the matching portkit error."""
    detail = exc.strerror or str(exc)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PrivilegeError(f"{what}: {detail}", hint="run as root or with CAP_NET_ADMIN/CAP_NET_RAW")
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return ResourceLimit(f"{what}: {detail}", hint="the open-files limit is reached")
    return SystemRefused(f"{what}: {detail}")


@contextmanager
def map_exceptions(
    what: str,
    mapping: Mapping[type[BaseException], type[PortkitError]] | None = None,
) -> Iterator[None]:
    """Map foreign exceptions raised inside the block to portkit errors, at one boundary.

    ``what`` names the operation ("cannot listen on 0.0.0.0:80/tcp") and starts the message.
    ``mapping`` sends other exception classes to a portkit class (checked in order, first
    match wins); an OSError not in it goes through :func:`map_os_error`. A PortkitError
    passes through untouched.
    """
    try:
        yield
    except PortkitError:
        raise
    except BaseException as exc:
        for foreign, ours in (mapping or {}).items():
            if isinstance(exc, foreign):
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ours(f"{what}: {detail}" if detail else what) from exc
        if isinstance(exc, OSError):
            raise map_os_error(exc, what) from exc
        raise
