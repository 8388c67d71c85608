"""YAML text -> a node tree, with syntax errors as one ``file:line`` FileFormatError.

Composing (not constructing) keeps each node's ``start_mark``, so the callers (the lab
scenario, the firewall policy) can name the line of every later problem too. PyYAML is
imported by the caller's first use, never at CLI start-up.
"""

from __future__ import annotations

import yaml

from portkit.errors import FileFormatError


def compose(text: str, path: str, loader: type[yaml.SafeLoader] | None = None) -> yaml.Node | None:
    """The node tree of ``text`` (None for an empty document), read with ``loader``
    (:class:`yaml.SafeLoader` by default)."""
    try:
        return yaml.compose(text, Loader=loader or yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise FileFormatError(path, f"not valid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"not valid YAML: {exc}") from None
