"""``portkit forward``: userspace forwarder, kernel (nftables DNAT) forwards, and their list."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from portkit.cli.common import add_output_options, number_arg, seconds_arg, subparser
from portkit.errors import ExitCode, InputError
from portkit.model.forward import PIPE_SIZE_MAX, PIPE_SIZE_MIN

EPILOG = """\
SPEC:  [BIND:]LISTEN_PORT:TARGET_HOST:TARGET_PORT[/tcp|/udp]   or   LISTEN_PORT:TARGET_PORT
       IPv6 addresses in brackets: [::1]:8080:[fd00::2]:80

userspace forwarder (runs until SIGTERM/Ctrl-C, then drains open connections):
  portkit forward 8080:2988                       127.0.0.1:8080 -> 127.0.0.1:2988
  portkit forward 0.0.0.0:8443:10.0.0.2:443 --allow 10.0.0.0/8
  portkit forward 5353:10.0.0.2:53/udp 8080:10.0.0.2:80
  portkit forward --config /etc/portkit/forward.yaml --stats    (SIGHUP re-reads the file)
  portkit forward --check --config FILE           validate only

kernel forwards (nftables DNAT in table inet portkit_forward; fw apply/reset never touch it):
  portkit forward --kernel 8080:10.0.0.2:80       other hosts' connections to any local address
  portkit forward --kernel --local 8080:10.0.0.2:80     this host's own connections too
  portkit forward --kernel --confirm 60 ...       rolls back after 60 s unless --confirm-ok
  portkit forward --list        portkit forward --remove 8080/tcp        --remove-all

