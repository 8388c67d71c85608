"""Implementations behind :mod:`portkit.api`, one module per domain.

Each module defines ``__all__``; :mod:`portkit.api` re-exports them all.
"""
