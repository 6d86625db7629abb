"""What a detector flags among normal packets at its own threshold, and the false events per
hour that makes (``evaluate``'s second table, ``bench/drift.py``), on real captures."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
import pytest

from netids import cli
from netids.capture.pcapfile import read_batches
from netids.commands import evaluate as evaluate_command
from netids.config import PROJECT_ROOT, Settings
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.scored import ScoredBatch
from netids.lab.mixing import read_labels
from netids.store.export import read_export
from netids.store.sink import EventSink
from netids.training import drift
from netids.training import evaluate as ev
from netids.training.checkpoint import load_detector
from netids.training.data import read_capture

DATA = Path(os.environ.get("NETIDS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
ARP_POISON = "attack/sanders__arppoison.pcapng"  # 52 benign packets, then a MitM (labelled)
BENIGN = "benign/sanders__http_espn_fail.pcapng"  # 569 packets over 95 s
IF_TRAINING = "benign/zeek__cwd-navigation.pcap"  # 8,317 packets
SMALL = "benign/zeek__smb2.pcap"  # 1,178 packets
UDP_SCAN = "attack/evilfingers__UDP_SCAN.pcap"  # nmap -sU: 1,034 probes, 993 unreachables


@pytest.fixture(scope="module")
def data() -> Path:
    if not (DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared captures not found at {DATA} (set NETIDS_SHARED_DATA)")
    return DATA


@pytest.fixture(scope="module")
def detector(trained_model):
    return load_detector(trained_model, threads=1)


def labels_of(capture: Path) -> np.ndarray:
    idx, lab, _ = read_labels(capture.with_name(capture.name.rsplit(".", 1)[0] + ".labels.csv"))
    out = np.zeros(idx.max() + 1, bool)
    out[idx] = lab == 1
    return out


# ------------------------------------------------------------------ counting, exact figures


def burst_batch(frame: bytes, ts: np.ndarray, first_index: int = 0) -> ScoredBatch:
    """Copies of one real frame at times ``ts``, every one anomalous, all of one kind."""
    frames = FrameBatch.from_frames([frame] * len(ts), ts, first_index=first_index)
    packets = decode(frames)
    n = len(ts)
    scores = np.full(n, 0.9999, np.float32)
    return ScoredBatch(frames, packets, np.zeros((n, 1), np.float32), scores, 0.999,
                       np.ones(n, bool), ["unusual size"] * n, ["size 1,400 bytes"] * n)


def test_bursts_of_normal_packets_make_one_event_each_and_attacks_none(data):
    """Four bursts of one real DNS query, each past the time within which an event of the
    same host and kind re-opens (``EventConfig.refold``, 15 min): two normal, one all attack,
    one half attack. Three events, whichever way the batches cut the stream."""
    frame = next(read_batches(data / "benign" / "sanders__dns.pcap")).frame(0)
    ts = np.concatenate([0 + np.arange(40) * 0.01, 1000 + np.arange(40) * 0.01,
                         2000 + np.arange(40) * 0.01, 3000 + np.arange(40) * 0.01])
    attack = np.zeros(160, bool)
    attack[80:120] = True  # the third burst
    attack[120::2] = True  # half the fourth
    for cut in (160, 100, 60, 130):  # one batch, or two cut inside a burst
        counter, sink, ids = drift.EventCounter(), EventSink(None), set()
        for lo, hi in ((0, cut), (cut, 160)):
            if lo == hi:
                continue
            batch = drift.normal_only(burst_batch(frame, ts[lo:hi], lo), attack[lo:hi])
            assert batch.anomalous.sum() == (~attack[lo:hi]).sum() == len(batch.kinds)
            counter.add(batch)
            ids.update(u.id for u in sink.add(batch))
        ids.update(u.id for u in sink.finish())
        assert counter.finish() == 3 == len(ids)  # as the app's own sink counts them


def test_a_batch_without_attacks_is_left_as_it_is(data):
    frame = next(read_batches(data / "benign" / "sanders__dns.pcap")).frame(0)
    batch = burst_batch(frame, np.arange(5.0))
    assert drift.normal_only(batch, np.zeros(5, bool)) is batch
    assert not drift.normal_only(batch, np.ones(5, bool)).anomalous.any()


# ------------------------------------------------------------------ a capture, judged


def test_flagged_share_and_events_match_score_and_its_database(data, detector, tmp_path):
    """A benign capture: the flagged packets are the rows ``score`` marks anomalous, the
    false events the events ``score --db`` stores, at the model's threshold and below it."""
    capture = data / BENIGN
    for threshold in (None, 0.9):
        judged = drift.judge_capture(capture, detector, lambda first, n: np.zeros(n, bool),
                                     threshold=threshold)
        model = judged.own[0]
        db = tmp_path / f"events{threshold}.sqlite"
        argv = ["score", str(capture), "--out", str(tmp_path / "scores.csv"), "--workers", "0",
                "--db", f"sqlite:///{db}", "--model", str(PROJECT_ROOT / "models/default.pt")]
        if threshold is not None:
            argv += ["--threshold", str(threshold)]
        assert cli.main(argv) == 0
        with (tmp_path / "scores.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert cli.main(["export", "--db", f"sqlite:///{db}", "--format", "jsonl",
                         "--out", str(tmp_path / "events.jsonl")]) == 0
        assert model.normal == len(rows) == 569
        assert model.flagged == sum(r["anomaly"] == "1" for r in rows)
        assert model.events == len(read_export(tmp_path / "events.jsonl"))
        assert model.threshold == (threshold or detector.threshold)
        assert model.hours == pytest.approx(95.024 / 3600, rel=1e-3)
        assert model.events_per_hour == pytest.approx(model.events / model.hours)
        assert np.allclose(judged.flagged_at, [float(r["timestamp"]) for r in rows
                                               if r["anomaly"] == "1"], atol=1e-6)
        assert len(judged.event_starts) == model.events
        flagged_kinds = sorted(r["kind"] for r in rows if r["anomaly"] == "1")
        assert sorted(k for (k, _), n in judged.false_flags.items()
                      for _ in range(n)) == flagged_kinds
    assert model.flagged > 0 and model.events > 0  # at 0.9 this capture has false flags


