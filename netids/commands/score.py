"""``python app.py score CAPTURE --out SCORES.csv``: score every packet of a capture file.

SCORES.csv has one row per packet of the file, in file order, including packets that could
not be decoded (their fields are empty). With ``--db`` the anomalies are also aggregated into
events and stored, exactly as the live app does.
"""

from __future__ import annotations

import argparse
import gc
import logging
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np

from netids.capture.files import FileProgress
from netids.capture.pcapfile import CaptureFileError, check_capture, read_batches
from netids.commands import (
    CommandError,
    add_conn_retention_option,
    add_eve_options,
    counted,
    fraction,
)
from netids.commands.progress import TerminalBar
from netids.commands.score_conn import ConnLog
from netids.commands.score_learn import learn_first, teach
from netids.config import Settings
from netids.detect.connections import ConnConfig
from netids.detect.frames import FrameBatch
from netids.detect.keytable import TableStats
from netids.detect.packet_behaviour import StreamBehaviour
from netids.detect.packets import PacketBatch
from netids.detect.pipeline import Pipeline
from netids.detect.score_csv import HEADER, format_rows, rewrite_rows
from netids.detect.scored import ScoredBatch, Verdicts
from netids.detect.tracking import ConnFeed
from netids.parallel.allocator import keep_freed_memory
from netids.parallel.workers import OrderedPool, WorkerError, can_fork
from netids.training.checkpoint import CheckpointError, load_detector
from netids.training.train import TrainConfig

log = logging.getLogger(__name__)

MAX_WAITING = 8  # batches featurised but not yet written, at most (bounds memory)
MAX_WORKERS = 64  # more scoring processes than this only exhaust the machine


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(name, help="score every packet of a pcap/pcapng file")
    p.add_argument("capture", type=Path, help="pcap or pcapng file")
    p.add_argument("--out", type=Path, required=True, help="CSV to write, one row per packet")
    p.add_argument("--threshold", type=fraction, help="anomaly threshold 0..1 (default: model's)")
    p.add_argument("--fixed-threshold", action="store_true",
                   help="keep the model's calibration as trained instead of letting it follow "
                        "the capture's clean traffic")
    p.add_argument("--batch-size", type=counted(1, 1 << 20), default=4096,
                   help="packets per pipeline batch")
    p.add_argument("--workers", type=counted(0, MAX_WORKERS),
                   help="processes judging batches beside the main one, which helps when they "
                        "are busy (default: one per core but one; 0: all in the main process)")
    p.add_argument("--no-behaviour", dest="behaviour", action="store_false",
                   help="score packets by their headers alone: leave the behaviour of their "
                        "connections (scans, brute force, beacons) out of the scores")
    add_eve_options(p)
    p.add_argument("--conn", type=Path, metavar="FILE",
                   help="also write the connections as a Zeek-style conn.log (TSV)")
    add_conn_retention_option(p)
    learn = p.add_argument_group("an unfamiliar network: learn it from the capture's start")
    learn.add_argument("--learn", type=float, metavar="SECONDS",
                       help="train a model on the first SECONDS of capture time, then score "
                            "only the rest with it")
    learn.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                       help="with --learn: training epochs at most")
    learn.add_argument("--save-model", type=Path, metavar="PATH",
                       help="with --learn: keep the learned model as a checkpoint")


