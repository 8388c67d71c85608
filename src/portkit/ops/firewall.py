"""portkit.api functions for the firewall domain."""

from __future__ import annotations

__all__: list[str] = []
