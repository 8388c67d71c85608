"""The firewall domain's shared ground: where the policy file and the apply state live, and
how a policy file is loaded.

Its own module so that :mod:`portkit.ops.firewall` (edits, show), :mod:`portkit.ops.firewall_apply`
(compile, apply, boot) and :mod:`portkit.ops.fwcheck` (one verdict) all import it and none of
them imports another for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from portkit.backends import state
from portkit.model.firewall import Policy

__all__ = ["DEFAULT_POLICY", "STATE_DIR", "check_netns", "load_policy_file", "policy_services"]

#: /etc/portkit/policy.yaml: the policy file in backends/state.py's config_dir(), which
#: ``$PORTKIT_CONFIG_DIR`` moves (read once, at import, like STATE_DIR).
DEFAULT_POLICY = os.path.join(state.config_dir(), "policy.yaml")
STATE_DIR = state.firewall_dir()


def policy_services() -> Mapping[tuple[str, str], int]:
    """{(name, proto): port} from the inspect domain's registry (/etc/services)."""
    from portkit.backends.services import service_db
    from portkit.registry.services import ports_by_name

    return ports_by_name(service_db().etc)


def load_policy_file(path: str = DEFAULT_POLICY, *, missing_ok: bool | None = None) -> Policy:
    """The policy in ``path``; the defaults when the file does not exist and ``missing_ok``.

    ``missing_ok`` None: only the default path may be missing (it means the defaults); a
    file named explicitly must exist, so ``--policy typo.yaml`` never applies the defaults.
    """
    from portkit.backends.files import read_user_file
    from portkit.parse.policy_yaml import load_policy

    if missing_ok is None:
        missing_ok = path == DEFAULT_POLICY
    text = read_user_file(path, "policy file", missing_ok=missing_ok)
    if text is None:
        return Policy()
    return load_policy(text, path=path, services=policy_services())


def check_netns(name: str) -> None:
    """Refuse (exit 2) a --netns that names no namespace, for verbs that do not enter it."""
    from portkit.backends.netns import netns_path

    netns_path(name)
