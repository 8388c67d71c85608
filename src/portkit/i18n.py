"""Human-readable text in English and Korean (and any language a translator adds).

Text is marked with :func:`portkit.model.text.N_` where it is defined (a template with ``{named}``
placeholders) and carried as a :class:`Message`; the English rendering goes into JSON
(scripts never depend on the locale), the localized rendering into tables and stories.
Catalogs are gettext ``.po`` files under ``portkit/locale/<lang>/LC_MESSAGES/portkit.po``,
compiled to ``.mo`` when the package is built.

    msg = Message(N_("{port}/{proto} is exposed on all interfaces"), {"port": 3306, "proto": "tcp"})
    msg.english()            # for JSON
    msg.render(tr)           # tr = translator("ko")
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

DOMAIN = "portkit"
LOCALE_DIR = os.path.join(os.path.dirname(__file__), "locale")
LANGUAGES = ("en", "ko")

Translator = Callable[[str], str]


def detect_lang(explicit: str | None = None) -> str:
    """--lang wins; else LANGUAGE / LC_ALL / LC_MESSAGES / LANG (ko_KR.UTF-8 -> ko); else en."""
    if explicit:
        return explicit
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        val = os.environ.get(var)
        if val:
            code = val.split(":")[0].split(".")[0].split("_")[0].lower()
            if code in ("c", "posix"):
                return "en"
            return code
    return "en"


@lru_cache(maxsize=8)
def translator(lang: str | None = None) -> Translator:
    """The gettext function for ``lang`` (English, i.e. identity, when there is no catalog)."""
    code = detect_lang(lang)
    if code == "en":
        return lambda s: s
    tr = gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[code], fallback=True)
    return tr.gettext


@dataclass(frozen=True, slots=True)
class Message:
    """A translatable template plus its parameters."""

    template: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def render(self, tr: Translator) -> str:
        return tr(self.template).format(**self.params)

    def english(self) -> str:
        return self.template.format(**self.params)
