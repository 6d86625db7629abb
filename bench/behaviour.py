"""Behaviour detectors (scans, slow scans, brute force, beacons) on the shared captures.

    .venv/bin/python bench/behaviour.py [--data ../shared/data] [--lab DIR ...]

Per kind (port_scan, host_sweep, ssh_bruteforce, ftp_bruteforce):
1. capture detection: the share of the shared attack captures of that kind on which the
   detectors raise an alert of the matching family (a scan kind, or brute_force), and of the
   episodes of that kind placed in mixed_dev.pcap (an alert of the family whose span overlaps
   the episode's);
2. per-connection detection at 1 % false alarms: every record gets a behaviour score (its
   source's evidence as a share of the threshold); the threshold is the 99th percentile of the
   scores of every benign capture's records, and the figure is the share of the attack
   captures' records scoring above it.
Then false alerts per hour of traffic on every benign capture (and on mixed_dev.pcap's
benign part: alerts overlapping no attack episode), with each alert's why, and the cost of
the detectors per record against the connection tracker's in the same run. ``--lab DIR``
adds the lab captures in DIR (``python app.py lab --attacks none``): normal traffic whose
alerts count as false too; ``--lab-attacks FILE ...`` lab captures with attacks, each kind
found or not.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.detect.behaviour import BehaviourDetectors  # noqa: E402
from netids.detect.behaviour_base import BehaviourAlert  # noqa: E402
from netids.detect.conn_fold import FloodFold  # noqa: E402
from netids.detect.conn_records import ConnRecord  # noqa: E402
from netids.detect.connections import ConnTracker  # noqa: E402
from netids.detect.decode import decode  # noqa: E402

KINDS = {"port_scan": "scan", "host_sweep": "scan", "ssh_bruteforce": "brute",
         "ftp_bruteforce": "brute", "c2": "beacon"}
FAMILY = {"vertical_scan": "scan", "horizontal_scan": "scan", "scan": "scan",
          "slow_scan": "scan", "brute_force": "brute", "login_after_guessing": "brute",
          "beacon": "beacon"}


def run(path: Path, keep_records: bool = False, learned: list[ConnRecord] | None = None,
        ) -> tuple[list, list, float, float, int]:
    """Alerts, per-record scores (with ``keep_records``: (ts, score) pairs), tracker and
    detector seconds, and the records, for one file; with ``learned``, the detectors learn
    those records' normal first."""
    tracker, detectors, fold = ConnTracker(), BehaviourDetectors(), FloodFold()
    if learned is not None:
        detectors.learn(learned)
    alerts: list[BehaviourAlert] = []
    scores: list = []
    track = detect = 0.0
    n = 0
    batches: list = [decode(f) for f in read_batches(path, 4096)]
    for batch in [*batches, None]:
        start = time.perf_counter()
        records = tracker.update(batch) if batch is not None else tracker.flush()
        middle = time.perf_counter()
        folded = fold.flood_rows(records.parts[0]) if records.parts else np.zeros(0, bool)
        result = detectors.observe([r for r, f in zip(records, folded, strict=True) if not f],
                                   tracker.now)
        detect += time.perf_counter() - middle
        track += middle - start
        alerts += result.alerts
        given = iter(result.scores)  # a flood's folded one-shot: its source's scan evidence
        scores += [(r.ts, s) if keep_records else s
                   for r, s in ((r, scan_share(detectors, r.orig_h) if f else next(given))
                                for r, f in zip(records, folded, strict=True))
                   if not r.in_progress]
        n += len(records)
    return alerts, scores, track, detect, n


def scan_share(detectors: BehaviourDetectors, source: str) -> float:
    """The evidence a scanner's record carries: its source's failed pairs as a share of the
    limit (what a folded repeat of a probe would have scored; 0 for a lone spoofed source)."""
    scans = detectors.scans
    held = scans.fast.peek(source)
    return held.total.estimate / scans.threshold(source) if held is not None else 0.0


