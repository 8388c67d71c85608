"""Setting up the userspace forwarder: SPECs and a ``--config`` file become one list of
forwards and one set of options, and the forwarder is served, in a namespace if asked.

``portkit forward`` calls :func:`forward_setup` at start and again on SIGHUP (the config
file is re-read), so a reload validates exactly as a start does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from portkit.engine.forwardspec import check_unique, parse_config
from portkit.errors import FileFormatError
from portkit.model.forward import ForwardConfig, ForwardOptions, ForwardSpec
from portkit.ops.forward import forward_specs, run_forwarder

__all__ = ["forward_setup", "load_forward_config", "serve_forwards"]


def load_forward_config(path: str) -> ForwardConfig:
    """The forwards and options of a ``--config`` YAML file (FileFormatError naming the line)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise FileFormatError(path, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text file; a forward config is YAML text (UTF-8)") from None
    return parse_config(text, path)


def forward_setup(
    texts: Sequence[str],
    *,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    config: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[list[ForwardSpec], ForwardOptions]:
    """SPECs plus the config file's forwards (each listen address once), and the config's
    options with ``overrides`` (ForwardOptions field names) on top."""
    specs = list(forward_specs(texts, allow=allow, deny=deny))
    options = ForwardOptions()
    if config:
        cfg = load_forward_config(config)
        specs += list(cfg.forwards)
        options = cfg.options
    check_unique(specs)
    if overrides:
        options = dataclasses.replace(options, **overrides)
    return specs, options


def serve_forwards(
    specs: Sequence[ForwardSpec], options: ForwardOptions, *, netns: str | None = None, **kwargs: Any
) -> None:
    """:func:`~portkit.ops.forward.run_forwarder` (same keywords), with the calling thread
    moved into ``netns`` first when one is named: the main thread, where signals arrive."""
    if not netns:
        run_forwarder(specs, options, **kwargs)
        return
    from portkit.backends.netns import entered, netns_path

    with entered(netns_path(netns)):
        run_forwarder(specs, options, **kwargs)
