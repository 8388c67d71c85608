"""``portkit.check`` and ``portkit.scan`` as coroutines, for asyncio programs.

    import asyncio, portkit.aio
    report = asyncio.run(portkit.aio.scan(["10.0.0.2"], ports="1-1024"))

Why a thread and not an asyncio-native engine: the scanner's hot loop is a plain epoll
loop because asyncio's per-probe machinery (a task or future per port) measured 4-5x
slower than the kernel work it wraps. Running that loop in a worker thread keeps the
event loop free (the loop spends its time in syscalls, which release the GIL) and gives
asyncio programs identical results. Cancelling the coroutine stops the scan within one
poll interval; the report gathered so far is discarded with the cancellation.

Inside an asyncio program the scan runs in one process (``processes=1`` by default):
forking a process that runs an event loop and other threads is not safe.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence
from typing import Any

from portkit.model.probe import CheckReport, Endpoint, ScanReport
from portkit.ops import probe as _probe

__all__ = ["check", "scan"]


async def check(endpoints: Sequence[str | Endpoint], **kwargs: Any) -> CheckReport:
    """Like :func:`portkit.check`, awaited. Keyword arguments are the same."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(_probe.check, endpoints, **kwargs))


async def scan(targets: Sequence[str], **kwargs: Any) -> ScanReport:
    """Like :func:`portkit.scan`, awaited; cancelling it stops the scan."""
    kwargs.setdefault("processes", 1)
    cancel = threading.Event()
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, functools.partial(_probe.scan, targets, cancel=cancel, **kwargs))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        cancel.set()
        raise
