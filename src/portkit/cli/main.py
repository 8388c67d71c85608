"""Entry point of the ``portkit`` command.

With no subcommand, ``portkit`` runs ``portkit report`` (the host port report).
Errors are one line on stderr; the exit status follows :class:`portkit.errors.ExitCode`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from portkit import __version__
from portkit.cli.common import Parser, one_line
from portkit.errors import ExitCode, PortkitError

# Command modules, in the order --help lists them. Each has register(sub).
COMMAND_MODULES: tuple[str, ...] = (
    "portkit.cli.report",  # report, ls, who
    "portkit.cli.free",  # free, info
    "portkit.cli.check",  # check
    "portkit.cli.scan",  # scan
    "portkit.cli.fw",  # fw ...
    "portkit.cli.forward",  # forward
    "portkit.cli.nat",  # nat
    "portkit.cli.why",  # why, trace
    "portkit.cli.lab",  # lab ...
)

# Which module registers each command: a command line that names one imports only that
# module (start-up time matters: `portkit who 1`, `portkit fw check` are meant to be fast).
COMMAND_OWNERS: dict[str, str] = {
    "report": "portkit.cli.report", "ls": "portkit.cli.report", "who": "portkit.cli.report",
    "free": "portkit.cli.free", "info": "portkit.cli.free", "check": "portkit.cli.check",
    "scan": "portkit.cli.scan", "fw": "portkit.cli.fw", "forward": "portkit.cli.forward",
    "nat": "portkit.cli.nat", "why": "portkit.cli.why", "trace": "portkit.cli.why", "lab": "portkit.cli.lab",
}  # fmt: skip

DESCRIPTION = """\
portkit answers every practical question about network ports on this host:
who listens where, is a port open, which firewall rule decides, where NAT sends it,
and why a port cannot be reached.

With no command, portkit prints the host port report (same as 'portkit report').
Exit status: 0 yes/done, 1 no, 2 bad input, 3 missing privilege, 4 the system refused,
5 undetermined, 130 interrupted.
"""


def build_parser(command: str | None = None) -> Parser:
    """The whole parser, or (``command``) one with only the module that owns that command."""
    parser = Parser(
        prog="portkit",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"portkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    owner = COMMAND_OWNERS.get(command or "")
    for modname in (owner,) if owner else COMMAND_MODULES:
        importlib.import_module(modname).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "report")
    parser = build_parser(args_list[0])
    try:
        args = parser.parse_args(args_list)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return ExitCode.BAD_INPUT
        return int(func(args))
    except PortkitError as exc:
        sys.stderr.write(one_line(f"portkit: {exc}") + "\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("portkit: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `portkit ls | head`): not an error of ours.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:  # stdout is gone anyway: nothing left to protect
            pass
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: still one line, never a traceback unless asked
        if os.environ.get("PORTKIT_DEBUG"):
            raise
        sys.stderr.write(
            one_line(f"portkit: internal error: {type(exc).__name__}: {exc} (set PORTKIT_DEBUG=1 for a traceback)")
            + "\n"
        )
        return int(ExitCode.REFUSED)


if __name__ == "__main__":
    raise SystemExit(main())
