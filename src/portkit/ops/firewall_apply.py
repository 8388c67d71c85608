"""fw compile/apply/confirm/reset/status/enable/disable: loading the policy safely.

Split from :mod:`portkit.ops.firewall` (which re-exports everything here). The policy is
loaded as table ``inet portkit`` in one ``nft -f`` transaction; the previous table is kept
under /run/portkit/firewall and, with ``confirm``, restored by a detached rollback timer
(:mod:`portkit.backends.rollback`) unless :func:`confirm_apply` comes in time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
from typing import Any

from portkit.backends import nft as nftb
from portkit.backends import rollback, state
from portkit.backends.files import check_path_text
from portkit.engine import nftcompile
from portkit.engine.policy import evaluate_policy, shadowed_rules
from portkit.errors import (
    FileFormatError,
    InputError,
    PrivilegeError,
    SystemRefused,
    map_file_error,
    map_os_error,
)
from portkit.model.firewall import ApplyResult, FwStatus, Policy, PolicyWarning
from portkit.ops.firewall_policy import DEFAULT_POLICY, STATE_DIR, load_policy_file
from portkit.ops.fwcheck import make_packet

UNIT_NAME = "portkit-firewall.service"
UNIT_DIR = "/etc/systemd/system"
# The same text as contrib/systemd/portkit-firewall.service (a test keeps them equal), for
# installs without the source tree.
UNIT_TEMPLATE = """\
# Installed by `portkit fw enable` (which writes the interpreter that runs portkit in place
# of `/usr/bin/env portkit`), removed by `portkit fw disable`.
# Applies the portkit firewall policy (table inet portkit) at boot, before the network is up.
[Unit]
Description=portkit firewall policy (table inet portkit)
Documentation=https://github.com/portkit/portkit/blob/main/docs/firewall.md
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/env portkit fw apply --force --policy /etc/portkit/policy.yaml
ExecStop=-/usr/bin/env portkit fw reset

[Install]
WantedBy=multi-user.target
"""


# --------------------------------------------------------------------------- compile and apply


def compile_policy_file(path: str = DEFAULT_POLICY) -> str:
    return nftcompile.compile_ruleset(load_policy_file(path), source=path).script


def check_file_mode(path: str) -> None:
    """Refuse a policy file others may write (as sshd refuses loose key files), and a path
    with control characters (it would end up in the script's comment and the boot unit)."""
    check_path_text(path, "policy file")
    try:
        st = os.stat(path)
    except PermissionError as exc:
        raise map_file_error(exc, path, "policy file") from exc
    except OSError:  # missing, a symlink loop, below a file: reading it says which, exit 2
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise InputError(
            f"refusing policy file {path}: mode {mode:04o} lets users other than its owner and root write it",
            hint=f"chmod go-w {path}",
        )


def ssh_lockout(policy: Policy, ssh_connection: str | None) -> str | None:
    """A reason to refuse when the policy would not let this SSH session's port in again.

    Fails closed: an SSH_CONNECTION that is set but cannot be read is a reason too, since
    then nobody can tell whether the session would survive.
    """
    if ssh_connection is None or not ssh_connection.strip():
        return None
    malformed = (
        f"SSH_CONNECTION is set but malformed ({ssh_connection!r}; expected 'CLIENT-IP CLIENT-PORT SERVER-IP "
        "SERVER-PORT'), so portkit cannot tell whether this SSH session would be locked out"
    )
    parts = ssh_connection.split()
    if len(parts) != 4:
        return malformed
    client, cport, server, sport = parts
    if not all(p.isascii() and p.isdigit() and len(p) <= 5 and 1 <= int(p) <= 65535 for p in (cport, sport)):
        return malformed
    try:
        ipaddress.ip_address(client.split("%")[0])
        ipaddress.ip_address(server.split("%")[0])
        pkt = make_packet(hook="in", proto="tcp", src=client.split("%")[0], dst=server.split("%")[0], dport=int(sport))
    except (InputError, ValueError):
        return malformed
    result = evaluate_policy(policy, pkt)
    if result.verdict == "accept":
        return None
    return (
        f"this SSH session ({client} -> {server} port {sport}) would be locked out: the policy says "
        f"{result.verdict} ({result.decided_by.rule if result.decided_by else 'default'})"
    )


def _state_name(netns: str | None) -> str:
    """Per-namespace state is filed by the namespace's identity, not by the name it was
    entered by: two namespaces entered with ``ip netns exec`` never share a rollback."""
    from portkit.backends.netns import state_key

    return f"firewall-{state_key(netns)}"


def apply_policy(
    path: str = DEFAULT_POLICY,
    *,
    netns: str | None = None,
    confirm: float | None = None,
    force: bool = False,
    ssh_connection: str | None = None,
) -> ApplyResult:
    """Load the policy as table ``inet portkit`` in one transaction; keep the previous table.

    ``ssh_connection`` defaults to $SSH_CONNECTION for the host (not inside a namespace).
    With ``confirm`` seconds, the previous table comes back unless :func:`confirm_apply`.
    """
    # before anything is read or written: a bad timeout must not cost the kept previous table
    if confirm is not None and not 1 <= confirm <= 86400:  # NaN fails the comparison too
        raise InputError(f"bad confirmation timeout {confirm!r} s; use 1-86400 seconds")
    check_file_mode(path)
    policy = load_policy_file(path)
    if ssh_connection is None and netns is None:
        ssh_connection = os.environ.get("SSH_CONNECTION")
    if not force:
        reason = ssh_lockout(policy, ssh_connection)
        if reason:
            raise InputError(reason, hint="add a rule allowing it, or use --force")
    compiled = nftcompile.compile_ruleset(policy, source=path)
    script = compiled.script
    nftb.load_script(script, netns=netns, check_only=True)
    previous = nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns)
    saved = _keep(f"{_state_name(netns)}.previous.nft", nftcompile.restore_script(previous))
    deadline = None
    if confirm is not None:
        st = rollback.arm(_state_name(netns), nftcompile.restore_script(previous), confirm, netns=netns)
        deadline = st.deadline
    else:
        # A timer armed by an earlier 'apply --confirm' still restores the rules from before
        # it (the last state known to be good) unless confirmed: say so, do not hide it.
        pending = rollback.status(_state_name(netns))
        if pending.armed:
            deadline = pending.deadline
    try:
        nftb.load_script(script, netns=netns)
    except Exception:
        if confirm is not None:
            rollback.confirm(_state_name(netns))
        raise
    _keep(f"{_state_name(netns)}.applied.sha256", _sha256(script))
    # what the kernel lists for it now: a rollback or a hand edit later makes 'fw status' see
    # that the loaded table is no longer the applied policy
    with contextlib.suppress(PrivilegeError, SystemRefused):
        _keep(f"{_state_name(netns)}.applied.nft", nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns) or "")
    others: tuple[PolicyWarning, ...] = ()
    with contextlib.suppress(PrivilegeError, SystemRefused):
        others = other_filters(nftb.list_ruleset_json(netns=netns))
    return ApplyResult(True, netns, "inet portkit", compiled.rules, saved, deadline, (*shadowed_rules(policy), *others))