def run(args: argparse.Namespace, settings: Settings) -> int:
    _check_paths(args.capture, args.out)
    conn_path = _conn_path(args)
    if getattr(args, "db", None) is not None:
        _check_url(settings.db_url)
    keep_freed_memory()  # batches reuse their arrays' memory instead of page-faulting anew
    learned = learn_first(args, settings)
    pipeline = (learned.pipeline(args.threshold, adapt=settings.adapt_threshold) if learned
                else _pipeline(args, settings))
    workers = settings.score_workers if args.workers is None else args.workers
    # everything loaded so far lives until the end: out of the cyclic collector's sight, a
    # full collection no longer walks the model and libraries (80 ms each time), and forked
    # workers do not copy the pages it would touch
    gc.freeze()
    started = time.perf_counter()
    error: Exception | None = None
    progress, bar = FileProgress([args.capture]), TerminalBar.for_settings("scoring", settings)
    count = progress.counter(args.capture)

    def done(frames: FrameBatch) -> None:
        count(frames)
        bar.show(progress.snapshot())

    with scoring_pool(pipeline, workers) as pool:
        # the sink starts a writer thread: open it only once the workers are forked
        db = bool(getattr(args, "db", None))
        sink = _EventSink.open(settings, db) if db or settings.eve.path else None
        stream, rescore = _behaviour(args, sink)
        teach(learned, sink.sink if sink else None, stream)
        conns = _conn_log(conn_path, sink)
        try:
            with _open_out(args.out) as out:
                error = score_file(args.capture, out, pipeline, pool, sink, args.batch_size,
                                   done, learned.rest if learned else None, conns, rescore)
        except OSError as exc:  # the output: a full disk, a device that refuses writes
            raise CommandError(f"{args.out}: cannot write ({exc.strerror}) after "
                               f"{pipeline.stats.packets} packets") from None
        finally:
            bar.clear()
            tables, conn_summary = _finish(sink, conns)
    s = pipeline.stats
    if error is not None:
        what = f"scoring failed: {error}" if isinstance(error, WorkerError) else str(error)
        raise CommandError(f"{what} ({s.packets} packets scored and written to {args.out})")
    if s.packets == 0:
        raise CommandError(f"{args.capture}: the capture holds no packets")
    elapsed = time.perf_counter() - started
    learned_words = f"{learned.summary()}: " if learned else ""
    by_behaviour = sink.sink.behaviour_flagged if sink else \
        stream.packets.flagged if stream else 0
    through = f" ({by_behaviour} through behaviour alone)" if by_behaviour else ""
    sys.stderr.write(f"{learned_words}{s.packets} packets scored in {elapsed:.1f} s "
                     f"({s.packets / elapsed:,.0f}/s), {s.anomalies + by_behaviour} anomalous"
                     f"{through} at threshold "
                     f"{pipeline.threshold:.3f}, {s.undecoded} not decodable; wrote {args.out}\n")
    sys.stderr.write("".join(f"{a.summary()}\n" for a in [pipeline.adapter] if a and a.summary()))
    tables = pipeline.context.table_stats() + tables
    tables += [conns.tracker.stats()] if conns else []
    sys.stderr.write("state: " + ", ".join(t.text() for t in tables) + "\n" + conn_summary)
    return 0


def _behaviour(args: argparse.Namespace,
               sink: _EventSink | None) -> tuple[StreamBehaviour | None, Rescore | None]:
    """What merges behaviour into the scores (None with ``--no-behaviour``): the sink's
    detectors, or without events to store the connections and detectors alone (the store
    is not even imported)."""
    if not getattr(args, "behaviour", True):
        return None, None
    if sink is not None:
        return None, sink.sink.rescore
    stream = StreamBehaviour()
    return stream, stream.rescore


def _conn_log(path: Path | None, sink: _EventSink | None) -> ConnLog | None:
    """``--conn``: a tracker of its own, or with ``--db`` the event sink's, so the file and
    the database hold the same records (uids included) for the cost of one tracker; only the
    file has a flood's one-shots (:mod:`netids.detect.conn_fold`)."""
    if path is None:
        return None
    feed = sink.sink.conns if sink else None
    conns = ConnLog(path, feed=feed)
    if sink and feed:
        sink.sink.on_conns = conns.write
    return conns


def _finish(sink: _EventSink | None, conns: ConnLog | None) -> tuple[list[TableStats], str]:
    """Close the connection log and the sink (the shared tracker's last records go to both,
    every event is closed and stored); the sink's bounded tables and the summary lines."""
    tables: list[TableStats] = []
    summary = ""
    try:
        if sink:
            sink.sink.close_connections()
        summary = conns.close() if conns else ""
    finally:
        if sink:
            tables = sink.sink.own_tables(connections=not conns)  # before close() ends events
            summary += sink.summary()
            sink.close()
    return tables, summary


