"""``python app.py evaluate CAPTURE --labels LABELS.csv``: score a labelled capture with the
model and both baselines (trained on the model's own normal training data) and print the table,
then what the model and IsolationForest flag among the normal packets at their own thresholds
and the false events per hour that makes (see :mod:`netids.training.drift`); with ``--adapt``
also what the model flags with the threshold following the capture's clean traffic.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netids.capture.files import FileProgress
from netids.capture.pcapfile import CaptureFileError
from netids.commands import CommandError, counted, fraction
from netids.commands.mix import parse_part
from netids.commands.progress import TerminalBar
from netids.config import PROJECT_ROOT, Settings
from netids.detect.context import FEATURE_NAMES
from netids.detect.detector import Detector
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch
from netids.lab.mixing import LabelsError, read_labels
from netids.training import drift
from netids.training import evaluate as ev
from netids.training.checkpoint import CheckpointError, load_detector
from netids.training.data import read_capture

log = logging.getLogger(__name__)

ADAPTED = "netids transformer, adapted"  # its row in the false-alarm table (--adapt)


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="ROC-AUC, PR-AUC and detection rates on a labelled capture")
    p.add_argument("capture", metavar="CAPTURE")
    p.add_argument("--labels", required=True, help="CSV with index,label,attack_kind per packet")
    p.add_argument("--train", nargs="*", metavar="CAPTURE",
                   help="normal captures for the baselines (default: the model's own training "
                        "captures, from its metadata)")
    p.add_argument("--train-part", default=None, metavar="FROM:TO",
                   help="fraction range of those captures (default: the model's)")
    p.add_argument("--no-baselines", action="store_true", help="evaluate the model only")
    p.add_argument("--threshold", type=fraction,
                   help="threshold 0..1 for the flagged share and false events (default: the "
                        "model's); IsolationForest's is the same quantile of its training scores")
    p.add_argument("--adapt", action="store_true",
                   help="judge the capture a second time with the threshold following its clean "
                        "traffic, as score and the live app do, and give both in the "
                        "false-alarm table (default: the calibration as trained only)")
    p.add_argument("--warm-up", dest="warmup", action="store_true",
                   help="discount the capture's first 10 s as a live sensor starting inside a "
                        "running network does (default: judged from its first packet)")
    p.add_argument("--no-behaviour", dest="behaviour", action="store_false",
                   help="leave out the row of the model's scores with their connections' "
                        "behaviour merged in (scans, brute force, beacons), as score gives them")
    p.add_argument("--threads", type=counted(1, 1024), default=2, help="torch threads")
    p.add_argument("--markdown", help="also write the table to this file")


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = evaluate(args, settings)
    _say(report.heading)
    _say(ev.format_table(report.rows))
    _say("")
    _say("normal packets at each method's own threshold (attack packets never count):")
    _say(drift.format_own(report.judged.own))
    if args.markdown:
        try:
            Path(args.markdown).write_text(ev.format_table(report.rows) + "\n")
        except OSError as exc:  # the table is printed above all the same
            raise CommandError(f"{args.markdown}: cannot write ({exc.strerror})") from None
    return 0


@dataclass
class Report:
    heading: str  # capture, packets, attacks, model
    rows: list[ev.Row]  # the ranking table
    judged: drift.Judged  # scores, own-threshold figures, false flags
    labels: np.ndarray  # int8 [n], 1 = attack
    kinds: np.ndarray  # object [n], attack kind or ""
    method_scores: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate(args: argparse.Namespace, settings: Settings, *,
             seed_baseline: bool = True) -> Report:
    """Everything ``evaluate`` prints, for callers that want the figures (``bench/``);
    ``seed_baseline=False`` leaves the seed transformer out."""
    threshold = getattr(args, "threshold", None)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise CommandError(f"--threshold must be between 0 and 1, got {threshold}")
    try:
        detector = load_detector(settings.model_path, threads=args.threads)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    if not Path(args.capture).is_file():
        raise CommandError(f"capture not found: {args.capture}")
    if len(FEATURE_NAMES) != len(detector.feature_names):
        raise CommandError("the model was trained on other context features than this netids "
                           "computes: retrain it with `python app.py train`")
    if getattr(args, "train_part", None):
        parse_part(args.train_part)  # a bad range is refused before any work
    labelled, label_of, kind_of = _labels(args.labels)
    size = len(labelled)

    def attack(first: int, n: int) -> np.ndarray:
        if first + n > size or not labelled[first:first + n].all():
            raise CommandError(f"{args.labels} does not label every packet of {args.capture} "
                               f"({int(labelled.sum())} rows, packet {first + n - 1} read)")
        return label_of[first:first + n] == 1

    forest, train_packets = None, None
    baseline_data = None if args.no_baselines else _training_data(args, detector)
    if baseline_data is not None:
        train_packets, train_feats = baseline_data
        forest = ev.Forest.fit(ev.model_inputs(detector, train_packets, train_feats),
                               quantile=detector.threshold if threshold is None else threshold)

    t = time.perf_counter()
    warmup = getattr(args, "warmup", False)
    judged = _judge(args.capture, detector, attack, threshold, forest, settings,
                    behaviour=getattr(args, "behaviour", True), warmup=warmup)
    if getattr(args, "adapt", False):  # only the flags move: the raw scores stay the same
        adapted = _judge(args.capture, detector, attack, threshold, None, settings, adapt=True,
                         warmup=warmup)
        judged.own.insert(1, dataclasses.replace(adapted.own[0], method=ADAPTED))
    n = len(judged.packets)
    log.info("judged %d packets in %.1f s", n, time.perf_counter() - t)
    labels, kind = label_of[:n], kind_of[:n]

    method_scores = {"netids transformer": judged.nines}
    if judged.behaviour is not None:  # the scores `score` writes: header or behaviour
        method_scores[drift.WITH_BEHAVIOUR] = judged.behaviour
    if judged.baseline is not None:
        method_scores["isolation forest"] = judged.baseline
    if seed_baseline and train_packets is not None:
        method_scores["seed transformer"] = ev.seed_transformer(train_packets, judged.packets)
    rows = ev.table(method_scores, labels, list(kind))
    heading = (f"{args.capture}: {n} packets, {int(labels.sum())} attack; "
               f"model {settings.model_path}")
    return Report(heading, rows, judged, labels, kind, method_scores)


def _judge(capture: str, detector: Detector, attack: Callable[[int, int], np.ndarray],
           threshold: float | None, forest: ev.Forest | None, settings: Settings,
           adapt: bool = False, behaviour: bool = False, warmup: bool = False) -> drift.Judged:
    """Every packet of ``capture`` judged by the model (and the forest), with a progress bar;
    ``adapt``: with the threshold following the capture's clean traffic."""
    progress = FileProgress([Path(capture)])
    bar = TerminalBar.for_settings("judging, adapted" if adapt else "judging", settings)
    count = progress.counter(Path(capture))

    def done(frames: FrameBatch) -> None:
        count(frames)
        bar.show(progress.snapshot())

    def forest_scores(packets: PacketBatch, features: np.ndarray) -> np.ndarray:
        assert forest is not None
        return forest.score(ev.model_inputs(detector, packets, features))

    try:
        return drift.judge_capture(
            capture, detector, attack, threshold=threshold,
            baseline=forest_scores if forest else None,
            baseline_threshold=forest.threshold if forest else float("inf"), done=done,
            adapt=adapt, behaviour=behaviour, warmup=warmup)
    except (CaptureFileError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        bar.clear()


def _labels(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool: labelled, int8: label, object: attack kind), indexed by packet."""
    if not Path(path).is_file():
        raise CommandError(f"labels not found: {path}")
    try:
        idx, lab, kinds = read_labels(Path(path))
    except LabelsError as exc:
        raise CommandError(str(exc)) from None
    size = int(idx.max()) + 1 if len(idx) else 0
    labelled = np.zeros(size, bool)
    label_of = np.zeros(size, np.int8)
    kind_of = np.full(size, "", dtype=object)
    ok = idx >= 0
    labelled[idx[ok]] = True
    label_of[idx[ok]] = lab[ok]
    kind_of[idx[ok]] = np.asarray(kinds, dtype=object)[ok]
    return labelled, label_of, kind_of


def _training_data(args: argparse.Namespace,
                   detector: Detector) -> tuple[PacketBatch, np.ndarray] | None:
    """The normal captures the baselines train on: ``--train``, else the model's own (paths
    as its metadata names them, relative to the project). None, said in one line, when the
    model's own are not on this machine: the model's figures are printed all the same."""
    meta = detector.checkpoint.metadata
    if args.train:
        paths = [Path(p) for p in args.train]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"baseline training capture not found: {missing[0]}")
    else:
        paths = [PROJECT_ROOT / p for p in meta.get("sources") or []]
        missing = [p for p in paths if not p.is_file()]
        if not paths or missing:
            what = f"{missing[0]} is not here" if missing else "the model names none"
            sys.stderr.write(f"baselines left out: their training captures are the model's "
                             f"and {what}; pass --train CAPTURE... to compare\n")
            return None
    lo, hi = parse_part(args.train_part) if args.train_part else tuple(meta.get("part", (0, 1)))
    packets, feats = [], []
    for path in paths:
        try:
            p, f = read_capture(path)
        except CaptureFileError as exc:
            raise CommandError(f"baseline training capture {exc}") from None
        a, b = round(lo * len(p)), round(hi * len(p))
        packets.append(p.take(slice(a, b)))
        feats.append(f[a:b])
    return PacketBatch.concat(packets), np.concatenate(feats)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
