"""One module per CLI command (``python app.py COMMAND``), each with ``add_parser(sub, name)``
and ``run(args, settings) -> int``. :mod:`netids.cli` dispatches to them.

Commands may import any package below them (detect, capture, store, training, lab, parallel)
and :mod:`netids.config`; nothing imports a command. The ``--eve`` options, which the app
takes too, are defined here once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from netids.config import EveSettings


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""


def add_eve_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--eve FILE`` and its rotation, for the app and ``score``."""
    defaults = EveSettings()
    parser.add_argument("--eve", metavar="FILE",
                        help="append each stored event to FILE as a Suricata-EVE-like JSON line")
    parser.add_argument("--eve-max-mb", type=float, default=defaults.max_bytes / 2**20,
                        metavar="MB", help="rotate the EVE file past this size (default: "
                                           "%(default).0f MB)")
    parser.add_argument("--eve-keep", type=int, default=defaults.keep, metavar="N",
                        help="rotated EVE files kept, FILE.1 .. FILE.N (default: %(default)s)")


def eve_settings(args: argparse.Namespace) -> EveSettings | None:
    """The EVE settings the options give; None without ``--eve``."""
    if not getattr(args, "eve", None):
        return None
    if args.eve_max_mb <= 0 or args.eve_keep < 1:
        raise CommandError("--eve-max-mb must be above 0 and --eve-keep at least 1")
    return EveSettings(Path(args.eve), int(args.eve_max_mb * 2**20), args.eve_keep)
