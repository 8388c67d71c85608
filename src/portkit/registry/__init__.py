"""Port facts: number classes, service names, portkit's table of common ports, exposure.

Pure: files (``/etc/services``, ``nmap-services``, the ephemeral range) are read by
:mod:`portkit.backends.services` and passed in as text or values.
"""

from __future__ import annotations

from portkit.registry.exposure import exposure
from portkit.registry.ports import (
    COMMON_PORTS,
    LINUX_DEFAULT_EPHEMERAL,
    CommonPort,
    common_port,
    port_class,
    sensitive_category,
)
from portkit.registry.services import ServiceDb, ServiceRecord, service_name

__all__ = [
    "COMMON_PORTS",
    "LINUX_DEFAULT_EPHEMERAL",
    "CommonPort",
    "ServiceDb",
    "ServiceRecord",
    "common_port",
    "exposure",
    "port_class",
    "sensitive_category",
    "service_name",
]