def test_attack_packets_never_count(data, detector):
    """A real ARP-poisoning capture: 53 benign packets, 112 attack ones, labelled per packet.
    At threshold 0 every packet is anomalous; only the benign ones are false flags."""
    capture = data / ARP_POISON
    labels = labels_of(capture)
    judged = drift.judge_capture(capture, detector, lambda first, n: labels[first:first + n],
                                 threshold=0.0)
    own = judged.own[0]
    assert (own.normal, own.flagged, own.share) == (53, 53, 1.0)
    assert sum(judged.false_flags.values()) == 53
    everything = drift.judge_capture(capture, detector,
                                     lambda first, n: np.zeros(n, bool), threshold=0.0).own[0]
    nothing = drift.judge_capture(capture, detector,
                                  lambda first, n: np.ones(n, bool), threshold=0.0).own[0]
    assert 1 <= own.events < everything.events
    assert (nothing.normal, nothing.flagged, nothing.events) == (0, 0, 0)
    assert np.isnan(nothing.share)
    # nothing scores 1 or more: threshold 1 flags nothing
    assert drift.judge_capture(capture, detector, lambda first, n: labels[first:first + n],
                               threshold=1.0).own[0].flagged == 0


def test_as_the_app_flags_answers_and_behaviour_alerts_count_too(data, detector):
    """``behaviour``: the figures of what the app flags. A real UDP scan labelled normal:
    the target's ICMP unreachables take the score of the probes they answer, and the scan
    detector's alerts on the scanner are events, all false; labelled as it is, none is."""
    capture = data / UDP_SCAN
    as_normal = drift.judge_capture(capture, detector, lambda first, n: np.zeros(n, bool),
                                    behaviour=True)
    header, app = as_normal.own
    assert (header.method, app.method) == ("netids transformer", drift.WITH_BEHAVIOUR)
    assert app.flagged >= header.flagged + 900  # the answers
    assert app.events > header.events  # the answers join the probes' events; alerts add
    assert sum(as_normal.false_flags.values()) == app.flagged == len(as_normal.flagged_at)
    labels = labels_of(capture)
    labelled = drift.judge_capture(capture, detector, lambda first, n: labels[first:first + n],
                                   behaviour=True)
    assert (labelled.own[1].flagged, labelled.own[1].events) == (0, 0)


def test_the_baseline_flags_at_its_own_threshold_and_makes_events_alike(data, detector):
    capture = data / ARP_POISON
    labels = labels_of(capture)
    judged = drift.judge_capture(capture, detector, lambda first, n: labels[first:first + n],
                                 baseline=lambda p, f: np.arange(len(p), dtype=float),
                                 baseline_threshold=100.0, baseline_name="count")
    base = judged.own[1]
    # one batch: scores 100.. are the packets from index 100 on, the benign ones count
    assert base.method == "count" and base.flagged == int((~labels[100:165]).sum())
    judged = drift.judge_capture(capture, detector, lambda first, n: labels[first:first + n],
                                 baseline=lambda p, f: np.arange(len(p), dtype=float),
                                 baseline_threshold=0.0)
    assert judged.own[1].flagged == 53 and judged.own[1].events >= 1
    assert np.array_equal(judged.baseline, np.arange(165))


def test_isolation_forest_threshold_is_its_training_percentile(data, detector):
    packets, feats = read_capture(data / IF_TRAINING)
    x = ev.model_inputs(detector, packets, feats)
    forest = ev.Forest.fit(x, quantile=0.999)
    share = float((forest.score(x) >= forest.threshold).mean())
    assert 0.0005 <= share <= 0.002  # a thousandth of its training rows, ties aside


# ------------------------------------------------------------------ the command


def run_evaluate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    evaluate_command.add_parser(parser.add_subparsers(dest="command"), "evaluate")
    return evaluate_command.run(parser.parse_args(["evaluate", *argv]),
                                Settings(model_path=PROJECT_ROOT / "models" / "default.pt"))


def test_evaluate_prints_both_methods_at_their_own_thresholds(data, capsys):
    capture = data / ARP_POISON
    labels = str(capture.with_name("sanders__arppoison.labels.csv"))
    assert run_evaluate([str(capture), "--labels", labels, "--train", str(data / SMALL),
                         "--train-part", "0:1", "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "| all | 112 | netids transformer |" in out  # the ranking table is still there
    table = out[out.index("| method | own threshold"):].splitlines()
    model, app, forest = (line.split("|") for line in table[2:5])
    assert model[1].strip() == "netids transformer" and float(model[2]) == 0.5
    assert app[1].strip() == "netids + behaviour" and float(app[2]) == 0.5  # as the app flags
    assert forest[1].strip() == "isolation forest"
    assert int(model[3]) == int(app[3]) == int(forest[3]) == 53  # normal packets
    with pytest.raises(SystemExit) as refused:  # a usage error, found while parsing
        run_evaluate([str(capture), "--labels", labels, "--threshold", "2"])
    assert refused.value.code == 2
    assert "--threshold: must be a number from 0 to 1, got '2'" in capsys.readouterr().err
