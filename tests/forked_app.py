"""Many short runs of ``python app.py ARGS``, each a real process forked from one interpreter
that imported netids' heavy modules (torch, numpy, SQLModel, the commands) once.

A fresh interpreter per run spends seconds importing torch before it refuses a bad value in
one line; forked from this one, a run starts with those modules loaded and otherwise as
``python app.py`` would: app.py runs as ``__main__`` with its own argv, environment, folder
and stdin, its stdout and stderr go to files, atexit handlers run, and its exit status (a
traceback: 1, as Python's own) is what the caller gets.

``run_forked`` is the caller's side; ``python tests/forked_app.py`` reads the runs as JSON on
stdin and answers their exit statuses as JSON, in order.
"""

from __future__ import annotations

import atexit
import importlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

PRELOAD = ("numpy", "torch", "sqlmodel", "netids.cli", "netids.commands.score",
           "netids.commands.train", "netids.commands.evaluate", "netids.commands.mix",
           "netids.commands.export", "netids.commands.users", "netids.commands.lab")


@dataclass(frozen=True)
class Run:
    """One ``python APP ARGV`` run: environment, folder, stdin, and where its output goes."""

    app: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: str
    out: str  # stdout goes to OUT.out, stderr to OUT.err


def run_forked(runs: list[Run], parallel: int = 2, timeout: float = 600.0
               ) -> list[subprocess.CompletedProcess[str]]:
    """Every run, ``parallel`` at a time, as completed processes (argv, status, out, err)."""
    done = subprocess.run([sys.executable, __file__, str(parallel)], check=True, text=True,
                          input=json.dumps([asdict(r) for r in runs]), capture_output=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    statuses = json.loads(done.stdout)
    return [subprocess.CompletedProcess([r.app, *r.argv], status,
                                        Path(f"{r.out}.out").read_text(errors="replace"),
                                        Path(f"{r.out}.err").read_text(errors="replace"))
            for r, status in zip(runs, statuses, strict=True)]


def _serve(runs: list[Run], parallel: int) -> list[int]:
    """Fork a child per run, at most ``parallel`` alive; their exit statuses, in order."""
    for name in PRELOAD:
        importlib.import_module(name)
    statuses: dict[int, int] = {}
    running: dict[int, int] = {}  # pid -> run number
    for number, run in enumerate(runs):
        while len(running) >= parallel:
            pid, status = os.wait()
            statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)
        pid = os.fork()
        if pid == 0:
            _child(run)  # never returns
        running[pid] = number
    while running:
        pid, status = os.wait()
        statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return [statuses[n] for n in range(len(runs))]


def _child(run: Run) -> None:
    """Become ``python APP ARGV`` for this run, then exit with its status."""
    code = 1
    try:
        os.chdir(run.cwd)
        os.environ.clear()
        os.environ.update(run.env)
        with tempfile.TemporaryFile() as given:
            given.write(run.stdin.encode())
            given.seek(0)
            os.dup2(given.fileno(), 0)
        for fd, suffix in ((1, ".out"), (2, ".err")):
            os.dup2(os.open(run.out + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False),
                                      errors="backslashreplace", line_buffering=True)
        sys.argv = [run.app, *run.argv]
        try:
            runpy.run_path(run.app, run_name="__main__")
            code = 0
        except SystemExit as exc:  # as the interpreter treats it at exit
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                sys.stderr.write(f"{exc.code}\n")
        except BaseException:  # noqa: BLE001 - an uncaught error, printed as Python would
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, as for app.py
    given = [Run(**r) for r in json.load(sys.stdin)]
    sys.stdout.write(json.dumps(_serve(given, int(sys.argv[1]))))