def _pipeline(args: argparse.Namespace, settings: Settings) -> Pipeline:
    """The pipeline of the configured model."""
    try:
        detector = load_detector(settings.model_path, threads=settings.torch_threads)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc
    return Pipeline(detector, threshold=args.threshold, adapt=settings.adapt_threshold)


# first index, packets, features, calibration scale, stream start
Task = tuple[int, PacketBatch, np.ndarray, float, float | None]
Rows = tuple[str, Verdicts]  # CSV text of the batch, and the verdicts it shows
# a scored batch and its nines -> with behaviour merged in, and the final nines (None: same)
Rescore = Callable[[ScoredBatch, np.ndarray], tuple[ScoredBatch, np.ndarray | None]]


def scoring_pool(pipeline: Pipeline, workers: int) -> OrderedPool[Task, Rows]:
    """Worker processes that judge featurised batches and format their CSV rows."""
    return OrderedPool(partial(judge_rows, pipeline), workers if can_fork() else 0)


def judge_rows(pipeline: Pipeline, task: Task) -> Rows:
    first_index, packets, features, scale, started = task
    verdicts = pipeline.judge(packets, features, scale, started)
    return format_rows(first_index, packets, verdicts), verdicts


def score_file(capture: Path, out: TextIO, pipeline: Pipeline,
               pool: OrderedPool[Task, Rows], sink: _EventSink | None = None,
               batch_size: int = 4096,
               done: Callable[[FrameBatch], None] | None = None,
               batches: Iterable[FrameBatch] | None = None,
               conns: ConnLog | None = None,
               rescore: Rescore | None = None) -> Exception | None:
    """Write the CSV of ``capture`` to ``out``; return the error that ended it early: the
    file's (:class:`CaptureFileError`) or a worker's (:class:`WorkerError`).

    The main process reads and featurises batch after batch (context features must see the
    stream in order) while ``pool`` judges and formats earlier batches on the other cores (or
    here, when they are busy); rows are written, counted and stored in file order as their
    batches come back, and only then reported ``done`` (progress counts packets written, not
    packets read ahead). ``batches``: the file's frames when they are already being read
    (``--learn`` hands on those after its learning part). ``conns``: the connection log
    (``--conn``), fed the batches in file order. ``rescore``: merges behaviour into the
    scores (:mod:`netids.detect.packet_behaviour`), each batch in file order.
    """
    out.write(",".join(HEADER) + "\n")
    waiting: deque[tuple[FrameBatch, PacketBatch, np.ndarray]] = deque()

    def write_oldest() -> None:
        text, verdicts = pool.next()
        frames, packets, features = waiting.popleft()
        scored = pipeline.record(frames, packets, features, verdicts)
        if rescore:  # behaviour raises scores: its rows are written anew
            scored, nines = rescore(scored, verdicts.nines)
            if nines is not None:
                text = rewrite_rows(text, frames.first_index, packets, Verdicts(
                    scored.scores, scored.anomalous, scored.kinds, scored.explanations, nines),
                    nines != verdicts.nines)
        out.write(text)
        if sink:
            sink.add(scored)
        if conns:
            conns.add(packets)
        if done:
            done(frames)

    error: Exception | None = None
    try:
        try:
            for frames in read_batches(capture, batch_size) if batches is None else batches:
                frames, packets, features = pipeline.featurise(frames)
                pool.submit((frames.first_index, packets, features, pipeline.next_scale(),
                             pipeline.started))
                waiting.append((frames, packets, features))
                while pool.ready() or pool.pending >= MAX_WAITING:
                    write_oldest()
        except CaptureFileError as exc:
            error = exc  # rows already read are still written; the caller says what went wrong
        while pool.pending:
            write_oldest()
    except WorkerError as exc:
        return exc
    return error


def _check_paths(capture: Path, out: Path, option: str = "--out") -> None:
    """Refuse a capture that cannot be read, or an output that would overwrite it, before
    the output is created: a mistyped command must not clobber anything."""
    try:
        check_capture(capture)
    except CaptureFileError as exc:
        raise CommandError(str(exc)) from None
    if out.exists() and out.resolve() == capture.resolve():
        raise CommandError(f"{out}: {option} is the capture itself; write it elsewhere")


