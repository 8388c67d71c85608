"""One error mapping at each boundary (issue 11): an OSError becomes a portkit error through
:func:`portkit.errors.map_os_error` / :func:`~portkit.errors.map_file_error` /
:func:`~portkit.errors.map_exceptions` alone, never by a handler that builds the portkit
error itself (``except OSError: raise PrivilegeError(...)``), so the errno -> exit status
table lives in one place."""

from __future__ import annotations

import ast
import builtins
import errno
import pathlib
import socket

import pytest

from portkit import errors
from portkit.errors import (
    ExitCode,
    FileFormatError,
    InputError,
    PortkitError,
    PrivilegeError,
    ResourceLimit,
    SystemRefused,
    TargetError,
    map_exceptions,
    map_file_error,
    map_os_error,
)

SRC = pathlib.Path(errors.__file__).parent

#: The portkit error classes, by name: raising one of these inside an OSError handler is a
#: hand-written mapping.
ERROR_CLASSES = frozenset(
    name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, PortkitError)
)

#: Handlers allowed to map by hand, as (module path under src/portkit, enclosing function):
#: why. Empty is the goal; an entry that no longer matches anything fails the test.
ALLOWED: dict[tuple[str, str], str] = {
    # socket.gaierror is an OSError whose errno is an EAI_* code, not an errno: the
    # resolver's answer "no such name", which resolve() is the one place to map.
    ("backends/host.py", "resolve"): "getaddrinfo's EAI_* codes are no errno",
}


def _is_os_error(node: ast.expr) -> bool:
    """Whether the name ``node`` catches OSError or one of its subclasses (builtins and the
    socket module's aliases: ``socket.error``, ``socket.gaierror``, ``socket.timeout``)."""
    if isinstance(node, ast.Name):
        obj = getattr(builtins, node.id, None)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "socket":
        obj = getattr(socket, node.attr, None)
    else:
        return False
    return isinstance(obj, type) and issubclass(obj, OSError)


def _caught(handler: ast.ExceptHandler) -> list[ast.expr]:
    if handler.type is None:
        return []
    return list(handler.type.elts) if isinstance(handler.type, ast.Tuple) else [handler.type]


def _raised_class(node: ast.Raise) -> str | None:
    """The portkit error class a ``raise`` builds directly (``raise X(...)``,
    ``raise errors.X(...)``, ``raise X``), or None."""
    exc = node.exc
    if exc is None:
        return None
    target = exc.func if isinstance(exc, ast.Call) else exc
    name = target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else None
    return name if name in ERROR_CLASSES else None


def hand_mappings(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, class) of every OSError handler in ``source`` that raises a
    portkit error class itself."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.ExceptHandler) and any(_is_os_error(t) for t in _caught(child)):
                for sub in ast.walk(child):
                    if isinstance(sub, ast.Raise) and (cls := _raised_class(sub)) is not None:
                        found.append((sub.lineno, func, cls))
            visit(child, inner)

    visit(ast.parse(source), "<module>")
    return found


def test_the_checker_sees_a_hand_written_mapping() -> None:
    source = '''
def f(path):
    try:
        open(path)
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        raise errors.SystemRefused(f"cannot read {path}: {exc.strerror}") from None

def g():
    try:
        socket.socket()
    except socket.error as exc:
        raise PrivilegeError("needs root")
    except OSError as exc:
        raise map_os_error(exc, "opening a socket") from exc
    except KeyError:
        raise InputError("not an OS error: fine")
'''
    assert hand_mappings(source) == [(8, "f", "SystemRefused"), (14, "g", "PrivilegeError")]


def test_no_oserror_handler_in_src_maps_by_hand() -> None:
    offenders: list[str] = []
    used: set[tuple[str, str]] = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for line, func, cls in hand_mappings(path.read_text(encoding="utf-8")):
            if (rel, func) in ALLOWED:
                used.add((rel, func))
                continue
            offenders.append(f"src/portkit/{rel}:{line} ({func}) raises {cls} from an OSError handler")
    assert not offenders, (
        "map the OSError with portkit.errors.map_os_error / map_file_error / map_exceptions "
        "instead of building the portkit error by hand:\n" + "\n".join(offenders)
    )
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED names handlers that no longer map by hand; remove them: {stale}"


