"""The cache of parsed rulesets: one pickle per (namespace cookie, generation id, parser).

A ruleset is parsed once per nftables generation: ``fw check`` after ``fw check`` reads the
pickle instead of the kernel's dumps. Only files that are ours and private are read back
(a pickle is code), and a file name carries a stamp of the parser modules, so a cache written
by another version of the parser (an upgrade while the machine runs) is never read. At most
8 files are kept.
"""

from __future__ import annotations

import os
import stat

from portkit.backends import state
from portkit.errors import SystemRefused
from portkit.model.firewall import NftRuleset

__all__ = ["CACHE_DIR", "load", "parser_stamp", "path_for", "store"]

CACHE_DIR = state.cache_dir()


def path_for(key: str) -> str:
    """The cache file of the ruleset known by ``key`` (cookie and generation), for this parser."""
    return os.path.join(CACHE_DIR, f"ruleset-{key}-{parser_stamp()}.pickle")


def parser_stamp() -> str:
    """Names the code that parsed a cached ruleset: a cache written by another version of
    the parser (an upgrade while the machine runs) must not be read back."""
    import zlib

    from portkit.model import firewall as model
    from portkit.parse import (
        iptables_save,
        netlink_tlv,
        nftconst,
        nftdecompile,
        nftexpr,
        nftjson,
        nftnetlink,
        nftvalues,
    )

    parts = []
    for mod in (model, nftjson, nftnetlink, nftdecompile, nftexpr, nftconst, nftvalues, netlink_tlv, iptables_save):
        try:
            st = os.stat(mod.__file__ or "")
            parts.append(f"{mod.__name__}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:  # a module without a file (zipapp): its name alone keys the cache
            parts.append(mod.__name__)
    return f"{zlib.crc32(';'.join(parts).encode()):08x}"


def load(path: str) -> NftRuleset | None:
    import pickle

    try:
        fd = state.open_state(path)
    except (OSError, SystemRefused):
        return None  # a cache that is missing or not trusted only costs time
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            return None  # only our own private files are trusted
        try:
            obj = pickle.load(f)
        except Exception:
            return None
    return obj if isinstance(obj, NftRuleset) else None


def store(path: str, rs: NftRuleset) -> None:
    import pickle

    try:
        state.make_dir(CACHE_DIR, 0o700)
        state.write_file(path, pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL), 0o600)
        olds = sorted((os.path.join(CACHE_DIR, n) for n in os.listdir(CACHE_DIR) if n.startswith("ruleset-")), key=os.path.getmtime)
        for old in olds[:-8]:
            os.unlink(old)
    except (OSError, SystemRefused):
        pass  # a cache that cannot be written only costs time
