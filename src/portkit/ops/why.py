"""portkit.api functions for the why domain."""

from __future__ import annotations

__all__: list[str] = []
