"""pytest fixtures that bring labs up for a test and always tear them down.

Register with ``pytest_plugins = ["portkit.lab.pytest_plugin"]`` (tests/conftest.py does).

    def test_http(lab):
        h = lab("examples/labs/inbound-rules.yaml")      # or a dict, YAML text, or "inbound-rules"
        assert h.probe("client1", h.address("server"), 80).state == "open"
        r = h.portkit("client1", "check", "server:22")   # python -m portkit inside client1
        h.run("server", ["nft", "list", "ruleset"], check=True)

``lab`` is function-scoped, ``lab_module`` module-scoped; both are factories returning a
:class:`LabHandle`. Each lab gets a unique name (the scenario's name plus a random suffix)
so tests running concurrently on one machine never collide. Tests skip with a stated
reason when not root or when network namespaces are unavailable.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from portkit.model.lab import Scenario

T = TypeVar("T")
ScenarioArg = Mapping[str, Any] | str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Probe:
    """What one connection attempt from inside a lab host saw."""

    state: str  # open | refused | unreachable | prohibited | timeout | error
    data: bytes = b""  # what the peer sent back (banner, echo, HTTP reply)
    error: str = ""  # errno name when not open
    local: tuple[str, int] | None = None  # our source address and port


_ERRNO_STATE = {
    errno.ECONNREFUSED: "refused",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EACCES: "prohibited",
    errno.EPERM: "prohibited",
    errno.ETIMEDOUT: "timeout",
}


def _probe(address: str, port: int, proto: str, send: bytes, timeout: float, source_port: int | None) -> Probe:
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    typ = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(fam, typ) as s:
        s.settimeout(timeout)
        if source_port is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", source_port))
        try:
            s.connect((address, port))
            local = s.getsockname()[:2]
            if send or proto == "udp":
                s.sendall(send or b"ping")
            data = b""
            if proto == "udp" or send:
                data = s.recv(65536)
            else:
                s.settimeout(min(timeout, 0.3))  # a banner comes at once, or not at all
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    data = b""
            return Probe("open", data, "", (local[0], local[1]))
        except TimeoutError:
            return Probe("timeout", b"", "ETIMEDOUT")
        except OSError as exc:  # the errno is the probe's answer
            code = exc.errno or 0
            return Probe(_ERRNO_STATE.get(code, "error"), b"", errno.errorcode.get(code, str(code)))


class LabHandle:
    """A running lab: run commands in its hosts, look up addresses, load firewall rules."""

    def __init__(self, name: str, scenario: Scenario) -> None:
        self.name = name
        self.scenario = scenario
        self._popens: list[subprocess.Popen[Any]] = []

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.scenario.hosts)

    def netns(self, host: str) -> str:
        """The namespace name of ``host`` (``pk-<lab>-<host>``)."""
        self._check_host(host)
        from portkit.lab.plan import netns_name

        return netns_name(self.name, host)

    def _check_host(self, host: str) -> None:
        if host not in self.hosts:
            raise KeyError(f"lab {self.name!r} has no host {host!r}; hosts are: {', '.join(self.hosts)}")

    def _wrap(self, host: str, argv: Sequence[str]) -> list[str]:
        from portkit.lab.system import ip_binary

        cmd = list(argv)
        if cmd and cmd[0] == "portkit":  # this portkit, whether or not its bin/ is on PATH
            cmd = [sys.executable, "-m", "portkit", *cmd[1:]]
        return [ip_binary(), "netns", "exec", self.netns(host), *cmd]

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        timeout: float = 30,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host`` (via ``ip netns exec``: the lab's hosts file applies)."""
        return subprocess.run(
            self._wrap(host, argv), input=input, capture_output=True, text=True, timeout=timeout, check=check
        )

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``; it is killed when the lab is torn down."""
        p: subprocess.Popen[Any] = subprocess.Popen(self._wrap(host, argv), **kw)
        self._popens.append(p)
        return p

    def address(self, host: str, family: int = 4, link: str | None = None) -> str:
        """The first address (no prefix) of ``host`` in ``family``, optionally on ``link``."""
        self._check_host(host)
        for ln, cidr in self.scenario.addresses_of(host):
            ip = cidr.split("/")[0]
            if (link is None or ln == link) and (6 if ":" in ip else 4) == family:
                return ip
        on = f" on link {link!r}" if link else ""
        raise KeyError(f"host {host!r} of lab {self.name!r} has no IPv{family} address{on}")

    def nft(self, host: str, script: str) -> None:
        """Load nftables text in ``host`` (one atomic ``nft -f -``); SystemRefused on error."""
        from portkit.lab.system import nft_load

        nft_load(self.netns(host), script)

    def portkit(self, host: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``python -m portkit ARGS`` (this interpreter) inside ``host``."""
        return self.run(host, [sys.executable, "-m", "portkit", *args], timeout=timeout)

    def call(self, host: str, fn: Callable[[], T]) -> T:
        """Call ``fn()`` in this process, in a thread inside ``host``'s namespace."""
        from portkit.lab.system import in_ns

        return in_ns(self.netns(host), fn)

    def probe(
        self,
        host: str,
        address: str,
        port: int,
        *,
        proto: str = "tcp",
        send: bytes = b"",
        timeout: float = 2.0,
        source_port: int | None = None,
    ) -> Probe:
        """Connect from inside ``host`` to ``address:port`` and report what happened.

        TCP: ``open`` (with a banner, or the reply to ``send``), ``refused`` (RST),
        ``unreachable``/``prohibited`` (ICMP), ``timeout``. UDP: sends ``send`` (or ``ping``)
        and waits for a reply: ``open``, ``refused`` (ICMP port unreachable) or ``timeout``.
        """
        return self.call(host, lambda: _probe(address, port, proto, send, timeout, source_port))

    def kill_popens(self) -> None:
        for p in self._popens:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._popens.clear()


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, veth links)"
    if not os.path.exists("/proc/self/ns/net"):
        return "lab needs network namespaces (this kernel has none)"
    from portkit.errors import PortkitError
    from portkit.lab.system import ip_binary, nft_binary

    try:
        ip_binary()
        nft_binary()
    except PortkitError as exc:
        return f"lab needs iproute2 and nftables: {exc}"
    return None