@pytest.mark.parametrize(
    ("code", "cls", "exit_code"),
    [
        (errno.EACCES, PrivilegeError, ExitCode.PRIVILEGE),
        (errno.EPERM, PrivilegeError, ExitCode.PRIVILEGE),
        (errno.EMFILE, ResourceLimit, ExitCode.REFUSED),
        (errno.ENOBUFS, ResourceLimit, ExitCode.REFUSED),
        (errno.EROFS, SystemRefused, ExitCode.REFUSED),
        (errno.ENOENT, SystemRefused, ExitCode.REFUSED),  # a state or system path: not input
    ],
)
def test_map_os_error_table(code: int, cls: type[PortkitError], exit_code: ExitCode) -> None:
    err = map_os_error(OSError(code, "reason"), "cannot set /proc/sys/x")
    assert type(err) is cls and err.exit_code == exit_code
    assert err.message == "cannot set /proc/sys/x: reason"


def test_map_os_error_caller_errnos_and_hint() -> None:
    exc = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    err = map_os_error(exc, "cannot listen on 10.9.9.9:80/tcp", errnos={errno.EADDRNOTAVAIL: (InputError, "no such address here")})
    assert type(err) is InputError and str(err) == "cannot listen on 10.9.9.9:80/tcp: no such address here"
    err = map_os_error(exc, "x", errnos={errno.EADDRNOTAVAIL: TargetError}, hint="see 'ip addr'")
    assert type(err) is TargetError and str(err) == "x: Cannot assign requested address (see 'ip addr')"
    err = map_os_error(OSError(errno.EACCES, "Permission denied"), "cannot write /etc/x", hint="run as root")
    assert str(err) == "cannot write /etc/x: Permission denied (run as root)"
    # an OSError without errno (socket.if_nametoindex) is the system's refusal
    assert type(map_os_error(OSError("no interface with this name"), "x")) is SystemRefused


@pytest.mark.parametrize(
    ("code", "writing", "words", "exit_code"),
    [
        (errno.ENOENT, False, "/d/p.yaml: no such policy file", ExitCode.BAD_INPUT),
        (errno.ENOENT, True, "/d/p.yaml: no such directory /d", ExitCode.BAD_INPUT),
        (errno.ELOOP, False, "/d/p.yaml: too many levels of symbolic links", ExitCode.BAD_INPUT),
        (errno.EISDIR, False, "/d/p.yaml: is a directory, not a policy file", ExitCode.BAD_INPUT),
        (errno.EACCES, True, "cannot write policy file /d/p.yaml: reason", ExitCode.PRIVILEGE),
        (errno.EIO, False, "/d/p.yaml: cannot read policy file: reason", ExitCode.BAD_INPUT),
        (errno.ENOSPC, True, "cannot write policy file /d/p.yaml: reason", ExitCode.REFUSED),
    ],
)
def test_map_file_error_table(code: int, writing: bool, words: str, exit_code: ExitCode) -> None:
    err = map_file_error(OSError(code, "reason"), "/d/p.yaml", "policy file", writing=writing)
    assert str(err) == words and err.exit_code == exit_code
    assert isinstance(err, FileFormatError) == (exit_code == ExitCode.BAD_INPUT)


def test_map_exceptions_maps_once_and_passes_portkit_errors() -> None:
    with pytest.raises(PrivilegeError, match=r"^opening x: Permission denied \(run as root\)$"), map_exceptions("opening x", hint="run as root"):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(SystemRefused, match=r"^reading y: bad json$"), map_exceptions("reading y", {ValueError: SystemRefused}):
        raise ValueError("bad json")
    with pytest.raises(InputError, match=r"^as it was$"), map_exceptions("reading z"):
        raise InputError("as it was")
    with pytest.raises(KeyError), map_exceptions("reading z"):
        raise KeyError("not mapped")
