"""``score CAPTURE --learn SECONDS``: the learning half of ``score`` (not a command of its own).

Trains on the capture's first SECONDS (:mod:`netids.training.learn`), says what was learned,
keeps the model with ``--save-model``, and hands ``score`` the learned pipeline and the frames
left to score. Scoring then runs as ``score`` always does (worker processes included: they
only judge, while the context features, warm from the learning part, are computed in order in
the main process).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from netids.capture.pcapfile import CaptureFileError
from netids.commands import CommandError
from netids.config import Settings
from netids.training.checkpoint import save
from netids.training.learn import LearnedStart, learn_start, settle_note
from netids.training.train import TrainConfig, TrainingError

if TYPE_CHECKING:  # the store is imported only with --db or an EVE file
    from netids.detect.packet_behaviour import StreamBehaviour
    from netids.store.sink import EventSink


def learn_first(args: argparse.Namespace, settings: Settings) -> LearnedStart | None:
    """With ``--learn``: the model learned from the capture's start (None without it)."""
    if args.learn is None:
        if args.save_model is not None or args.epochs != TrainConfig.epochs:
            raise CommandError("--epochs and --save-model go with --learn SECONDS")
        return None
    if not math.isfinite(args.learn) or args.learn <= 0:
        raise CommandError(f"--learn must be a positive number of seconds, got {args.learn}")
    if args.epochs < 1:
        raise CommandError(f"--epochs must be at least 1, got {args.epochs}")
    if getattr(args, "model", None):
        raise CommandError("--model and --learn exclude each other: --learn trains its own model")
    if args.save_model is not None and args.save_model.is_dir():
        raise CommandError(f"--save-model {args.save_model}: is a folder, give a file name")
    try:
        learned = learn_start(args.capture, args.learn, TrainConfig(epochs=args.epochs),
                              threads=settings.torch_threads, batch_size=args.batch_size,
                              progress=_epoch_line)
    except (CaptureFileError, TrainingError) as exc:
        raise CommandError(str(exc)) from None
    note = settle_note(args.learn)
    if note:
        _say(note)
    report = learned.report
    saved = ""
    if args.save_model is not None:
        try:
            saved = f"; saved to {save(report.checkpoint, args.save_model)}"
        except OSError as exc:
            raise CommandError(f"{args.save_model}: cannot write ({exc.strerror})") from None
    _say(f"learned from the first {args.learn:,g} s of capture time ({learned.learned:,} "
         f"packets): {report.epochs} epochs (best {report.best_epoch}, validation loss "
         f"{report.checkpoint.metadata['metrics']['best_val_loss']:.4f}) in "
         f"{report.seconds:.0f} s; the model's threshold is {report.checkpoint.threshold:g}"
         f"{saved}")
    return learned


def teach(learned: LearnedStart | None, sink: EventSink | None,
          stream: StreamBehaviour | None) -> None:
    """With ``--learn``: the behaviour and DNS detectors learn this network's normal from the
    learning part too (long-held services, busy servers, domains of many names), as the
    model did, and say so. ``sink``: the event sink, when events are stored; ``stream``: the
    behaviour merged into scores without one."""
    if learned is None or (sink is None and stream is None):
        return
    if sink is not None:
        sink.learn_behaviour(learned.connections)
        sink.learn_dns(learned.dns)
        dns = f" and {len(learned.dns):,} DNS messages"
    else:
        assert stream is not None
        stream.detectors.learn(learned.connections)
        dns = ""  # no DNS detectors without events to store
    _say(f"the behaviour detectors learned this network's normal from the learning part's "
         f"{len(learned.connections):,} connections{dns}")


def _epoch_line(epoch: int, train_loss: float, val_loss: float) -> None:
    _say(f"learning: epoch {epoch:3d}  train loss {train_loss:.4f}  validation loss "
         f"{val_loss:.4f}")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
