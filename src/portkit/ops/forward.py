"""portkit.api functions for the forward domain."""

from __future__ import annotations

__all__: list[str] = []
