"""The cancel flag a long operation polls: anything with ``is_set()`` (a threading.Event).

Data only: the operation stops, with a partial result marked interrupted, once it is set.
"""

from __future__ import annotations

from typing import Protocol


class Cancel(Protocol):
    """Anything with ``is_set()`` (a threading.Event): the scan stops, partial, when set."""

    def is_set(self) -> bool: ...
