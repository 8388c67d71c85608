"""The firewall domain's shared ground: where the policy file and the apply state live, and
how a policy file is loaded.

Its own module so that :mod:`portkit.ops.firewall` (edits, show), :mod:`portkit.ops.firewall_apply`
(compile, apply, boot) and :mod:`portkit.ops.fwcheck` (one verdict) all import it and none of
them imports another for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from portkit.errors import FileFormatError, PrivilegeError
from portkit.model.firewall import Policy

__all__ = ["DEFAULT_POLICY", "STATE_DIR", "load_policy_file", "policy_services"]

DEFAULT_POLICY = "/etc/portkit/policy.yaml"
STATE_DIR = os.environ.get("PORTKIT_RUN_DIR", "/run/portkit") + "/firewall"


def policy_services() -> Mapping[tuple[str, str], int]:
    """{(name, proto): port} from the inspect domain's registry (/etc/services)."""
    from portkit.backends.services import service_db
    from portkit.registry.services import ports_by_name

    return ports_by_name(service_db().etc)


def load_policy_file(path: str = DEFAULT_POLICY) -> Policy:
    """The policy in ``path``; the defaults when the file does not exist."""
    from portkit.parse.policy_yaml import load_policy

    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return Policy()
    except IsADirectoryError:
        raise FileFormatError(path, "is a directory, not a policy file") from None
    except PermissionError as exc:
        raise PrivilegeError(f"cannot read policy file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    return load_policy(text, path=path, services=policy_services())
