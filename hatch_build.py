"""Hatchling build hook: compile the gettext catalogs (.po -> .mo) when the package is built.

The compiled ``.mo`` files are build output (gitignored). They are written next to their
``.po`` under ``src/portkit/locale/<lang>/LC_MESSAGES/`` so that the editable install
(``pip install -e .``, which points at ``src/``) finds them, and they are declared as build
artifacts so a regular wheel includes them although git ignores them.

Babel's ``read_po``/``write_mo`` do the compiling (babel is a build requirement only);
fuzzy entries are left out, as GNU msgfmt does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def compile_catalog(po_path: Path, mo_path: Path) -> int:
    """Compile one .po file to .mo; returns the number of translated messages."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path.open("rb") as fh:
        catalog = read_po(fh, abort_invalid=True)
    tmp = mo_path.with_suffix(".mo.tmp")
    with tmp.open("wb") as fh:
        write_mo(fh, catalog, use_fuzzy=False)
    tmp.replace(mo_path)  # atomic: a reader never sees half a catalog
    return sum(1 for m in catalog if m.id and m.string and not m.fuzzy)


class CatalogBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        for po in sorted((root / "src" / "portkit" / "locale").glob("*/LC_MESSAGES/*.po")):
            mo = po.with_suffix(".mo")
            compile_catalog(po, mo)
            build_data.setdefault("artifacts", []).append(mo.relative_to(root).as_posix())