def other_filters(ruleset: dict[str, Any]) -> tuple[PolicyWarning, ...]:
    """One warning per base chain of another table that filters a hook portkit filters too.

    An accept in ``inet portkit`` does not stop a drop or a reject in another table.
    """
    out: list[PolicyWarning] = []
    for item in ruleset.get("nftables", []):
        c = item.get("chain") if isinstance(item, dict) else None
        if not isinstance(c, dict) or c.get("type") != "filter" or c.get("hook") not in ("input", "forward", "output"):
            continue
        if (c.get("family"), c.get("table")) == (nftcompile.FAMILY, nftcompile.TABLE):
            continue
        out.append(
            PolicyWarning(
                None,
                0,
                f"table {c.get('family')} {c.get('table')} also filters the {c.get('hook')} hook "
                f"(chain {c.get('name')}): an accept in inet portkit does not stop its drop or reject",
            )
        )
    return tuple(out)


def _keep(name: str, text: str) -> str | None:
    try:
        state.make_dir(STATE_DIR, 0o700)
        return state.write_file(os.path.join(STATE_DIR, name), text)
    except OSError:  # the kept copy is a convenience: apply goes on without it
        return None


def confirm_apply(*, netns: str | None = None) -> bool:
    """Keep the applied rules: disarm the rollback timer. False if none was pending."""
    nftb.require_net_admin("'fw confirm'")
    return rollback.confirm(_state_name(netns))


def reset_firewall(*, netns: str | None = None) -> bool:
    """Remove table ``inet portkit`` (only it). False if it was not loaded."""
    nftb.require_net_admin("'fw reset'")
    rollback.confirm(_state_name(netns))
    if nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns) is None:
        return False
    nftb.load_script(f"delete table {nftcompile.FAMILY} {nftcompile.TABLE}\n", netns=netns)
    for suffix in (".applied.sha256", ".applied.nft"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(STATE_DIR, f"{_state_name(netns)}{suffix}"))
    return True


def firewall_status(path: str = DEFAULT_POLICY, *, netns: str | None = None, unit_dir: str = UNIT_DIR) -> FwStatus:
    text = nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns)
    rules = 0
    if text is not None:
        from portkit.backends.nftlive import read_live

        live, _load = read_live(netns=netns)  # the kernel's own rules, not lines of text
        rules = sum(len(c.rules) for c in live.chains if (c.family, c.table) == (nftcompile.FAMILY, nftcompile.TABLE))
    in_sync: bool | None = None
    if text is not None:
        try:
            want = _sha256(compile_policy_file(path))
            applied = state.read_state_text(os.path.join(STATE_DIR, f"{_state_name(netns)}.applied.sha256"))
            loaded = state.read_state_text(os.path.join(STATE_DIR, f"{_state_name(netns)}.applied.nft"))
            in_sync = applied is not None and applied.strip() == want and loaded == text
            if applied is None or loaded is None:
                in_sync = None
        except (OSError, ValueError, FileFormatError):  # state unreadable: "in sync" is unknown, not false
            in_sync = None
    rb = rollback.status(_state_name(netns))
    return FwStatus(
        netns=netns,
        active=text is not None,
        rules=rules,
        policy_file=path,
        in_sync=in_sync,
        pending_rollback=rb.armed,
        rollback_seconds_left=rb.seconds_left,
        last_rollback=rb.last_result,
        boot_unit=os.path.exists(os.path.join(unit_dir, UNIT_NAME)),
    )


