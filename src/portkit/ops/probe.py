"""portkit.api functions for the probe domain."""

from __future__ import annotations

__all__: list[str] = []
