"""The library's public functions; each returns model objects (frozen dataclasses).

The CLI is a thin layer on these. Implementations live in :mod:`portkit.ops`, one module
per domain; this module only re-exports them so the public surface is in one place.
"""

from __future__ import annotations

from portkit.ops import firewall as _fw
from portkit.ops import forward as _fwd
from portkit.ops import inspect as _inspect
from portkit.ops import lab as _lab
from portkit.ops import probe as _probe
from portkit.ops import why as _why
from portkit.ops.firewall import *  # noqa: F403
from portkit.ops.forward import *  # noqa: F403
from portkit.ops.inspect import *  # noqa: F403
from portkit.ops.lab import *  # noqa: F403
from portkit.ops.probe import *  # noqa: F403
from portkit.ops.why import *  # noqa: F403

__all__ = [*_inspect.__all__, *_probe.__all__, *_fw.__all__, *_fwd.__all__, *_why.__all__, *_lab.__all__]
