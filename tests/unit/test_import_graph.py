"""The import graph: a declared DAG over portkit's packages, and every module importable alone.

Every import statement counts: absolute (``portkit.x``), relative (``from . import``,
``from ..x``), inside functions (lazy imports) and under ``if TYPE_CHECKING:``. A lazy
import is still a dependency (it only moves the cost), and a TYPE_CHECKING import that
points upwards is a cycle that the type checker sees and the interpreter does not.

The layers (docs/architecture.md draws them)::

    portkit, errors, i18n, model          leaves
    registry  <- parse <- syntax <- engine     pure (no I/O)
    backends  (OS access)                 model, registry, parse, errors
    drivers   (I/O loops)                 backends + the pure layers
    lab       (network-namespace labs)    drivers, backends + the pure layers
    ops       (orchestration)             everything above, and the only layer that composes
    api, aio  (the library's surface)     ops, model
    render    (output)                    model, engine (pure helpers), i18n
    cli       (argparse)                  api, ops, render, model, engine, i18n
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "portkit"

PURE = frozenset({"model", "registry", "parse", "syntax", "engine"})
_BELOW_ENGINE = frozenset({"model", "registry", "parse", "syntax", "engine", "errors"})

#: What each top-level package (or module) of portkit may import, besides itself.
#: ``portkit`` is the package root (version, schema number; it re-exports api lazily
#: through importlib, which is no import statement and so no edge here).
ALLOWED: Mapping[str, frozenset[str]] = {
    "portkit": frozenset(),
    "errors": frozenset(),
    "i18n": frozenset(),
    "model": frozenset(),
    "registry": frozenset({"model"}),
    "parse": frozenset({"model", "registry", "errors"}),
    # pure text printers (nft rule text): below engine, above parse
    "syntax": frozenset({"model", "registry", "parse", "errors"}),
    "engine": frozenset({"model", "registry", "parse", "syntax", "errors"}),
    "backends": frozenset({"model", "registry", "parse", "errors"}),
    "drivers": _BELOW_ENGINE | {"backends"},
    # lab/ is a sub-application below ops: ops/lab.py composes it, it never calls an op.
    "lab": _BELOW_ENGINE | {"backends", "drivers"},
    # ops writes the why snapshot document itself (``why --facts-out``), so it takes the schema number
    "ops": _BELOW_ENGINE | {"portkit", "backends", "drivers", "lab", "i18n"},
    "api": frozenset({"ops", "model"}),
    "aio": frozenset({"ops", "model"}),
    "render": frozenset({"portkit", "model", "syntax", "engine", "errors", "i18n"}),
    # cli checks argument values with the strict scalar parsers (parse/scalars.py), lighter than engine
    "cli": frozenset({"portkit", "api", "ops", "render", "model", "engine", "parse", "errors", "i18n"}),
    "__main__": frozenset({"cli"}),
}

#: Standard-library modules the pure layers never import: they take bytes, text and time
#: as arguments.
FORBIDDEN_IN_PURE = frozenset({"socket", "asyncio", "subprocess", "time", "select", "selectors", "threading"})


@dataclass(frozen=True)
class Edge:
    importer: str  # dotted module name
    imported: str  # dotted module name (a module when one exists, else the package)
    line: int


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> str:
    """``portkit.ops.firewall`` -> ``ops``; ``portkit.errors`` -> ``errors``; ``portkit`` -> ``portkit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: pathlib.Path, modules: Mapping[str, pathlib.Path]) -> Iterator[Edge]:
    """Every portkit module ``module`` imports, wherever the statement sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "portkit":
                    yield Edge(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            if target.split(".")[0] != "portkit":
                continue
            # `from portkit.ops import firewall` imports the module portkit.ops.firewall
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            yield from (Edge(module, s, node.lineno) for s in subs)
            if len(subs) < len(node.names):
                yield Edge(module, target, node.lineno)


def all_edges() -> list[Edge]:
    modules = all_modules()
    return [e for m, p in modules.items() for e in imports_of(m, p, modules)]


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle in ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


# --------------------------------------------------------------------------- the declared DAG


def test_every_package_is_declared() -> None:
    """A new package must take its place in the DAG before anything may import it."""
    layers = {layer_of(m) for m in all_modules()}
    assert layers <= ALLOWED.keys(), f"not in ALLOWED: {sorted(layers - ALLOWED.keys())}"


def test_declared_dag_has_no_cycles() -> None:
    graph = {k: set(v) for k, v in ALLOWED.items()}
    assert find_cycle(graph) is None, f"ALLOWED has a cycle: {' -> '.join(find_cycle(graph) or [])}"
    for k, v in ALLOWED.items():
        assert v <= ALLOWED.keys(), f"{k} may import undeclared {sorted(v - ALLOWED.keys())}"


def test_pure_layers_import_nothing_with_io() -> None:
    """The pure layers never import an upper layer (the DAG) nor a module that does I/O."""
    for name in PURE:
        assert ALLOWED[name] <= PURE | {"errors"}, name
    bad: list[str] = []
    for module, path in all_modules().items():
        if layer_of(module) not in PURE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            line = getattr(node, "lineno", 0)
            bad += [f"{module}:{line} imports {n}" for n in FORBIDDEN_IN_PURE.intersection(names)]
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- the code holds it


def test_imports_follow_the_declared_dag() -> None:
    bad = [
        f"{e.importer}:{e.line} imports {e.imported} ({layer_of(e.importer)} may import "
        f"{', '.join(sorted(ALLOWED.get(layer_of(e.importer), ()))) or 'nothing of portkit'})"
        for e in all_edges()
        if layer_of(e.importer) != layer_of(e.imported)
        and layer_of(e.imported) not in ALLOWED.get(layer_of(e.importer), frozenset())
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules() -> None:
    """Lazy and TYPE_CHECKING imports included: a cycle hidden from the interpreter is still one."""
    graph: dict[str, set[str]] = {}
    for e in all_edges():
        if e.importer != e.imported:
            graph.setdefault(e.importer, set()).add(e.imported)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_checker_sees_every_kind_of_import(tmp_path: pathlib.Path) -> None:
    """The collector itself: absolute, relative, lazy and TYPE_CHECKING imports are all found."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "import portkit.model.probe\n"
        "from . import nft\n"
        "from ..ops import firewall\n"
        "from ..model.firewall import Policy\n"
        "if TYPE_CHECKING:\n"
        "    from portkit.drivers.trace import trace\n"
        "def f() -> None:\n"
        "    from portkit.render import why\n"
    )
    path = tmp_path / "x.py"
    path.write_text(text)
    modules = dict.fromkeys(
        ["portkit.backends.nft", "portkit.ops.firewall", "portkit.model.firewall", "portkit.render.why"],
        path,
    )
    got = {e.imported for e in imports_of("portkit.backends.x", path, modules)}
    assert got == {
        "portkit.model.probe",
        "portkit.backends.nft",
        "portkit.ops.firewall",
        "portkit.model.firewall",
        "portkit.drivers.trace",
        "portkit.render.why",
    }
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


# --------------------------------------------------------------------------- each module alone


def _importable() -> list[str]:
    # portkit.__main__ runs the CLI when imported: it is checked by `python -m portkit` below.
    return [m for m in all_modules() if m != "portkit.__main__"]


@pytest.mark.parametrize("module", _importable())
def test_module_imports_alone(module: str) -> None:
    """Each module imports in a fresh interpreter, with nothing imported before it."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr[-2000:]}"


def test_main_module_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "portkit", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
