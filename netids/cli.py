"""Command line: ``python app.py [COMMAND] ...``; with no command the UI starts.

Each command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args, settings) -> int`` (the exit status); this module only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from netids.commands import (
    CommandError,
    add_conn_retention_option,
    add_eve_options,
    bounded,
    counted,
    eve_settings,
)
from netids.config import Settings, load_settings, parse_size
from netids.native import in_window_process

# command name -> (module implementing it, one-line help). Only the module of the command
# being run is imported, so `app.py export` does not pay for torch or NiceGUI.
COMMANDS = {
    "score": ("netids.commands.score", "score every packet of a pcap/pcapng file"),
    "train": ("netids.commands.train", "train a detector on captures of normal traffic"),
    "evaluate": ("netids.commands.evaluate", "ROC-AUC, PR-AUC and detection rates on a "
                                            "labelled capture, beside baselines"),
    "mix": ("netids.commands.mix", "mix normal and attack captures into a labelled capture"),
    "lab": ("netids.commands.lab", "record labelled normal and attack traffic between "
                                  "network namespaces (root)"),
    "export": ("netids.commands.export", "write stored events as CSV or JSON lines, or an "
                                        "event's samples as pcap"),
    "users": ("netids.commands.users", "manage the accounts that may log in on the LAN"),
}
OPTIONS_WITH_VALUES = {"--db", "--model", "--host", "--port", "--models-dir", "--eve",
                       "--eve-max-mb", "--eve-keep", "--captures-dir", "--upload-limit",
                       "--learn-minutes", "--learn-epochs", "--conn-retention-days"}


def _add_common(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--db", default=default,
                        help="database URL (default: NETIDS_DB or sqlite:///db/netids.sqlite)")
    parser.add_argument("--model", default=default,
                        help="model checkpoint (default: models/default.pt)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False,
                        help="log progress")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, naming where the options are listed (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (options: {self.prog} --help)\n")


class _CommandParser(_Parser):
    """A subcommand's parser: also takes the common options after the command name."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        _add_common(self, default=argparse.SUPPRESS)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line, if any.

    >>> chosen_command(["--db", "score", "export", "--format", "csv"])
    'export'
    >>> chosen_command(["--native"]) is None
    True
    """
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in OPTIONS_WITH_VALUES:
            skip = True
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    # `netids` when installed (pyproject.toml's console script), `app.py` in a checkout
    prog = "netids" if sys.argv and sys.argv[0].endswith("netids") else "app.py"
    # no abbreviations at the top: they would claim a command's own option (`score --learn`
    # is not short for the app's `--learn-minutes`)
    parser = _Parser(prog=prog, description=__doc__.splitlines()[0], allow_abbrev=False)
    _add_common(parser)
    ui_group = parser.add_argument_group("the app (when no command is given)")
    ui_group.add_argument("--host", default=None,
                          help="address to serve the UI on (default: 127.0.0.1)")
    ui_group.add_argument("--port", type=counted(1, 65535), default=None,
                          help="port (default: 8080)")
    ui_group.add_argument("--native", action="store_true",
                          help="open the UI in a desktop window instead of the browser")
    ui_group.add_argument("--require-login", action="store_true", default=None,
                          help="ask for a login even on 127.0.0.1 (always on beyond loopback)")
    ui_group.add_argument("--models-dir", default=None,
                          help="folder for trained models (default: models/)")
    add_eve_options(ui_group)
    add_conn_retention_option(ui_group)
    ui_group.add_argument("--fixed-threshold", action="store_true", default=None,
                          help="keep the model's calibration as trained instead of letting it "
                               "follow this network's clean traffic")
    ui_group.add_argument("--captures-dir", default=None,
                          help="the only folder the UI's path fields read capture files from "
                               "(default: NETIDS_CAPTURES_DIR or captures/)")
    ui_group.add_argument("--upload-limit", type=_size, default=None, metavar="SIZE",
                          help="largest upload the server accepts, e.g. 512M or 2G "
                               "(default: 1G)")
    ui_group.add_argument("--no-learn", action="store_true",
                          help="do not learn the network on the first live capture")
    ui_group.add_argument("--learn-minutes", type=bounded(0.01, 10_080), default=None,
                          metavar="N", help="minutes of live traffic to learn from on the first "
                                            "live capture (default: 10)")
    ui_group.add_argument("--learn-epochs", type=counted(1, 1000), default=None, metavar="N",
                          help="training epochs at most after learning (default: 30)")
    ui_group.add_argument("--interface", default=None, metavar="IFACE",
                          help="start monitoring IFACE at start-up, as Start monitoring does")
    ui_group.add_argument("--netns", default=None, metavar="NS",
                          help="the network namespace of --interface (an `ip netns` name)")
    sub = parser.add_subparsers(dest="command", parser_class=_CommandParser)
    chosen = chosen_command(argv)
    for name, (module, help_text) in COMMANDS.items():
        if name == chosen:
            importlib.import_module(module).add_parser(sub, name)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def settings_from(args: argparse.Namespace) -> Settings:
    from dataclasses import replace
    from pathlib import Path

    try:
        base = load_settings()
    except ValueError as exc:  # NETIDS_SESSION_IDLE_SECONDS=abc and the like
        raise CommandError(f"a NETIDS_* environment variable holds a bad value ({exc})") from None
    return base.with_overrides(
        db_url=getattr(args, "db", None),
        model_path=Path(args.model) if getattr(args, "model", None) else None,
        eve=eve_settings(args),
        adapt_threshold=False if getattr(args, "fixed_threshold", None) else None,
        storage=replace(base.storage, conn_retention_days=args.conn_retention_days)
        if getattr(args, "conn_retention_days", None) else None,
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """No command: serve the UI (``python app.py``) until it is stopped."""
    from dataclasses import replace
    from pathlib import Path

    from netids.store.eve import EveError, EveLog

    try:
        settings = settings.with_overrides(
            host=args.host, port=args.port, monitor=args.interface, monitor_netns=args.netns,
            models_dir=Path(args.models_dir) if args.models_dir else None,
        )
        if settings.eve.path is not None:
            EveLog(settings.eve).close()  # a file we cannot write is said now, not at start-up
    except (CommandError, EveError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.require_login:
        settings = replace(settings, auth=replace(settings.auth, require_login=True))
    settings = replace(settings, learn=replace(
        settings.learn, enabled=not args.no_learn, epochs=args.learn_epochs,
        seconds=60.0 * args.learn_minutes if args.learn_minutes else settings.learn.seconds))
    settings = replace(settings, files=replace(
        settings.files,
        captures_dir=Path(args.captures_dir) if args.captures_dir else settings.files.captures_dir,
        upload_limit=args.upload_limit or settings.files.upload_limit))
    try:
        _check_serve_options(args, settings)  # before NiceGUI and torch are imported
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

    from netids.native import NativeError
    from netids.ui.login import LanConfigError
    from netids.webapp import serve

    try:
        window = None
        if args.native:
            from netids.native import prepare

            window = prepare()  # display and Qt present, clean shutdown; NativeError otherwise
        serve(settings, native=args.native, window=window)
    except (LanConfigError, NativeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:  # Ctrl-C: uvicorn shut down cleanly, then re-raised SIGINT
        return 130
    return 0


def _check_serve_options(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse at start what could never work: a database URL of another kind, a model or a
    models folder named on the command line that is not there. A database that is down, or
    a model that fails to load, is shown in the app instead (it may come back, or be
    replaced from the training page)."""
    from netids.store.engine import DatabaseURLError, check_url

    try:
        check_url(settings.db_url)
    except DatabaseURLError as exc:
        raise CommandError(str(exc)) from None
    if args.model and not settings.model_path.is_file():
        raise CommandError(f"--model {args.model}: no such file")
    if args.models_dir and settings.models_dir.exists() and not settings.models_dir.is_dir():
        raise CommandError(f"--models-dir {args.models_dir}: not a folder")
    _check_address(settings.host, settings.port)
    if args.netns and not args.interface:
        raise CommandError("--netns NS needs --interface IFACE (the interface to monitor in NS)")


def _check_address(host: str, port: int) -> None:
    """A host name that does not resolve, or an address and port another program holds,
    in one line before the server starts (uvicorn would say it after "ready")."""
    import socket

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CommandError(f"--host {host}: {getattr(exc, 'strerror', None) or exc}") from None
    for family, kind, proto, _, address in found[:1]:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise CommandError(f"cannot serve on {host} port {port}: {exc.strerror}"
                                   ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command and return its exit status; errors become one line on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # a typo is an error with the command's own usage line, not ignored
            command_parser = _command_parsers(parser).get(args.command, parser)
            command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return int(exc.code or 0)
    if args.command is None and args.native and in_window_process():
        return 0  # only opens the window: the parent serves, and holds the port by now
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from(args)
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.command is None:
        return _serve(args, settings)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args, settings))
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
