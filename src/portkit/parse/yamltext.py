"""YAML text -> a node tree, with syntax errors as one ``file:line`` FileFormatError.

Composing (not constructing) keeps each node's ``start_mark``, so the callers (the lab
scenario, the firewall policy, the forward config) can name the line of every later
problem too. PyYAML is imported by the caller's first use, never at CLI start-up.

Limits, because every file portkit reads may come from someone else and portkit runs as
root: the composer counts the nesting depth on each node event and stops at
:data:`MAX_DEPTH` before recursing further (a 5,000-deep ``[[[`` never reaches Python's
recursion limit); the composed graph is then measured as its readers will walk it, with
every alias expanded: a recursive alias (``&a [*a]``) is refused, and so is a graph that
expands to more than :data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels (an alias bomb
is refused in milliseconds instead of filling memory).
"""

from __future__ import annotations

from typing import Any

import yaml

from portkit.errors import FileFormatError

MAX_DEPTH = 64  # nesting levels of collections, aliases expanded
MAX_NODES = 100_000  # nodes of the document with every alias expanded


class _Limit(Exception):
    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


_LIMITED: dict[type[Any], type[Any]] = {}


def _limited(base: type[Any]) -> type[Any]:
    """``base`` (a pure-Python PyYAML loader) with a composer that stops at MAX_DEPTH."""
    cls = _LIMITED.get(base)
    if cls is None:
        cls = _LIMITED[base] = _make_limited(base)
    return cls


def _make_limited(base: type[Any]) -> type[Any]:
    class Limited(base):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.pk_depth = 0

        def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
            if self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)  # type: ignore[no-any-return]
            self.pk_depth += 1
            try:
                if self.pk_depth > MAX_DEPTH:
                    raise _Limit(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
                return super().compose_node(parent, index)  # type: ignore[no-any-return]
            finally:
                self.pk_depth -= 1

    return Limited


def _pure(loader: type[Any] | None) -> type[Any]:
    """The pure-Python loader for ``loader``: the C loaders compose recursively in C and
    cannot be limited, so CSafeLoader is read as SafeLoader, CBaseLoader as BaseLoader."""
    if loader is None:
        return yaml.SafeLoader
    if issubclass(loader, yaml.composer.Composer):
        return loader
    return yaml.BaseLoader if "Base" in loader.__name__ else yaml.SafeLoader


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_graph(root: yaml.Node) -> None:
    """Refuse a recursive alias, and a graph that expands beyond MAX_NODES or MAX_DEPTH.

    Memoised per node, so a bomb of ten aliases of ten aliases costs ten steps, not 10**10.
    """
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    on_path: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in on_path:
            raise _Limit("a YAML alias refers to a node that contains it (a recursive structure)", node.start_mark)
        got = memo.get(key)
        if got is None:
            if depth > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", node.start_mark)
            on_path.add(key)
            size, height = 1, 0
            for child in _children(node):
                csize, cheight = walk(child, depth + 1)
                size += csize
                height = max(height, cheight + 1)
                if size > MAX_NODES:
                    raise _Limit(
                        f"aliases expand to more than {MAX_NODES} nodes (an alias bomb?)", node.start_mark
                    )
            on_path.discard(key)
            got = memo[key] = (size, height)
        if depth + got[1] > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", node.start_mark)
        return got

    walk(root, 1)


def _fail(path: str, exc: BaseException) -> FileFormatError:
    if isinstance(exc, _Limit):
        line = exc.mark.line + 1 if exc.mark is not None else None
        return FileFormatError(path, f"refused YAML: {exc.problem}", line=line)
    if isinstance(exc, yaml.MarkedYAMLError):
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        return FileFormatError(path, f"not valid YAML: {exc.problem}", line=line)
    if isinstance(exc, RecursionError):  # the limits above make this unreachable; still one line
        return FileFormatError(path, f"refused YAML: nested deeper than {MAX_DEPTH} levels")
    lines = str(exc).splitlines()
    return FileFormatError(path, f"not valid YAML: {lines[0] if lines else type(exc).__name__}")


def compose(text: str, path: str, loader: type[Any] | None = None) -> yaml.Node | None:
    """The node tree of ``text`` (None for an empty document), read with ``loader``
    (:class:`yaml.SafeLoader` by default) within the limits above."""
    try:
        reader = _limited(_pure(loader))(text)
    except yaml.YAMLError as exc:
        raise _fail(path, exc) from None
    try:
        node: yaml.Node | None = reader.get_single_node()
        if node is not None:
            check_graph(node)
        return node
    except (yaml.YAMLError, _Limit, RecursionError) as exc:
        raise _fail(path, exc) from None
    finally:
        reader.dispose()


def load(text: str, path: str, loader: type[Any] | None = None) -> Any:
    """``text`` composed within the limits, then constructed by ``loader`` (SafeLoader by
    default; BaseLoader gives strings, lists and dicts only). None for an empty document."""
    try:
        reader = _limited(_pure(loader))(text)
    except yaml.YAMLError as exc:
        raise _fail(path, exc) from None
    try:
        node = reader.get_single_node()
        if node is None:
            return None
        check_graph(node)
        return reader.construct_document(node)
    except (yaml.YAMLError, _Limit, RecursionError) as exc:
        raise _fail(path, exc) from None
    except (ValueError, OverflowError) as exc:  # the constructor: a 5,000-digit int, month 13
        raise FileFormatError(path, f"bad value: {str(exc).split(';')[0]}") from None
    finally:
        reader.dispose()
