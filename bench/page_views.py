# ruff: noqa: T201 - a benchmark prints its figures
"""Memory of the idle app under page views that never open a websocket.

    .venv/bin/python bench/page_views.py [--views 500] [--path /] [--port 8391] [--tree .]

Starts the real app from the checkout ``--tree`` (``python app.py --no-learn`` with a
database in a temporary folder), fetches ``--path`` ``--views`` times over HTTP (urllib: no
cookie, no websocket, as a script or a health check would), waits 80 s so NiceGUI deletes the
never-connected clients (it prunes those older than 60 s every 10 s), and does it once more.
Prints the app's RSS (MiB, with its children) at each step and the user-storage files left
behind, as one JSON line: a page view whose memory is freed leaves the second round where the
first ended.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from procs import tree_rss_mib

PRUNED_AFTER = 80.0  # seconds: NiceGUI's 60 s client age plus its 10 s pruning period, and slack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=500)
    parser.add_argument("--path", default="/")
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="checkout to run app.py from (its .venv)")
    args = parser.parse_args()
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="netids-views-") as folder:
        app = subprocess.Popen(
            [str(tree / ".venv/bin/python"), "app.py", "--port", str(args.port), "--db",
             f"sqlite:///{folder}/views.sqlite", "--no-learn"],
            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "NICEGUI_STORAGE_PATH": f"{folder}/storage"})
        try:
            figures = measure(app.pid, f"http://127.0.0.1:{args.port}{args.path}", args.views)
            files = len(list(Path(folder, "storage").glob("storage-user-*.json")))
            print(json.dumps(figures | {"user_storage_files": files, "tree": str(tree),
                                        "path": args.path}))
        finally:
            app.send_signal(2)
            try:
                app.wait(120)
            except subprocess.TimeoutExpired:
                app.kill()


def measure(pid: int, url: str, views: int) -> dict[str, float]:
    """RSS before, after each round of views and after each pruning."""
    for _ in range(240):  # until the app answers (torch and the model load first)
        try:
            urllib.request.urlopen(url, timeout=30).read()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(3)
    figures = {"start": tree_rss_mib(pid)}
    for round_ in (1, 2):
        began = time.monotonic()
        for _ in range(views):
            urllib.request.urlopen(url, timeout=30).read()
        figures[f"round{round_}_seconds"] = round(time.monotonic() - began, 1)
        figures[f"round{round_}_fetched"] = tree_rss_mib(pid)
        time.sleep(PRUNED_AFTER)
        figures[f"round{round_}_pruned"] = tree_rss_mib(pid)
    return {k: round(v, 1) for k, v in figures.items()}


if __name__ == "__main__":
    main()
