"""The host side of kernel forwards: their state file, bind probes and sysctls in a namespace.

:mod:`portkit.ops.forward_kernel` decides what to install; this module does the OS work it
needs. The list of forwards is kept in ``/run/portkit/forward/<netns|host>.json`` (the
kernel's table stays the judge of what is really installed); whether an address is local is
asked the kernel by binding a socket to it inside the namespace; sysctls are read and
written under /proc/sys inside the namespace.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TypeVar

from portkit.backends import state
from portkit.errors import SystemRefused, map_os_error
from portkit.model.forward import ForwardSpec

__all__ = [
    "forget_netns",
    "in_netns",
    "is_local_address",
    "load_state",
    "save_state",
    "sysctl",
]

Result = TypeVar("Result")


def _run_dir() -> str:
    return state.forwards_dir()


def _state_path(netns: str | None) -> str:
    """Filed by the namespace's identity (see :func:`portkit.backends.netns.state_key`)."""
    from portkit.backends.netns import state_key

    return os.path.join(_run_dir(), f"{state_key(netns)}.json")


def forget_netns(netns: str) -> None:
    """Drop the record of a deleted namespace's kernel forwards (its table died with it).
    The namespace is gone, so its identity cannot be asked: the records that carry its name
    as their label go. (A namespace of the same name made later has a new identity anyway.)"""
    try:
        names = os.listdir(_run_dir())
    except OSError:  # no forwards directory: nothing recorded, nothing to forget
        return
    for n in names:
        if not n.startswith("net-") or not n.endswith(".json"):
            continue
        p = os.path.join(_run_dir(), n)
        try:
            data = state.read_state_json(p)
        except (OSError, ValueError, SystemRefused):  # a record that cannot be read or trusted is not this namespace's
            continue
        if isinstance(data, dict) and data.get("netns") == netns:
            with contextlib.suppress(OSError):
                os.unlink(p)


def load_state(netns: str | None) -> tuple[list[ForwardSpec], dict[str, bool]]:
    """The recorded forwards, and by spec text whether each one's target is local: one read
    of the state file. Entries that cannot be read are skipped; no file means none."""
    try:
        data = state.read_state_json(_state_path(netns))
    except (OSError, ValueError):  # unreadable state means no recorded forwards (see the docstring)
        return [], {}
    specs: list[ForwardSpec] = []
    local: dict[str, bool] = {}
    for item in data.get("forwards", []) if isinstance(data, dict) else []:
        try:
            spec = ForwardSpec(
                bind=item["bind"],
                listen_port=int(item["listen_port"]),
                target_host=item["target_host"],
                target_port=int(item["target_port"]),
                proto=item["proto"],
                allow=tuple(item.get("allow", ())),
                deny=tuple(item.get("deny", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        specs.append(spec)
        local[str(spec)] = bool(item.get("local"))
    return specs, local


def save_state(netns: str | None, specs: Sequence[ForwardSpec], local: dict[str, bool]) -> None:
    state.make_dir(_run_dir(), 0o755)
    state.write_json(
        _state_path(netns),
        {"netns": netns, "forwards": [{**asdict(s), "local": local.get(str(s), False)} for s in specs]},
        0o644,
        indent=1,
    )


def netns_path(netns: str | None) -> str | None:
    """The namespace's path (InputError naming the known ones when it is missing); None for the host."""
    from portkit.backends.netns import netns_path as path_of

    return path_of(netns) if netns is not None else None


def in_netns(netns: str | None, fn: Callable[[], Result]) -> Result:
    from portkit.backends.netns import run_in_netns

    return run_in_netns(netns_path(netns), fn)


def is_local_address(addr: str, netns: str | None) -> bool:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET

    def probe() -> bool:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            try:
                s.bind((addr, 0))
            except OSError:  # cannot bind it: not an address of this namespace
                return False
            return True

    return in_netns(netns, probe)


def sysctl(path: str, value: str | None, netns: str | None) -> str:
    """Read (and, with ``value``, write) /proc/sys/<path> inside ``netns``; returns the old value."""

    def go() -> str:
        full = "/proc/sys/" + path.replace(".", "/")
        with open(full) as f:
            old = f.read().strip()
        if value is not None and old != value:
            with open(full, "w") as f:
                f.write(value)
        return old

    try:
        return in_netns(netns, go)
    except OSError as exc:
        raise map_os_error(exc, f"cannot set {path}") from None
