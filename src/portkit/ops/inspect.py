"""portkit.api functions for the inspect domain."""

from __future__ import annotations

__all__: list[str] = []
