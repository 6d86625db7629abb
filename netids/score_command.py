"""``python app.py score CAPTURE --out SCORES.csv``: score every packet of a capture file.

SCORES.csv has one row per packet of the file, in file order, including packets that could
not be decoded (their fields are empty). With ``--db`` the anomalies are also aggregated into
events and stored, exactly as the live app does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import numpy as np

from netids.checkpoint import CheckpointError
from netids.cli import CommandError
from netids.config import Settings
from netids.detector import Detector
from netids.frames import FrameBatch
from netids.packets import PacketBatch
from netids.pcapfile import CaptureFileError, read_batches
from netids.pipeline import Pipeline
from netids.score_csv import HEADER, format_rows
from netids.scored import ScoredBatch

log = logging.getLogger(__name__)



def add_parser(sub: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(name, help="score every packet of a pcap/pcapng file")
    p.add_argument("capture", type=Path, help="pcap or pcapng file")
    p.add_argument("--out", type=Path, required=True, help="CSV to write, one row per packet")
    p.add_argument("--threshold", type=float, help="anomaly threshold 0..1 (default: model's)")
    p.add_argument("--batch-size", type=int, default=4096, help="packets per pipeline batch")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be between 0 and 1, got {args.threshold}")
    try:
        detector = Detector.load(settings.model_path, threads=settings.torch_threads)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc
    pipeline = Pipeline(detector, threshold=args.threshold)
    sink = _EventSink.open(settings) if getattr(args, "db", None) else None
    started = time.perf_counter()
    error: CaptureFileError | None = None
    try:
        with _open_out(args.out) as out:
            error = score_file(args.capture, out, pipeline, sink, args.batch_size)
    finally:
        if sink:
            sink.close()
    s = pipeline.stats
    if error is not None:
        raise CommandError(f"{error} ({s.packets} packets scored and written to {args.out})")
    if s.packets == 0:
        raise CommandError(f"{args.capture}: the capture holds no packets")
    elapsed = time.perf_counter() - started
    sys.stderr.write(f"{s.packets} packets scored in {elapsed:.1f} s "
                     f"({s.packets / elapsed:,.0f}/s), {s.anomalies} anomalous at threshold "
                     f"{pipeline.threshold:.3f}, {s.undecoded} not decodable; wrote {args.out}\n")
    return 0


def score_file(capture: Path, out: TextIO, pipeline: Pipeline, sink: _EventSink | None = None,
               batch_size: int = 4096) -> CaptureFileError | None:
    """Write the CSV of ``capture`` to ``out``; return the file error that ended it early.

    Two stages overlap: while the model scores batch k on a worker thread (torch releases the
    GIL), the main thread decodes and featurises batch k + 1.
    """
    out.write(",".join(HEADER) + "\n")

    def finish(stage: tuple[FrameBatch, PacketBatch, np.ndarray]) -> None:
        scored = pipeline.score(*stage)
        out.write(format_rows(scored))
        if sink:
            sink.add(scored)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="netids-score") as pool:
        pending: Future[None] | None = None
        try:
            for frames in read_batches(capture, batch_size):
                stage = pipeline.featurise(frames)
                if pending is not None:
                    pending.result()
                pending = pool.submit(finish, stage)
        except CaptureFileError as exc:
            return exc  # rows already written stay; the caller says what went wrong
        finally:
            if pending is not None:
                pending.result()
    return None


def _open_out(path: Path) -> TextIO:
    try:
        return path.open("w", newline="")
    except OSError as exc:
        raise CommandError(f"{path}: cannot write ({exc.strerror})") from exc


class _EventSink:
    """Aggregates anomalies into events and stores them, as the live app does."""

    def __init__(self, settings: Settings) -> None:
        from netids.events import EventAggregator
        from netids.storage import EventStore, open_database

        self.aggregator = EventAggregator()
        self.store = EventStore(open_database(settings.db_url), sensor=settings.sensor)

    @classmethod
    def open(cls, settings: Settings) -> _EventSink:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return cls(settings)
        except (SQLAlchemyError, OSError) as exc:
            raise CommandError(f"cannot open the database: {exc}") from exc

    def add(self, scored: ScoredBatch) -> None:
        self.store.write(self.aggregator.add(scored))
        if len(scored):
            self.store.write(self.aggregator.flush(float(scored.packets.ts[-1])))

    def close(self) -> None:
        self.store.write(self.aggregator.flush())
        stats = self.store.close()
        if stats.pending or stats.dropped:
            raise CommandError(f"{stats.pending + stats.dropped} events could not be stored: "
                               f"{stats.last_error}")
