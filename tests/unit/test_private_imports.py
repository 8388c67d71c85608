"""No module imports another module's private (``_``-prefixed) name.

A leading underscore says "used only here"; importing it elsewhere hides a dependency
the owner does not know about. The scan covers every module under src/portkit: absolute
(``from portkit.x import _y``) and relative (``from .x import _y``) imports, at module
level or inside functions, and a private name reached through an imported module
(``nftb._run``). Dunder names (``__version__``) are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "portkit"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path, root: Path = SRC) -> list[str]:
    """``file:line: from X import _name`` for each private name imported from another module
    (``root``: the directory that holds the ``portkit`` package)."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    imported: dict[str, str] = {}  # local name -> the portkit module or name it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "portkit":
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolve(module, path.name == "__init__.py", node)
        if source != "portkit" and not source.startswith("portkit."):
            continue
        for alias in node.names:
            # "from portkit.x import _y" takes _y from x (a name, or a private submodule)
            if _is_private(alias.name) and source != module:
                found.append(f"{path.relative_to(root)}:{node.lineno}: from {source} import {alias.name}")
            imported[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        # "from portkit.backends import nft as nftb" ... "nftb._run()": the same thing by another path
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            dotted = _dotted(node.value)
            head = dotted.split(".")[0] if dotted else ""
            if dotted and head in imported:
                target = imported[head] + dotted[len(head) :] if head != "portkit" else dotted
                found.append(f"{path.relative_to(root)}:{node.lineno}: {target}.{node.attr}")
    return found


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_every_module() -> None:
    assert len(MODULES) > 50 and PACKAGE / "errors.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_across_modules(path: Path) -> None:
    assert private_imports(path) == []


def test_the_scan_finds_private_imports(tmp_path: Path) -> None:
    """The checker itself: absolute, relative and function-level imports are caught."""
    pkg = tmp_path / "portkit" / "engine"
    pkg.mkdir(parents=True)
    (tmp_path / "portkit" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    bad = pkg / "bad.py"
    bad.write_text(
        "from portkit.engine.nftmatch import _addr, proto_number\n"
        "from .nftmatch import _contains\n"
        "from . import _helpers\n"
        "from portkit.model.firewall import __all__\n"
        "from portkit.backends import nft as nftb\n"
        "import portkit.parse.nftjson\n"
        "def f() -> None:\n"
        "    from ..parse.nftjson import _compact\n"
        "    nftb._run(proto_number.__name__, portkit.parse.nftjson._compact)\n"
    )
    assert private_imports(bad, tmp_path) == [
        "portkit/engine/bad.py:1: from portkit.engine.nftmatch import _addr",
        "portkit/engine/bad.py:2: from portkit.engine.nftmatch import _contains",
        "portkit/engine/bad.py:3: from portkit.engine import _helpers",
        "portkit/engine/bad.py:8: from portkit.parse.nftjson import _compact",
        "portkit/engine/bad.py:9: portkit.backends.nft._run",
        "portkit/engine/bad.py:9: portkit.parse.nftjson._compact",
    ]
