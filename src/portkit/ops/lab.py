"""portkit.api functions for the lab domain: declarative networks of hosts in namespaces.

    import portkit
    portkit.lab_up("examples/labs/nat-pat.yaml")      # -> LabResult
    portkit.lab_status("nat-pat")                       # -> LabStatus
    portkit.lab_exec("nat-pat", "client1", ["ip", "addr"])  # -> exit status
    portkit.lab_down("nat-pat")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from portkit.errors import InputError
from portkit.model.lab import LabResult, LabStatus, LabSummary, Scenario

__all__: list[str] = ["lab_down", "lab_exec", "lab_load", "lab_ls", "lab_status", "lab_up"]


def lab_load(scenario: Mapping[str, Any] | str | os.PathLike[str]) -> Scenario:
    """Validate a scenario (file path, YAML text, dict or shipped example name) without creating anything."""
    from portkit.lab import scenario as scenario_mod

    return scenario_mod.load(scenario)


def lab_up(
    scenario: Mapping[str, Any] | str | os.PathLike[str] | Scenario,
    *,
    name: str | None = None,
    backend: str = "iproute2",
) -> LabResult:
    """Bring a lab up (idempotent: an identical lab that is already up is left as it is).

    ``backend``: ``iproute2`` (``ip -batch``, the default, measured faster) or ``pyroute2``.
    """
    from portkit.lab import build

    if isinstance(scenario, Scenario):
        sc = scenario
    else:
        from portkit.lab import scenario as scenario_mod

        sc = scenario_mod.load(scenario, default_name=name)
    return build.up(sc, name=name, backend=backend)


def lab_down(name: str) -> LabResult:
    """Remove everything lab ``name`` made: service processes, namespaces, links, files."""
    from portkit.lab import build

    return build.down(name)


def lab_ls() -> tuple[LabSummary, ...]:
    from portkit.lab import build

    return build.summaries()


def lab_status(name: str) -> LabStatus:
    from portkit.lab import build

    return build.status(name)


def lab_exec(
    name: str, host: str, argv: Sequence[str], *, timeout: float | None = None, replace: bool = False
) -> int:
    """Run ``argv`` inside ``host`` of lab ``name`` (with the lab's hosts file); its exit status.

    ``portkit`` as the command runs this same installation (``python -m portkit``), so the
    example commands work from a virtualenv whose bin/ is not on root's PATH. ``replace``
    (the CLI) execs the command in place of this process, as ``ip netns exec`` does, so
    signals sent to it (SIGTERM, SIGHUP to a forwarder) reach the command itself.
    """
    from portkit.lab import build, plan, state, system

    build.require_root("exec")
    record = state.require(name)
    hosts = record.get("hosts", {})
    if host not in hosts:
        raise InputError(f"lab {name!r} has no host {host!r}; its hosts are: {', '.join(sorted(hosts))}")
    if not argv:
        raise InputError("no command given; write it after '--', e.g. portkit lab exec LAB HOST -- ip addr")
    cmd = list(argv)
    if cmd[0] == "portkit":
        cmd = [sys.executable, "-m", "portkit", *cmd[1:]]
    elif "/" not in cmd[0] and shutil.which(cmd[0]) is None:
        raise InputError(f"command {cmd[0]!r} not found on PATH")
    ns = hosts.get(host) or plan.netns_name(name, host)
    if not system.ns_exists(ns):
        raise InputError(f"host {host!r} of lab {name!r} is gone (namespace {ns} missing); run 'portkit lab up' again")
    full = [system.ip_binary(), "netns", "exec", ns, *cmd]
    if replace:
        import signal

        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; the command must not
            signal.signal(sig, signal.SIG_DFL)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(full[0], full)
    proc = subprocess.Popen(full)
    try:
        rc = proc.wait(timeout=timeout)
    except KeyboardInterrupt:
        # The child got the same SIGINT from the terminal; let it finish its way.
        rc = proc.wait()
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128+N, as shells report it
