"""``python app.py evaluate CAPTURE --labels LABELS.csv``: score a labelled capture with the
model and both baselines (trained on the model's own normal training data) and print the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import CaptureFileError
from netids.commands import CommandError
from netids.commands.mix import parse_part
from netids.config import Settings
from netids.detect.detector import Detector
from netids.detect.packets import PacketBatch
from netids.lab.mixing import read_labels
from netids.training import evaluate as ev
from netids.training.checkpoint import CheckpointError, load_detector
from netids.training.data import read_capture

log = logging.getLogger(__name__)


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
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--markdown", help="also write the table to this file")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        detector = load_detector(settings.model_path, threads=args.threads)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    try:
        packets, feats = read_capture(args.capture)
    except (CaptureFileError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    if feats.shape[1] != len(detector.feature_names):
        raise CommandError("the model was trained on other context features than this netids "
                           "computes: retrain it with `python app.py train`")
    if not Path(args.labels).is_file():
        raise CommandError(f"labels not found: {args.labels}")
    idx, lab, kinds = read_labels(Path(args.labels))
    labels = np.zeros(len(packets), np.int8)
    kind = np.full(len(packets), "", dtype=object)
    ok = idx < len(packets)
    if ok.sum() < len(packets) or len(np.unique(idx[ok])) < len(packets):
        raise CommandError(f"{args.labels} does not label every packet of {args.capture} "
                           f"({int(ok.sum())} rows for {len(packets)} packets)")
    labels[idx[ok]] = lab[ok]
    kind[idx[ok]] = np.asarray(kinds, dtype=object)[ok]

    t = time.perf_counter()
    method_scores = {"netids transformer": detector.score_batch(packets, feats).raw}
    log.info("model scored %d packets in %.1f s", len(packets), time.perf_counter() - t)
    if not args.no_baselines:
        train_packets, train_feats = _training_data(args, detector)
        method_scores["isolation forest"] = ev.isolation_forest(
            ev.model_inputs(detector, train_packets, train_feats),
            ev.model_inputs(detector, packets, feats))
        method_scores["seed transformer"] = ev.seed_transformer(train_packets, packets)
    rows = ev.table(method_scores, labels, list(kind))
    text = ev.format_table(rows)
    _say(f"{args.capture}: {len(packets)} packets, {int(labels.sum())} attack; "
          f"model {settings.model_path}")
    _say(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _training_data(args: argparse.Namespace, detector: Detector) -> tuple[PacketBatch, np.ndarray]:
    meta = detector.checkpoint.metadata
    paths = args.train if args.train else meta.get("sources") or []
    if not paths:
        raise CommandError("no normal captures for the baselines: pass --train CAPTURE...")
    lo, hi = parse_part(args.train_part) if args.train_part else tuple(meta.get("part", (0, 1)))
    packets, feats = [], []
    for path in paths:
        if not Path(path).is_file():
            raise CommandError(f"baseline training capture not found: {path} (pass --train)")
        p, f = read_capture(path)
        a, b = round(lo * len(p)), round(hi * len(p))
        packets.append(p.take(slice(a, b)))
        feats.append(f[a:b])
    return PacketBatch.concat(packets), np.concatenate(feats)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
