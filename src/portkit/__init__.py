"""portkit: every practical question about network ports on a host, answered on the real kernel.

The library's public functions live in :mod:`portkit.api` and are re-exported here lazily,
so ``import portkit`` stays cheap (the CLI's start-up depends on it)::

    import portkit
    portkit.check("127.0.0.1:22")
    portkit.scan(["127.0.0.1"], ports="1-1024")

Coroutine versions for asyncio programs are in :mod:`portkit.aio`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

SCHEMA_VERSION = 1


def __getattr__(name: str) -> Any:
    # Lazy re-export of portkit.api's public functions (PEP 562). importlib, not
    # `from portkit import api`, which would look the name up here again and recurse.
    import importlib

    api = importlib.import_module("portkit.api")

    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'portkit' has no attribute {name!r}")
