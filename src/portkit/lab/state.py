"""The per-lab state file under /run/portkit/labs/: everything a lab made, for a fresh ``down``.

The file is written *before* anything is created (status ``creating``, listing every
namespace the plan will make) and rewritten as pids become known, so a ``down`` after a
crashed or half-failed ``up`` still knows what to remove. Writes are atomic (temp file +
rename); an exclusive flock on the state directory serialises every ``up`` and ``down``
(they take a fraction of a second, and one lock leaves no lock files behind).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from portkit.backends import state as statefiles
from portkit.errors import InputError, SystemRefused, map_exceptions

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def check_name(name: str) -> str:
    """A lab name is also part of file and namespace names: a-z, 0-9 and '-', up to 40."""
    if not _NAME_RE.match(name):
        raise InputError(f"invalid lab name {name!r}; a lab name is up to 40 of a-z, 0-9 and '-'")
    return name


def state_path(name: str) -> str:
    return os.path.join(statefiles.labs_dir(), f"{check_name(name)}.json")


def read(name: str) -> dict[str, Any] | None:
    leftover = f"if it is a leftover, delete that file and any 'ip netns' namespaces named pk-{name}-*"
    with map_exceptions(f"cannot read lab state {state_path(name)}", {ValueError: SystemRefused}, hint=leftover):
        data = statefiles.read_state_json(state_path(name))
    if data is None:
        return None
    problem = record_problem(name, data)
    if problem is not None:
        raise SystemRefused(
            f"refusing {state_path(name)}: {problem}",
            hint="portkit did not write this; remove the file by hand after checking who did",
        )
    record: dict[str, Any] = data
    return record


_NS_PART = r"[a-z0-9][a-z0-9_-]{0,39}"


def record_problem(name: str, data: object) -> str | None:
    """Why a lab record is not one portkit wrote for lab ``name`` (None when it is): the
    names in it are checked as strictly as user input, since ``down`` deletes what they
    name. A namespace must be ``pk-NAME-HOST`` or ``pk-NAME.LINK``; nothing may climb out
    of /run/netns or /etc/netns."""
    if not isinstance(data, dict):
        return "not a JSON object"
    ns_re = re.compile(rf"^pk-{re.escape(name)}[-.]{_NS_PART}$")
    namespaces = data.get("namespaces", [])
    if not isinstance(namespaces, list):
        return "'namespaces' is not a list"
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        return "'hosts' is not an object"
    for ns in [*namespaces, *hosts.values()]:
        if not isinstance(ns, str) or not ns_re.match(ns):
            return f"namespace {ns!r} is not one of lab {name}'s (pk-{name}-HOST or pk-{name}.LINK)"
    runners = data.get("runners", {})
    if not isinstance(runners, dict):
        return "'runners' is not an object"
    for host, r in runners.items():
        pid = r.get("pid") if isinstance(r, dict) else None
        if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
            return f"runner {host!r} has no valid pid"
    return None


def write(name: str, data: dict[str, Any]) -> None:
    statefiles.make_dir(statefiles.labs_dir(), 0o755)
    statefiles.write_json(state_path(name), data, 0o644, indent=1, sort_keys=True)


def remove(name: str) -> None:
    try:
        os.unlink(state_path(name))
    except FileNotFoundError:  # already gone: what remove wanted
        pass


def names() -> list[str]:
    d = statefiles.labs_dir()
    try:
        entries = os.listdir(d)
    except FileNotFoundError:  # no labs directory: no lab is up
        return []
    statefiles.check_trusted(d)
    return sorted(e[: -len(".json")] for e in entries if e.endswith(".json"))


def require(name: str) -> dict[str, Any]:
    data = read(name)
    if data is None:
        known = ", ".join(names()) or "none"
        raise InputError(f"no lab named {name!r} is up; labs that are up: {known}")
    return data


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the labs' lock (``name`` documents which lab the caller works on)."""
    d = statefiles.make_dir(statefiles.labs_dir(), 0o755)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
