"""Where rendered output goes: stdout, as JSON or as text, colour decided once."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from portkit.render.jsonout import dumps


def want_color(stream: TextIO, mode: str = "auto") -> bool:
    """Colour on a TTY only, unless forced; NO_COLOR (no-color.org) turns it off."""
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class Output:
    json: bool = False
    color: bool = False
    stream: TextIO = sys.stdout

    @classmethod
    def from_args(cls, args: Any, stream: TextIO | None = None) -> Output:
        s = stream or sys.stdout
        as_json = bool(getattr(args, "json", False))
        mode = getattr(args, "color", "auto") or "auto"
        return cls(json=as_json, color=(not as_json) and want_color(s, mode), stream=s)

    def emit_json(self, doc: Mapping[str, Any]) -> None:
        pretty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.stream.write(dumps(doc, pretty=pretty))
        self.stream.write("\n")
        self.stream.flush()

    def write(self, text: str) -> None:
        self.stream.write(text)
        if not text.endswith("\n"):
            self.stream.write("\n")
        self.stream.flush()


def warn(message: str) -> None:
    """One line on stderr, prefixed like every portkit diagnostic."""
    sys.stderr.write(f"portkit: warning: {message}\n")
    sys.stderr.flush()
