"""``python app.py train CAPTURE... --out models/NAME.pt``: train a detector on normal traffic."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netids.capture.files import FileProgress
from netids.capture.pcapfile import CaptureFileError
from netids.capture.progress import Meter
from netids.commands import CommandError, counted
from netids.commands.mix import parse_part
from netids.commands.progress import TerminalBar
from netids.config import PROJECT_ROOT, Settings
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch
from netids.training.checkpoint import CheckpointError, check_writable, save
from netids.training.data import read_capture
from netids.training.quality import concerns
from netids.training.train import MIN_PACKETS, TrainConfig, TrainingError, train

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="train a detector on captures of normal traffic",
                       description=f"Train on normal captures (at least {MIN_PACKETS} packets "
                                   "in all) and write a checkpoint.")
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap/pcapng of normal traffic")
    p.add_argument("--out", required=True, help="checkpoint to write, e.g. models/NAME.pt")
    p.add_argument("--part", default="0:1", metavar="FROM:TO",
                   help="fraction range of each capture to train on (e.g. 0:0.7, keeping the "
                        "rest unseen for evaluation)")
    p.add_argument("--epochs", type=counted(1, 10_000), default=TrainConfig.epochs)
    p.add_argument("--cold-starts", type=counted(0, 64), default=TrainConfig.cold_starts,
                   metavar="N", help="also train on N one-minute stretches of each capture "
                                     "read from a fresh context, as a sensor started there sees "
                                     "them (default %(default)s; see docs/drift.md)")
    p.add_argument("--seed", type=counted(0, 2**32 - 1), default=TrainConfig.seed)
    p.add_argument("--false-alarm", type=float, default=TrainConfig.target_false_alarm,
                   help="target false-alarm rate giving the default threshold (1 - rate)")
    p.add_argument("--threads", type=counted(1, 1024), default=TrainConfig.threads,
                   help="torch threads")


def run(args: argparse.Namespace, settings: Settings) -> int:
    lo, hi = parse_part(args.part)
    if not 0.0 < args.false_alarm < 0.5:
        raise CommandError("--false-alarm must be between 0 and 0.5")
    try:
        check_writable(Path(args.out))  # before the minutes of training, not after
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    captures = _read(args.captures, lo, hi, settings)
    config = TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads,
                         cold_starts=args.cold_starts,
                         target_false_alarm=args.false_alarm)
    bar = TerminalBar.for_settings("training", settings)
    epochs = Meter(total=config.epochs, started=time.monotonic(), unit="epochs", bound=True)

    def progress(epoch: int, train_loss: float, val_loss: float) -> None:
        epochs.advance(packets=1, work=1)
        bar.clear()
        _say(f"epoch {epoch:3d}  train loss {train_loss:.4f}  validation loss {val_loss:.4f}")
        bar.show(epochs.snapshot(time.monotonic()), force=True)

    try:
        report = train(captures, config, progress=progress,
                       sources=[_project_path(p) for p in args.captures],
                       warn=lambda text: sys.stderr.write(f"warning: {text}\n"))
    except TrainingError as exc:
        raise CommandError(str(exc)) from None
    finally:
        bar.clear()
    report.checkpoint.metadata["part"] = [lo, hi]
    try:
        path = save(report.checkpoint, args.out)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {args.out} ({exc.strerror}); the trained model is "
                           f"lost, run again with another --out") from None
    size = path.stat().st_size
    _say(f"wrote {path} ({size / 1e6:.2f} MB): {report.packets} packets, {report.epochs} epochs "
          f"(best {report.best_epoch}), {report.seconds:.0f} s, threshold "
          f"{report.checkpoint.threshold}")
    for concern in concerns(report.checkpoint.metadata, report.checkpoint.threshold):
        _say(f"warning: {concern.check}: {concern.why}")
    return 0


def _read(paths: list[str], lo: float, hi: float,
          settings: Settings) -> list[tuple[PacketBatch, np.ndarray]]:
    """The ``lo:hi`` part of each capture, read with a progress bar over all of them."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise CommandError(f"capture not found: {missing[0]}")
    progress = FileProgress([Path(p) for p in paths])
    bar = TerminalBar.for_settings("reading", settings)
    captures = []
    try:
        for path in paths:
            count = progress.counter(Path(path))

            def done(frames: FrameBatch, count: Callable[[FrameBatch], None] = count) -> None:
                count(frames)
                bar.show(progress.snapshot())

            packets, feats = read_capture(path, done=done)
            a, b = round(lo * len(packets)), round(hi * len(packets))
            captures.append((packets.take(slice(a, b)), feats[a:b]))
    except CaptureFileError as exc:
        raise CommandError(str(exc)) from None
    finally:
        bar.clear()
    return captures


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _project_path(path: str) -> str:
    """A capture as the model's metadata names it: relative to the project when inside it,
    so ``evaluate`` finds it again in another clone; absolute otherwise."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT) if resolved.is_relative_to(PROJECT_ROOT)
               else resolved)
