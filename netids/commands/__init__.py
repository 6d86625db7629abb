"""One module per CLI command (``python app.py COMMAND``), each with ``add_parser(sub, name)``
and ``run(args, settings) -> int``. :mod:`netids.cli` dispatches to them.

Commands may import any package below them (detect, capture, store, training, lab, parallel)
and :mod:`netids.config`; nothing imports a command. Option values are checked by the types
below as they are parsed, so a bad one is a usage error (exit 2) in one line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""


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
