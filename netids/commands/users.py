"""``python app.py users add|list|remove|hash``: accounts for serving the UI beyond loopback.

Passwords are read from a prompt (twice) or, with ``--password-stdin``, from the first line of
standard input; never from the command line, never logged. They are stored hashed (scrypt) in
the users file (``db/users.json`` by default, ``NETIDS_USERS_FILE`` to move it), mode 0600.

``users hash`` prints an encoded hash for ``NETIDS_ADMIN_PASSWORD_HASH`` (CI, containers) and
stores nothing.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from netids.auth import ROLES, CredentialsError, UserStore, check_new_password, hash_password
from netids.commands import CommandError
from netids.config import Settings


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(name, help="manage the accounts that may log in when serving the LAN")
    actions = p.add_subparsers(dest="users_action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="create an account (or --replace its password/role)",
                             allow_abbrev=False)
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True,
                     help="viewer: read only; admin: also start/stop, filter, threshold, training")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--replace", action="store_true", help="overwrite an existing account")
    add.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    actions.add_parser("list", help="show account names and roles")
    rm = actions.add_parser("remove", help="delete an account")
    rm.add_argument("name")
    hsh = actions.add_parser("hash", help="print a password hash for NETIDS_ADMIN_PASSWORD_HASH",
                             allow_abbrev=False)
    hsh.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    hsh.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)


class _RefusePassword(argparse.Action):
    """``--password X`` would leave the password in ``ps`` and the shell history: refuse it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.error("passwords are not taken on the command line (ps and shell history "
                     "would keep them): type it at the prompt or use --password-stdin")


def run(args: argparse.Namespace, settings: Settings) -> int:
    auth = settings.auth
    store = UserStore(auth.users_file, env_admin_hash=auth.admin_password_hash,
                      env_admin_name=auth.admin_name)
    try:
        if args.users_action == "add":
            user = store.add(args.name, args.role, _read_password(args.password_stdin),
                             replace=args.replace)
            sys.stdout.write(f"{user.name} ({user.role}) saved in {store.path}\n")
        elif args.users_action == "list":
            users = store.users()
            if not users:
                sys.stdout.write("no accounts (add one: python app.py users add NAME "
                                 "--role admin)\n")
            for user in sorted(users.values(), key=lambda u: u.name):
                origin = "  (NETIDS_ADMIN_PASSWORD_HASH)" if user.password_hash == \
                    auth.admin_password_hash else ""
                sys.stdout.write(f"{user.name}\t{user.role}{origin}\n")
        elif args.users_action == "remove":
            if not store.remove(args.name):
                raise CommandError(f"no user {args.name!r} in {store.path}")
            sys.stdout.write(f"{args.name} removed\n")
        elif args.users_action == "hash":
            sys.stdout.write(hash_password(_read_password(args.password_stdin)) + "\n")
    except CredentialsError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the users file's folder is missing, read-only, not a folder
        raise CommandError(f"cannot write {store.path}: {exc.strerror}") from None
    return 0


def _read_password(from_stdin: bool) -> str:
    """The new password, from stdin's first line or an interactive prompt typed twice."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return check_new_password(password.removesuffix("\r"))
    if not sys.stdin.isatty():
        raise CommandError("no terminal to prompt for the password: use --password-stdin")
    password = getpass.getpass("Password: ")
    check_new_password(password)
    if getpass.getpass("Repeat password: ") != password:
        raise CommandError("the passwords differ; nothing saved")
    return password
