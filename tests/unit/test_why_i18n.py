"""The Korean catalog: every template in the code is translated, placeholders survive, the .mo is built."""

from __future__ import annotations

import ast
import gettext
import pathlib
import re
import string

import pytest

from portkit.i18n import DOMAIN, LOCALE_DIR, Message, detect_lang, translator

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "portkit"
PO = SRC / "locale" / "ko" / "LC_MESSAGES" / "portkit.po"
MO = PO.with_suffix(".mo")


def extract_templates(root: pathlib.Path = SRC) -> dict[str, str]:
    """msgid -> "file:line" for every N_("...") and Message("...", ...) with a literal template."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
            if name not in ("N_", "Message"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value:
                found.setdefault(arg.value, f"{path.relative_to(root)}:{node.lineno}")
    return found


_UNESCAPE = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    body = text.strip()[1:-1]
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), body)


def read_po(path: pathlib.Path) -> dict[str, tuple[str, bool]]:
    """msgid -> (msgstr, fuzzy) of a .po file (the subset of the format portkit's catalogs use)."""
    entries: dict[str, tuple[str, bool]] = {}
    msgid: list[str] = []
    msgstr: list[str] = []
    fuzzy = False
    current: list[str] | None = None

    def flush() -> None:
        nonlocal fuzzy
        if msgid or msgstr:
            entries["".join(msgid)] = ("".join(msgstr), fuzzy)
        msgid.clear()
        msgstr.clear()
        fuzzy = False

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#,") and "fuzzy" in line:
            if msgstr:
                flush()
            fuzzy = True
        elif line.startswith("msgid "):
            if msgstr:
                flush()
            current = msgid
            msgid.append(_unquote(line[6:]))
        elif line.startswith("msgstr "):
            current = msgstr
            msgstr.append(_unquote(line[7:]))
        elif line.startswith('"') and current is not None:
            current.append(_unquote(line))
    flush()
    entries.pop("", None)  # the header
    return entries


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_template_in_the_code_has_a_korean_translation() -> None:
    catalog = read_po(PO)
    missing = [
        f"{where}: {t!r}" for t, where in extract_templates().items() if not catalog.get(t, ("", False))[0]
    ]
    assert not missing, "untranslated (add them to locale/ko/LC_MESSAGES/portkit.po):\n" + "\n".join(missing)


def test_translations_keep_the_placeholders() -> None:
    bad = [
        f"{msgid!r} -> {msgstr!r}"
        for msgid, (msgstr, _) in read_po(PO).items()
        if msgstr and _fields(msgid) != _fields(msgstr)
    ]
    assert not bad, "placeholders differ:\n" + "\n".join(bad)


def test_no_fuzzy_or_stale_entries() -> None:
    catalog = read_po(PO)
    assert not [m for m, (_, fuzzy) in catalog.items() if fuzzy]
    used = extract_templates()
    stale = sorted(set(catalog) - set(used))
    assert not stale, "entries no code uses any more:\n" + "\n".join(stale)


def test_compiled_catalog_matches_the_po() -> None:
    """The .mo is built by hatch_build.py at install time (pip install -e . runs it)."""
    assert MO.exists(), "portkit.mo is missing: run `pip install -e .` (the build hook compiles it)"
    mo = gettext.GNUTranslations(MO.open("rb"))
    stale = [m for m, (s, _) in read_po(PO).items() if s and mo.gettext(m) != s]
    assert not stale, f"{len(stale)} entries differ from the .po: rebuild with `pip install -e .`"


def test_translator_and_detect_lang(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    assert detect_lang(None) == "ko"
    assert detect_lang("en") == "en"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert detect_lang(None) == "en"
    ko = translator("ko")
    m = Message("verdict: reachable", {})
    assert m.render(ko) != m.english() == "verdict: reachable"
    assert pathlib.Path(LOCALE_DIR, "ko", "LC_MESSAGES", f"{DOMAIN}.mo").exists()
