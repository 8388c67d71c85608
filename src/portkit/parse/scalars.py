"""The scalar values users type, checked strictly: ports, numbers, interface names.

Pure, and below every parser: the CLI (through :mod:`portkit.engine.endpoint`, which
re-exports these), the policy reader and the forward specs all call the same functions, so
a port is the same thing wherever it is typed.

* a port is 1-5 ASCII digits (``str.isdigit`` would take ``'²'``, Arabic-Indic and
  full-width digits, and ``int()`` of a 4,300-digit string raises): :func:`parse_port`;
* a number is ASCII digits with at most one point, no sign, exponent, NaN or infinity:
  :func:`parse_number`;
* an interface name follows the kernel's ``dev_valid_name`` (1-15 bytes, not ``.`` or
  ``..``) with a conservative character set ``[A-Za-z0-9_.@-]``; a pattern may end in
  ``*``: :func:`check_ifname`.
"""

from __future__ import annotations

import re

from portkit.errors import InputError, PortSpecError

__all__ = [
    "IFNAME_MAX",
    "MAX_PORT_DIGITS",
    "check_ifname",
    "is_ascii_number",
    "is_ifname",
    "parse_number",
    "parse_port",
    "shown",
]

MAX_PORT_DIGITS = 5  # "65535"; "00080" is still a port, "000080" is refused unread
IFNAME_MAX = 15  # IFNAMSIZ (16) less the terminating NUL
_ASCII_DIGITS = re.compile(r"[0-9]+")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


def shown(text: str, limit: int = 64) -> str:
    """``text`` for an error message: cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[: limit // 2]}... ({len(text)} characters)"


def is_ascii_number(text: str) -> bool:
    """True for ``"0"``-``"9"`` digits only: no sign, no space, no Unicode digits."""
    return _ASCII_DIGITS.fullmatch(text) is not None


def parse_port(text: str, *, where: str = "", allow_zero: bool = False) -> int:
    """``"80"`` -> 80. Ports are 1-65535 (0-65535 with ``allow_zero``), written in ASCII
    digits, at most :data:`MAX_PORT_DIGITS` of them. Only surrounding spaces are stripped.
    ``where`` names the context in errors."""
    low = 0 if allow_zero else 1
    t = text.strip(" ")
    if not is_ascii_number(t) or len(t) > MAX_PORT_DIGITS:
        raise PortSpecError(
            f"invalid port {shown(text)!r}{where}: a port is a number from {low} to 65535 (ASCII digits)"
        )
    n = int(t)
    if not low <= n <= 65535:
        raise PortSpecError(f"invalid port {n}{where}: ports are {low}-65535")
    return n


_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20}")


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def parse_number(
    text: str,
    *,
    what: str,
    low: float,
    high: float,
    integer: bool = False,
    low_open: bool = False,
    unit: str = "",
) -> float:
    """A number the user typed, within [low, high] (``low_open``: above ``low``).

    ASCII digits only (with one '.' unless ``integer``): no sign, no exponent, no NaN or
    infinity, no Unicode digits, at most 20 digits on each side of the point. The error
    names the value and the valid range.
    """
    t = text.strip(" ")
    sep = ">" if low_open else ">="
    span = f"above {_num(low)}" if low_open else _num(low)
    rng = f"{span} and at most {_num(high)}" if low_open else f"{span}-{_num(high)}"
    suffix = f" {unit}" if unit else ""
    kind = "a whole number" if integer else "a number"
    ok = is_ascii_number(t) and len(t) <= 20 if integer else _DECIMAL.fullmatch(t) is not None
    if not ok:
        raise InputError(f"invalid {what} {shown(text)!r}: give {kind} {rng}{suffix}")
    value = float(int(t)) if integer else float(t)
    if not (value > low if sep == ">" else value >= low) or value > high:
        raise InputError(f"invalid {what} {shown(text)!r}: must be {rng}{suffix}")
    return value


def is_ifname(text: str) -> bool:
    """True for a name :func:`check_ifname` takes (no pattern)."""
    return _IFNAME_RE.fullmatch(text) is not None and text not in (".", "..")


def check_ifname(text: str, *, what: str = "interface name", pattern: bool = False) -> str:
    """An interface name as the kernel takes it (``dev_valid_name``): 1-15 characters of
    ``[A-Za-z0-9_.@-]``, not ``.`` or ``..``. With ``pattern``, a trailing ``*`` matches
    every name with that prefix (``veth*``)."""
    stem = text[:-1] if pattern and text.endswith("*") else text
    if _IFNAME_RE.fullmatch(stem) is not None and stem not in (".", ".."):
        return text
    star = " (a trailing * matches a prefix)" if pattern else ""
    raise InputError(
        f"invalid {what} {shown(text)!r}: 1-{IFNAME_MAX} characters of letters, digits, '_', '.', '@', '-'{star}"
    )
