"""One module per CLI command (``python app.py COMMAND``), each with ``add_parser(sub, name)``
and ``run(args, settings) -> int``. :mod:`netids.cli` dispatches to them.

Commands may import any package below them (detect, capture, store, training, lab, parallel)
and :mod:`netids.config`; nothing imports a command. Option values are checked by the types
below as they are parsed, so a bad one is a usage error (exit 2) in one line. The ``--eve``
options, which the app takes too, are defined here once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
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


def add_conn_retention_option(
        parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--conn-retention-days``, for the app and ``score``."""
    parser.add_argument("--conn-retention-days", type=bounded(0.001, 100_000), default=None,
                        metavar="DAYS", help="delete stored connection records this long after "
                                             "they were written (default: 7)")


def eve_settings(args: argparse.Namespace) -> EveSettings | None:
    """The EVE settings the options give; None without ``--eve``."""
    if not getattr(args, "eve", None):
        return None
    if args.eve_max_mb <= 0 or args.eve_keep < 1:
        raise CommandError("--eve-max-mb must be above 0 and --eve-keep at least 1")
    return EveSettings(Path(args.eve), int(args.eve_max_mb * 2**20), args.eve_keep)
def counted(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, else a usage error.

    >>> counted(1, 64)("8")
    8
    >>> counted(1, 64)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a whole number from 1 to 64, got '0'
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


def bounded(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high`` (not NaN), else a usage error.

    >>> bounded(0, 3600)("2.5")
    2.5
    >>> bounded(0, 3600)("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number from 0 to 3600, got 'nan'
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, "
                                             f"got {text!r}")
        return value

    return parse


fraction = bounded(0.0, 1.0)  # thresholds and scores
