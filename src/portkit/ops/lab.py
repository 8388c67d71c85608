"""portkit.api functions for the lab domain."""

from __future__ import annotations

__all__: list[str] = []
