"""Translatable text as the model carries it: the :class:`Localizable` protocol and ``N_``.

model/ imports nothing of portkit but model, so a result holds its human text through a
structural type; :class:`portkit.i18n.Message` (a template plus parameters) satisfies it.
``N_`` marks a template where it is defined so the catalogs can pick it up
(``xgettext --keyword=N_``) without translating it then; every layer marks text with this
one function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Localizable(Protocol):
    """A text that renders in English (JSON) or in the user's language (tables)."""

    def english(self) -> str: ...

    def render(self, tr: Callable[[str], str]) -> str: ...


def N_(template: str) -> str:
    """Mark a template for extraction without translating it now."""
    return template
