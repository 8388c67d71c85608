"""Forwards: what to listen on and where to send it, and what a forwarder reports."""

from __future__ import annotations

from dataclasses import dataclass, field


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    """One forward: ``bind:listen_port`` -> ``target_host:target_port`` over ``proto``.

    ``allow``/``deny`` are CIDR blocks (as text) checked against the client address; an
    empty ``allow`` means everyone not denied.
    """

    bind: str
    listen_port: int
    target_host: str
    target_port: int
    proto: str = "tcp"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @property
    def listen(self) -> str:
        return f"{_host_text(self.bind)}:{self.listen_port}"

    @property
    def target(self) -> str:
        return f"{_host_text(self.target_host)}:{self.target_port}"

    @property
    def key(self) -> tuple[str, int, str]:
        """What identifies a listener: two forwards with one key cannot coexist."""
        return (self.bind, self.listen_port, self.proto)

    def __str__(self) -> str:
        return f"{self.listen}:{self.target}/{self.proto}"


PIPE_SIZE_MIN = 4096  # one page: the kernel rounds smaller sizes up to it
PIPE_SIZE_MAX = 1 << 31  # above it F_SETPIPE_SZ is EINVAL; /proc/sys/fs/pipe-max-size binds non-root


@dataclass(frozen=True, slots=True)
class ForwardOptions:
    """Knobs of the userspace forwarder (defaults are what `portkit forward` uses)."""

    connect_timeout: float = 5.0
    udp_idle_timeout: float = 60.0
    udp_max_sessions: int = 4096
    drain: float = 10.0
    pipe_size: int = 1 << 20


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """A whole ``--config`` file: forwards plus options."""

    forwards: tuple[ForwardSpec, ...]
    options: ForwardOptions = field(default_factory=ForwardOptions)


@dataclass(frozen=True, slots=True)
class KernelForward:
    """A forward installed as nftables DNAT (``portkit forward --kernel``), as kept in /run/portkit."""

    spec: str
    proto: str
    listen_port: int
    target_host: str
    target_port: int
    family: int
    local: bool
    masquerade: bool
    netns: str | None


@dataclass(frozen=True, slots=True)
class KernelForwardRow:
    """One kernel forward as ``forward --list --kernel`` shows it."""

    spec: str
    proto: str
    listen: str
    target: str
    local: bool
    masquerade: bool
    installed: bool
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    netns: str | None


@dataclass(frozen=True, slots=True)
class KernelForwardResult:
    action: str  # "added" | "removed" | "list" | "confirmed"
    forwards: tuple[KernelForwardRow, ...]
    changed: tuple[str, ...]
    warnings: tuple[str, ...]
    rollback_in_s: float | None
    netns: str | None