def unique_name(base: str) -> str:
    """``base`` shortened to fit, plus 6 random hex digits."""
    return f"{base[:24].rstrip('-')}-{secrets.token_hex(3)}"


# Every lab this process brought up: the session-end safety net removes any still there.
_CREATED: set[str] = set()


class LabFactory:
    def __init__(self) -> None:
        self.handles: list[LabHandle] = []

    def __call__(self, scenario: ScenarioArg) -> LabHandle:
        reason = _skip_reason()
        if reason:
            pytest.skip(reason)
        from portkit.lab import build
        from portkit.lab import scenario as scenario_mod

        sc = scenario_mod.load(scenario if not isinstance(scenario, Path) else str(scenario))
        name = unique_name(sc.name)
        handle = LabHandle(name, sc)
        self.handles.append(handle)
        _CREATED.add(name)
        from portkit.errors import PrivilegeError

        try:
            build.up(sc, name=name)
        except PrivilegeError as exc:  # root, yet not allowed: e.g. a container without CAP_SYS_ADMIN
            pytest.skip(f"network namespaces are not available here: {exc}")
        return handle

    def teardown(self) -> None:
        from portkit.errors import PortkitError
        from portkit.lab import build, state

        errors: list[str] = []
        for h in reversed(self.handles):
            h.kill_popens()
            if state.read(h.name) is None:
                continue
            try:
                result = build.down(h.name)
            except PortkitError as exc:
                errors.append(f"{h.name}: {exc}")
                continue
            if result.lingering:
                warnings.warn(
                    f"lab {h.name}: processes {list(result.lingering)} still run inside its namespaces after "
                    "teardown (start them with LabHandle.popen so they are killed)",
                    stacklevel=1,
                )
        self.handles.clear()
        if errors:
            raise RuntimeError("lab teardown failed: " + "; ".join(errors))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove any lab of this session that a fixture could not tear down (and say so)."""
    if not _CREATED:
        return
    from portkit.errors import PortkitError
    from portkit.lab import build, state

    for name in sorted(_CREATED):
        if state.read(name) is None:
            continue
        try:
            build.down(name)
            sys.stderr.write(f"\nportkit lab plugin: removed lab {name} left behind by a test\n")
        except PortkitError as exc:
            sys.stderr.write(f"\nportkit lab plugin: could not remove lab {name}: {exc}\n")
    _CREATED.clear()


@pytest.fixture
def lab() -> Iterator[LabFactory]:
    """Factory: ``lab(scenario) -> LabHandle``; every lab is torn down after the test."""
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.teardown()


@pytest.fixture(scope="module")
def lab_module() -> Iterator[LabFactory]:
    """Like ``lab`` but the labs live for the whole test module."""
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.teardown()