# --------------------------------------------------------------------------- boot unit


def systemd_quote(arg: str) -> str:
    """One command-line argument for an ``Exec*=`` line, quoted per systemd.syntax(7) and
    systemd.service(5): inside double quotes, backslash and double quote are escaped, and
    ``%`` (specifiers) and ``$`` (variable expansion) are doubled. Control characters have
    no safe spelling in a unit line and are refused. Plain paths stay as they are."""
    bad = next((c for c in arg if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InputError(f"refusing {arg!r} in a systemd unit: it contains the control character {bad!r}")
    if arg and all(c.isascii() and (c.isalnum() or c in "/._+:@=,-") for c in arg):
        return arg  # nothing systemd would read specially: as it is
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def unit_text(path: str, python: str | None = None) -> str:
    """contrib/systemd/portkit-firewall.service with the policy path filled in, and portkit
    run by this interpreter (``python -m portkit``): at boot, systemd's PATH does not hold
    a virtualenv's ``portkit`` script. Both are quoted for systemd (:func:`systemd_quote`)."""
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    contrib = os.path.join(here, "..", "..", "..", "contrib", "systemd", UNIT_NAME)
    try:
        with open(contrib) as f:
            template = f.read()
    except OSError:  # installed from a wheel: contrib/ is not there
        template = UNIT_TEMPLATE
    exe = python or sys.executable
    if exe:
        template = template.replace("/usr/bin/env portkit ", f"{systemd_quote(exe)} -m portkit ")
    return template.replace("/etc/portkit/policy.yaml", systemd_quote(path))


def _host_only(verb: str, netns: str | None) -> None:
    if netns is not None:
        raise InputError(f"fw {verb} manages the host's boot unit; it takes no --netns (got {netns!r})")


def enable_boot(
    path: str = DEFAULT_POLICY, *, unit_dir: str = UNIT_DIR, systemctl: bool = True, netns: str | None = None
) -> str:
    """Install the unit that applies ``path`` at boot; returns the unit's path. Host only."""
    _host_only("enable", netns)
    check_file_mode(path)
    load_policy_file(path)
    target = os.path.join(unit_dir, UNIT_NAME)
    text = unit_text(os.path.abspath(path))
    try:
        os.makedirs(unit_dir, exist_ok=True)
        with open(target, "w") as f:
            os.fchmod(f.fileno(), 0o644)  # whatever the umask: a unit others could edit runs as root
            f.write(text)
    except OSError as exc:
        raise map_os_error(exc, f"cannot write {target}", hint="run as root") from exc
    if systemctl:
        _systemctl("daemon-reload")
        _systemctl("enable", UNIT_NAME)
    return target


def disable_boot(*, unit_dir: str = UNIT_DIR, systemctl: bool = True, netns: str | None = None) -> bool:
    """Remove the boot unit. Host only, like :func:`enable_boot`."""
    _host_only("disable", netns)
    target = os.path.join(unit_dir, UNIT_NAME)
    if not os.path.exists(target):
        return False
    if systemctl:
        _systemctl("disable", UNIT_NAME)
    try:
        os.unlink(target)
    except OSError as exc:
        raise map_os_error(exc, f"cannot remove {target}", hint="run as root") from exc
    if systemctl:
        _systemctl("daemon-reload")
    return True


def _systemctl(*args: str) -> None:
    import subprocess

    from portkit.backends.host import find_tool

    exe = find_tool("systemctl")
    if exe is None:
        return  # no systemd here: the unit file is in place for when there is
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "offline" not in proc.stderr and "not been booted" not in proc.stderr:
        raise SystemRefused(f"systemctl {' '.join(args)} failed: {proc.stderr.strip()[:200]}")


def forget_state(*, netns: str | None = None) -> None:
    """Remove what portkit keeps for ``netns`` under /run/portkit (the previous table, the
    applied hash, a pending rollback and its result): for namespaces that are going away."""
    try:
        name = _state_name(netns)
    except InputError:
        return  # the namespace is gone already; its state was filed by an identity no one has now
    rollback.confirm(name)
    rollback.clear_result(name)
    for suffix in (".previous.nft", ".applied.sha256", ".applied.nft"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(STATE_DIR, f"{name}{suffix}"))


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
