"""One module per CLI command (``python app.py COMMAND``), each with ``add_parser(sub, name)``
and ``run(args, settings) -> int``. :mod:`netids.cli` dispatches to them.

Commands may import any package below them (detect, capture, store, training, lab, parallel)
and :mod:`netids.config`; nothing imports a command.
"""


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""