def manifest(data: Path) -> list[dict[str, str]]:
    with open(data / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--lab", type=Path, nargs="*", default=[])
    parser.add_argument("--lab-attacks", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    rows = manifest(args.data)
    cost = [0.0, 0.0, 0]
    benign_scores: list[float] = []
    false_lines: list[str] = []
    hours = 0.0
    benign = [args.data / r["file"] for r in rows if r["label"] == "benign"]
    benign += [p for d in args.lab for p in sorted(d.glob("*.pcap"))]
    for path in benign:
        alerts, scores, track, detect, n = run(path)
        cost = [cost[0] + track, cost[1] + detect, cost[2] + n]
        benign_scores += scores
        hours += _duration(path) / 3600
        false_lines += [f"  {path.name}: {a.kind} {a.why}" for a in alerts]
    threshold = float(np.quantile(benign_scores, 0.99)) if benign_scores else 0.0
    print(f"benign: {len(benign)} captures, {hours:.1f} h of traffic (gaps over 10 min as 10 min)"
          f", {len(benign_scores)} records; "
          f"99th percentile of record scores {threshold:.3f}")
    print(f"false alerts on benign captures: {len(false_lines)} ({len(false_lines) / hours:.3f}"
          f" an hour)")
    print("\n".join(false_lines))
    print("\nkind            captures  detected  records  records>thr@1%FA")
    for kind, family in KINDS.items():
        files = [args.data / r["file"] for r in rows if r["label"] == kind]
        hit, pos, above = 0, 0, 0
        for path in files:
            alerts, scores, track, detect, n = run(path)
            cost = [cost[0] + track, cost[1] + detect, cost[2] + n]
            hit += any(FAMILY[a.kind] == family for a in alerts)
            pos += len(scores)
            above += sum(s > threshold for s in scores)
        print(f"{kind:15} {len(files):8} {hit:9} {pos:8} {above / max(pos, 1):17.3f}")
    mixed(args.data, cost)
    beacons(benign)
    for path in args.lab_attacks:
        lab_episodes(path, cost)
    print(f"\ncost: detectors {cost[1] * 1e6 / max(cost[2], 1):.1f} us/record against the "
          f"tracker's {cost[0] * 1e6 / max(cost[2], 1):.1f} us/record, same files, same run "
          f"({cost[2]} records; ratio {cost[1] / max(cost[0], 1e-9):.3f})")


def mixed(data: Path, cost: list[float]) -> None:
    """Episodes of each kind in mixed_dev.pcap found, and alerts outside every episode.

    An episode is found by an alert of its family overlapping it, or, for a scanner already
    alerted on in an earlier episode (one alert an hour), by its connections scoring over the
    limit while it runs."""
    spec = json.loads((data / "mixed_dev.segments.json").read_text())
    alerts, scored, track, detect, n = run(data / "mixed_dev.pcap", keep_records=True)
    cost[:] = [cost[0] + track, cost[1] + detect, cost[2] + n]
    segments = spec["segments"]
    print("\nmixed_dev.pcap episodes: alert overlapping / alert or source over the limit")
    for kind, family in KINDS.items():
        eps = [s for s in segments if s["kind"] == kind]
        by_alert = [any(FAMILY[a.kind] == family and a.first <= s["end_time"] + 1
                        and a.last >= s["start_time"] - 1 for a in alerts) for s in eps]
        by_score = [hit or any(score >= 1.0 and s["start_time"] <= ts <= s["end_time"]
                               for ts, score in scored) for hit, s in zip(by_alert, eps,
                                                                          strict=True)]
        print(f"  {kind:15} {sum(by_alert)}/{len(eps)}  {sum(by_score)}/{len(eps)}")
    outside = [a for a in alerts if not any(a.first <= s["end_time"] + 1
                                            and a.last >= s["start_time"] - 1 for s in segments)]
    other = [a for a in alerts if a not in outside]
    hours = spec["duration_s"] / 3600
    print(f"  alerts outside every attack episode: {len(outside)} in {hours:.2f} h")
    for a in outside:
        print(f"    {a.kind} {a.why}")
    print(f"  alerts on attack episodes: {len(other)}: "
          + ", ".join(sorted({f'{a.kind}' for a in other})))


def beacons(benign: list[Path]) -> None:
    """Beacon alerts per hour on each benign capture, as is and after learning that capture
    (the learned normal of a network watched over the same traffic)."""
    print("\nbeacon alerts on benign captures: capture, hours, records, alerts (per hour) "
          "without learn / with learn")
    total = [0.0, 0, 0]
    for path in benign:
        tracker, records = ConnTracker(), []
        for frames in read_batches(path, 4096):
            records += tracker.update(decode(frames))
        records += tracker.flush()
        hours = _duration(path) / 3600
        plain = [a for a in run(path)[0] if a.kind == "beacon"]
        learned = [a for a in run(path, learned=records)[0] if a.kind == "beacon"]
        total = [total[0] + hours, total[1] + len(plain), total[2] + len(learned)]
        print(f"  {path.name:45} {hours:7.2f} h {len(records):6} {len(plain):3} "
              f"({len(plain) / max(hours, 1e-9):.2f}) / {len(learned):3} "
              f"({len(learned) / max(hours, 1e-9):.2f})")
        for a in plain:
            print(f"    {a.why}")
    print(f"  all: {total[0]:.1f} h, {total[1]} alerts without learn "
          f"({total[1] / total[0]:.3f} an hour), {total[2]} with ({total[2] / total[0]:.3f})")


def lab_episodes(path: Path, cost: list[float]) -> None:
    """Each attack kind of a lab capture (its labels beside it), found as in :func:`mixed`."""
    spans: dict[str, list[float]] = {}
    with open(path.with_suffix(".labels.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] == "1":
                span = spans.setdefault(row["attack_kind"], [np.inf, -np.inf])
                span[:] = [min(span[0], float(row["timestamp"])),
                           max(span[1], float(row["timestamp"]))]
    alerts, scored, track, detect, n = run(path, keep_records=True)
    cost[:] = [cost[0] + track, cost[1] + detect, cost[2] + n]
    print(f"\n{path.name}: {len(alerts)} alerts: " + "; ".join(a.why for a in alerts))
    for kind, (start, end) in sorted(spans.items()):
        by_alert = any(a.first <= end + 1 and a.last >= start - 1 for a in alerts)
        by_score = any(score >= 1.0 and start <= ts <= end for ts, score in scored)
        print(f"  {kind:15} alert {'yes' if by_alert else 'no'}, over the limit while it ran "
              f"{'yes' if by_score else 'no'}")


def _duration(path: Path) -> float:
    """Hours of traffic in seconds: gaps over 10 min count as 10 min (zeek__ssh.pcap joins
    traces years apart; an IoT capture idles for days)."""
    ts = np.sort(np.concatenate([b.ts for b in map(decode, read_batches(path, 4096))]))
    return float(np.minimum(np.diff(ts), 600.0).sum()) if len(ts) > 1 else 0.0

if __name__ == "__main__":
    main()