def _conn_path(args: argparse.Namespace) -> Path | None:
    """``--conn FILE``, checked like ``--out`` and refused when it is ``--out`` too."""
    path: Path | None = getattr(args, "conn", None)
    if path is not None:
        _check_paths(args.capture, path, "--conn")
        if path.resolve() == args.out.resolve():
            raise CommandError(f"{path}: --conn and --out are the same file")
    return path


def _check_url(url: str) -> None:
    from netids.store.engine import DatabaseURLError, check_url

    try:
        check_url(url)
    except DatabaseURLError as exc:
        raise CommandError(str(exc)) from None


def _open_out(path: Path) -> TextIO:
    try:
        return path.open("w", newline="")
    except OSError as exc:
        raise CommandError(f"{path}: cannot write ({exc.strerror})") from exc


class _EventSink:
    """``--db`` and ``--eve``: the app's event sink on a store and an EVE file of its own,
    closed with the command."""

    def __init__(self, settings: Settings, db: bool) -> None:
        from netids.store.engine import open_database
        from netids.store.eve import EveLog
        from netids.store.sink import EventSink
        from netids.store.writer import EventStore

        self.eve = EveLog(settings.eve, settings.sensor) if settings.eve.path else None
        try:
            self.store = EventStore(open_database(settings.db_url, settings.storage),
                                    sensor=settings.sensor, settings=settings.storage) \
                if db else None
        except BaseException:
            if self.eve:
                self.eve.close()
            raise
        # uids must not repeat across runs and sensors sharing a database: a random seed
        # followed for the database and for the EVE file's behaviour events alike
        conns = ConnFeed(ConnConfig(seed=secrets.randbits(63))) if db or self.eve else None
        self.sink = EventSink(self.store, eve=self.eve, conns=conns)

    @classmethod
    def open(cls, settings: Settings, db: bool) -> _EventSink:
        from sqlalchemy.exc import SQLAlchemyError

        from netids.store.engine import safe_url
        from netids.store.eve import EveError

        try:
            return cls(settings, db)
        except EveError as exc:
            raise CommandError(str(exc)) from exc
        except (SQLAlchemyError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(f"cannot open the database {safe_url(settings.db_url)}: "
                               f"{reason}") from None

    def add(self, scored: ScoredBatch) -> None:
        self.sink.add(scored)

    def summary(self) -> str:
        """Lines on the connections stored (none without ``--db``) and the behaviour alerts."""
        behaviour = self.sink.behaviour
        alerts = (f"{behaviour.alerts:,} behaviour alerts (scans, brute force, beacons) "
                  "stored as events\n" if behaviour is not None else "")
        found = self.sink.payload.findings
        alerts += (f"{found:,} payload findings (web attacks, executables over HTTP, "
                   "Heartbleed) stored as events\n" if found else "")
        dns = self.sink.dns.alerts
        alerts += (f"{dns:,} DNS alerts (tunnelling, NXDOMAIN bursts) stored as events\n"
                   if dns else "")
        folded = self.sink.fold.folded
        flood = (f" ({folded:,} one-packet connections of floods counted, not stored)"
                 if folded else "")
        return (f"{self.sink.connections:,} connection records stored in the database"
                f"{flood}\n" if self.store else "") + alerts

    def close(self) -> None:
        self.sink.finish()
        if self.eve:
            self.eve.close()
        stats = self.store.close() if self.store else None
        if stats and (stats.pending or stats.dropped):
            raise CommandError(f"{stats.pending + stats.dropped} events could not be stored: "
                               f"{stats.last_error}")
        lost = stats.conn_pending + stats.conn_dropped if stats else 0
        if lost:
            raise CommandError(f"{lost} connection records could not be stored: "
                               f"{stats.last_error if stats else ''}")
        if self.eve and self.eve.lost:
            raise CommandError(f"{self.eve.lost} EVE lines could not be written to "
                               f"{self.eve.path}: {self.eve.last_error}")
