"""Rows of the score CSV written anew where behaviour or answers raised a score: the same
text as formatting the whole batch again (netids/detect/score_csv.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.config import PROJECT_ROOT
from netids.detect.pipeline import Pipeline
from netids.detect.score_csv import format_rows, rewrite_rows
from netids.detect.scored import Verdicts
from netids.training.checkpoint import load_detector


def test_rewriting_the_raised_rows_gives_the_text_of_the_whole_batch(shared_data: Path) -> None:
    """A batch of the dev mix, a scattered tenth of its rows raised past the threshold with
    words of their own (quotes and commas included, as explanations may hold)."""
    pipeline = Pipeline(load_detector(PROJECT_ROOT / "models" / "default.pt"))
    frames = next(iter(read_batches(shared_data / "mixed_dev.pcap", 4096)))
    frames, packets, features = pipeline.featurise(frames)
    before = pipeline.judge(packets, features)
    changed = np.random.default_rng(0).random(len(packets)) < 0.1
    nines = np.where(changed, before.nines + 5.0, before.nines)
    anomalous = before.anomalous | changed
    kinds = np.full(len(packets), "", dtype=object)
    texts = np.full(len(packets), "", dtype=object)
    kinds[before.anomalous], texts[before.anomalous] = before.kinds, before.explanations
    kinds[changed & ~before.anomalous] = "port scan"
    texts[changed & ~before.anomalous] = 'answers a packet flagged as "port scan", from 10.0.0.9'
    after = Verdicts(np.where(changed, 0.9999999, before.scores), anomalous,
                     kinds[anomalous].tolist(), texts[anomalous].tolist(), nines)
    text = format_rows(frames.first_index, packets, before)
    whole = format_rows(frames.first_index, packets, after)
    assert rewrite_rows(text, frames.first_index, packets, after, changed) == whole != text
    assert rewrite_rows(text, frames.first_index, packets, before,
                        np.zeros(len(packets), bool)) == text
