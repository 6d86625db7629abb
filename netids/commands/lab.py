"""``python app.py lab --out DIR --duration SECONDS``: record labelled traffic in the lab.

Builds network namespaces, runs real servers, clients and attack tools in them, captures
with the live source and writes ``DIR/NAME.pcap`` plus ``DIR/NAME.labels.csv``. Needs root.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from netids.commands import counted
from netids.config import Settings

log = logging.getLogger(__name__)


def add_parser(sub: Any, name: str) -> None:
    from netids.lab.attacks import ATTACKS

    p = sub.add_parser(name, help="record labelled normal and attack traffic between namespaces")
    p.add_argument("--out", required=True, help="directory for NAME.pcap and NAME.labels.csv")
    p.add_argument("--name", default="lab", help="file name stem (default: lab)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    p.add_argument(
        "--attacks",
        default="all",
        help=f"none, all (default) or a comma-separated list of: {', '.join(ATTACKS)}",
    )
    p.add_argument("--seed", type=counted(0, 2**32 - 1), default=0,
                   help="seed of the clients' behaviour")
    p.add_argument("--varied", action="store_true",
                   help="clients join, leave and pause, load and a background job vary by "
                        "seed (default: every client busy from start to end)")
    p.add_argument("--snaplen", type=counted(64, 262144), default=None,
                   help="bytes kept of each frame (default: all)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from netids.capture.source import CaptureError
    from netids.commands import CommandError
    from netids.lab.attacks import parse_attacks
    from netids.lab.network import LabError
    from netids.lab.recorder import run_lab

    _check_out(Path(args.out), args.name)
    capture = settings.capture
    if args.snaplen:
        capture = dataclasses.replace(capture, snaplen=max(64, args.snaplen))
    try:
        attacks = parse_attacks(args.attacks)
        report = run_lab(
            args.out, args.name, args.duration, attacks, seed=args.seed, settings=capture,
            varied=args.varied,
        )
    except (LabError, CaptureError) as exc:
        raise CommandError(str(exc)) from exc
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind.items())) or "none"
    print(  # noqa: T201 - the command's result for the user
        f"{report.pcap}: {report.packets} packets, {report.attack_packets} attack ({kinds}); "
        f"labels in {report.labels}"
    )
    if args.varied:
        print(f"life: {report.life.describe()}")  # noqa: T201
    if report.skipped:
        print(f"skipped for lack of time: {', '.join(report.skipped)}")  # noqa: T201
    if report.kernel_drops or report.queue_drops:
        print(  # noqa: T201
            f"warning: capture dropped {report.kernel_drops} frames in the kernel and "
            f"{report.queue_drops} in the queue"
        )
    return 0


def _check_out(out: Path, name: str) -> None:
    """Refuse an output that is not a folder, or a name that would leave it, before the lab
    network is built."""
    from netids.commands import CommandError

    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is not a folder")
    if not name or name in {".", ".."} or Path(name).name != name:
        raise CommandError(f"--name {name!r} must be a plain file name (no folders)")
