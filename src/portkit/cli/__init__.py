"""The command line: argument parsing -> one api call -> render -> exit status.

Each command lives in its own module under ``portkit.cli`` and exposes::

    def register(sub: argparse._SubParsersAction) -> None   # adds its parser(s)
    # each parser sets ``func=run`` via ``set_defaults``; ``run(args) -> int``

Command modules import only the standard library at top level; everything heavy (rich,
pyroute2, asyncio) is imported inside ``run`` so ``portkit who 1`` starts fast.
"""