Like ssh -L, the userspace forwarder listens on 127.0.0.1 unless a bind address is given;
a kernel forward without one catches traffic to every address of this host.
Exit status: 0 done, 1 nothing to --list (or to --remove-all), 2 bad SPEC / port in use /
unknown host / --remove of a forward that is not installed, 3 not root (kernel forwards),
4 the kernel or nft refused, 130 stopped by Ctrl-C (SIGTERM: 0).
"""


def register(sub: Any) -> None:
    p = subparser(
        sub,
        "forward",
        help="forward ports: a fast userspace relay, or kernel DNAT (nftables)",
        description="Forward a local port to a target: in userspace (TCP with splice, UDP sessions) or in the kernel.",
        epilog=EPILOG,
    )
    p.add_argument("specs", nargs="*", metavar="SPEC", help="what to forward (see below)")
    p.add_argument("--config", metavar="FILE", help="YAML file of forwards (see docs/forward.md)")
    p.add_argument(
        "--allow", action="append", default=[], metavar="CIDR", help="only these clients (repeatable)"
    )
    p.add_argument(
        "--deny", action="append", default=[], metavar="CIDR", help="never these clients (repeatable)"
    )
    g = p.add_argument_group("userspace forwarder")
    g.add_argument(
        "--connect-timeout", type=seconds_arg("connect timeout", 3600), metavar="S", help="give up on the target after S s (default 5)"
    )
    g.add_argument(
        "--udp-idle", type=seconds_arg("UDP idle timeout", 86400), metavar="S", help="end a UDP session after S s idle (default 60)"
    )
    g.add_argument(
        "--udp-max-sessions", type=number_arg("number of UDP sessions", 1, 1_000_000, integer=True), metavar="N", help="at most N UDP sessions per forward (4096)"
    )
    g.add_argument("--drain", type=seconds_arg("drain time", 3600, allow_zero=True), metavar="S", help="on SIGTERM, let connections finish for S s (10)")
    g.add_argument(
        "--stats", nargs="?", type=seconds_arg("stats interval", 86400), const=1.0, metavar="S", help="print live counters every S s"
    )
    g.add_argument("--quiet", action="store_true", help="no per-connection log lines")
    g.add_argument(
        "--workers", type=number_arg("number of workers", 1, 64, integer=True), metavar="N", help="event loops (threads); default: one per core, max 4"
    )
    g.add_argument(
        "--bulk-threads",
        type=number_arg("number of bulk threads", 0, 256, integer=True),
        metavar="N",
        help="at most N threads (2 per flow) move bulk TCP flows with blocking splice; 0 keeps "
        "every flow in the event loops (default 16)",
    )
    g.add_argument("--no-splice", action="store_true", help="copy through buffers instead of os.splice")
    g.add_argument(
        "--pipe-size",
        type=number_arg("pipe size", PIPE_SIZE_MIN, PIPE_SIZE_MAX, integer=True, unit="bytes"),
        metavar="BYTES",
        help="splice pipe size (default 1 MiB; the kernel rounds it)",
    )
    g.add_argument("--check", action="store_true", help="validate the SPECs/--config and exit")
    k = p.add_argument_group("kernel forwards")
    k.add_argument("--kernel", action="store_true", help="install the SPECs as nftables DNAT instead")
    k.add_argument(
        "--local", action="store_true", help="also catch this host's own connections (output hook)"
    )
    k.add_argument(
        "--route-localnet",
        action="store_true",
        help="allow a 127.0.0.1 target for other hosts' traffic, or (with --local) this host's connections "
        "to 127.0.0.1 forwarded to another host (sets net.ipv4.conf.all.route_localnet=1)",
    )
    k.add_argument(
        "--confirm", type=number_arg("confirmation timeout", 1, 86400, unit="seconds"), metavar="S", help="roll the change back after S s unless --confirm-ok"
    )
    k.add_argument("--confirm-ok", action="store_true", help="keep the last --confirm change")
    k.add_argument("--list", action="store_true", help="list kernel forwards")
    k.add_argument("--remove", nargs="+", metavar="SPEC|PORT[/PROTO]", help="remove kernel forwards")
    k.add_argument("--remove-all", action="store_true", help="remove every kernel forward (the whole table)")
    p.add_argument("--netns", metavar="NAME", help="act inside the named network namespace")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.confirm is not None and not 0 < args.confirm <= 86400:
        raise InputError(
            f"invalid --confirm {args.confirm:g}; use a positive number of seconds, at most 86400"
        )
    if args.stats is not None and args.stats <= 0:
        raise InputError(f"invalid --stats {args.stats:g}; use a positive number of seconds")
    if (args.list or args.remove_all or args.confirm_ok) and args.specs:
        raise InputError(
            f"--list, --remove-all and --confirm-ok take no SPEC (got {args.specs[0]!r}); "
            "to remove one forward: portkit forward --remove SPEC|PORT[/PROTO]"
        )
    if args.confirm_ok:
        return _confirm_ok(args)
    if args.list or args.remove or args.remove_all:
        return _kernel_list_remove(args)
    if args.kernel:
        return _kernel_add(args)
    if args.local or args.route_localnet or args.confirm is not None:
        raise InputError("--local, --route-localnet and --confirm apply to kernel forwards; add --kernel")
    return _userspace(args)


# -- kernel ---------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, result: Any) -> None:
    from portkit.render.forward import kernel_document, render_kernel
    from portkit.render.output import Output, warn

    out = Output.from_args(args)
    for w in result.warnings:
        warn(w)
    if out.json:
        out.emit_json(kernel_document(result))
    else:
        out.write(render_kernel(result, color=out.color))


def _kernel_add(args: argparse.Namespace) -> int:
    from portkit.ops.forward import kernel_forward_add

    texts = list(args.specs)
    if args.config:
        raise InputError(
            "--config files describe userspace forwards; give kernel forwards as SPECs: "
            "portkit forward --kernel 8080:10.0.0.2:80"
        )
    if not texts:
        raise InputError("--kernel needs at least one SPEC, e.g. portkit forward --kernel 8080:10.0.0.2:80")
    result = kernel_forward_add(
        texts,
        local=args.local,
        route_localnet=args.route_localnet,
        allow=args.allow,
        deny=args.deny,
        netns=args.netns,
        confirm=args.confirm,
    )
    _emit(args, result)
    return ExitCode.OK


def _kernel_list_remove(args: argparse.Namespace) -> int:
    from portkit.ops.forward import kernel_forward_list, kernel_forward_remove

    if args.list:
        result = kernel_forward_list(netns=args.netns)
        _emit(args, result)
        return ExitCode.OK if result.forwards else ExitCode.NO
    result = kernel_forward_remove(
        args.remove or [], all_forwards=args.remove_all, netns=args.netns, confirm=args.confirm
    )
    _emit(args, result)
    return ExitCode.OK if result.changed else ExitCode.NO


def _confirm_ok(args: argparse.Namespace) -> int:
    from portkit.ops.forward import kernel_forward_confirm
    from portkit.render.output import Output

    ok = kernel_forward_confirm(netns=args.netns)
    Output.from_args(args).write(
        "kernel forwards confirmed: the rollback timer is disarmed"
        if ok
        else "nothing to confirm: no rollback timer is pending (it may have fired already)"
    )
    return ExitCode.OK if ok else ExitCode.NO


# -- userspace ------------------------------------------------------------------------------
def _gather(args: argparse.Namespace) -> tuple[Any, Any]:
    from portkit.ops.forward_setup import forward_setup

    overrides: dict[str, Any] = {}
    for name, attr in (
        ("connect_timeout", "connect_timeout"),
        ("udp_idle", "udp_idle_timeout"),
        ("udp_max_sessions", "udp_max_sessions"),
        ("drain", "drain"),
        ("pipe_size", "pipe_size"),
    ):
        val = getattr(args, name)
        if val is not None:
            if (val <= 0 and name != "drain") or val < 0:
                raise InputError(f"invalid --{name.replace('_', '-')} {val:g}; use a positive number")
            overrides[attr] = val
    return forward_setup(args.specs, allow=args.allow, deny=args.deny, config=args.config, overrides=overrides)


def _log(line: str) -> None:
    import time

    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")
    sys.stderr.flush()


def _userspace(args: argparse.Namespace) -> int:
    from portkit.ops.forward import exposure_warnings
    from portkit.ops.forward_setup import serve_forwards
    from portkit.render.output import warn

    if not args.specs and not args.config:
        raise InputError("nothing to forward: give a SPEC such as 8080:127.0.0.1:2988, or --config FILE")
    specs, options = _gather(args)
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise InputError(f"invalid --workers {args.workers}; use 1-64")
    if args.bulk_threads is not None and not 0 <= args.bulk_threads <= 256:
        raise InputError(f"invalid --bulk-threads {args.bulk_threads}; use 0-256 (0 = off)")
    if args.json and not args.check:
        raise InputError(
            "--json applies to --check, --list, --remove and --kernel; the running forwarder logs one "
            "text line per connection on stderr (--quiet turns them off)"
        )
    warnings = list(exposure_warnings(specs))
    for w in warnings:
        warn(w)
    if args.check:
        from portkit.ops.forward import check_options
        from portkit.render.output import Output

        check_options(options, use_splice=not args.no_splice)

        out = Output.from_args(args)
        if out.json:
            import dataclasses

            from portkit.render.jsonout import document

            out.emit_json(
                document(
                    action="check",
                    forwards=[
                        {"spec": str(s), "listen": s.listen, "target": s.target, **dataclasses.asdict(s)}
                        for s in specs
                    ],
                    options=dataclasses.asdict(options),
                    warnings=warnings,
                )
            )
        else:
            for s in specs:
                sys.stdout.write(f"{s}\n")
        return ExitCode.OK

    def reload_source() -> tuple[Any, Any]:
        return _gather(args)

    serve_forwards(
        specs,
        options,
        netns=args.netns,
        log=(lambda line: None) if args.quiet else _log,
        stats_interval=args.stats,
        stats_out=_log,
        reload_source=reload_source if args.config else None,
        use_splice=not args.no_splice,
        workers=args.workers,
        bulk_threads=args.bulk_threads,
    )
    return ExitCode.OK
