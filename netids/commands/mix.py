"""``python app.py mix --normal N.pcap... --attack A.pcap[:KIND]... --out MIX.pcap``: build a
labelled evaluation capture (see :mod:`netids.lab.mixing`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netids.capture.pcapfile import CaptureFileError
from netids.commands import CommandError, bounded, counted
from netids.config import Settings
from netids.lab.mixing import AttackSource, LabelsError, mix


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="mix normal and attack captures into a labelled capture")
    p.add_argument("--normal", nargs="+", required=True, metavar="CAPTURE",
                   help="normal captures, laid out concurrently")
    p.add_argument("--attack", nargs="*", default=[], metavar="CAPTURE[:KIND]",
                   help="attack captures (labels from NAME.labels.csv beside them, else KIND)")
    p.add_argument("--out", required=True, help="mixed pcap to write")
    p.add_argument("--labels", help="labels CSV to write (default: OUT with .labels.csv)")
    p.add_argument("--seed", type=counted(0, 2**32 - 1), default=0,
                   help="placement of the attacks")
    p.add_argument("--max-gap", type=bounded(0.0, 1e9), default=10.0,
                   help="idle gaps cut to this (s)")
    p.add_argument("--max-attack-packets", type=counted(1, 2**62), default=None,
                   help="keep at most this many packets of each attack capture")
    p.add_argument("--normal-part", default="0:1", metavar="FROM:TO",
                   help="fraction range of each normal capture to use, e.g. 0.7:1 for the "
                        "last 30%% (unseen by a model trained with --part 0:0.7)")


def parse_part(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise CommandError(f"part must look like FROM:TO (fractions), got {text!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise CommandError(f"part {text!r} must satisfy 0 <= FROM < TO <= 1")
    return lo, hi


def run(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out)
    labels = Path(args.labels) if args.labels else out.with_name(
        out.name.rsplit(".", 1)[0] + ".labels.csv")
    attacks = []
    for spec in args.attack:
        path, _, kind = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        if not Path(path).is_file():
            raise CommandError(f"attack capture not found: {path}")
        attacks.append(AttackSource(Path(path), kind or None, args.max_attack_packets))
    for path in args.normal:
        if not Path(path).is_file():
            raise CommandError(f"normal capture not found: {path}")
    part = parse_part(args.normal_part)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        labels.parent.mkdir(parents=True, exist_ok=True)
        report = mix([Path(p) for p in args.normal], attacks, out, labels, seed=args.seed,
                     max_gap=args.max_gap, normal_part=part)
    except (CaptureFileError, LabelsError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        where = exc.filename or out  # the pcap is written first, the labels after
        raise CommandError(f"cannot write the mix: {where}: {exc.strerror}") from None
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(report.by_kind.items()))
    _say(f"wrote {out} ({report.packets} packets, {report.attack_packets} attack, "
          f"{report.duration:.0f} s) and {labels}")
    if kinds:
        _say(f"attack packets by kind: {kinds}")
    if report.readdressed:
        _say(f"gave {len(report.readdressed)} captures addresses of their own (they reused "
             f"an earlier capture's)")
    if report.skipped_link_type:
        _say(f"skipped {report.skipped_link_type} frames of another link type")
    return 0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
