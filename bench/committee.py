"""Several trainings of one recipe as a committee: what each model, the median and the least of
their nines flag on normal traffic, and how they rank attacks (see docs/drift.md, "Seeds").

    .venv/bin/python bench/committee.py --benign B.pcap --attacks A.pcap M0.pt M1.pt M2.pt

``B.pcap`` and ``A.pcap`` with their ``.labels.csv`` beside them, as ``bench/drift.py``'s
mixes are (``build/drift/data/network_GROUP_{benign,attacks}.pcap``); the models are the
same recipe trained with other seeds (``bench/drift.py --seed N`` keeps them apart under
``build/drift/models``). Each model is judged by ``evaluate``'s own code with the warm-up
discounted, as a sensor does, and the scores are those the app flags by (header, behaviour
and answers). A packet is flagged at the model's own threshold when its nines reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netids import cli  # noqa: E402
from netids.commands import evaluate as evaluate_command  # noqa: E402
from netids.detect.calibration import nines_of  # noqa: E402
from netids.lab.mixing import labels_path  # noqa: E402
from netids.training import drift  # noqa: E402
from netids.training import evaluate as ev  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="checkpoints of one recipe")
    parser.add_argument("--benign", type=Path, required=True, help="normal traffic (labelled)")
    parser.add_argument("--attacks", type=Path, required=True,
                        help="the same normal traffic with attacks on top (labelled)")
    args = parser.parse_args()
    benign, attacks, threshold = [], [], float("inf")
    for model in args.models:
        b = judge(model, args.benign)
        a = judge(model, args.attacks)
        benign.append(b.method_scores[drift.WITH_BEHAVIOUR])
        attacks.append(a.method_scores[drift.WITH_BEHAVIOUR])
        labels, kinds = a.labels, a.kinds
        threshold = min(threshold, float(nines_of(b.judged.own[0].threshold)))
    rows = [(m.name, b, a) for m, b, a in zip(args.models, benign, attacks, strict=True)]
    rows += [("median", np.median(benign, axis=0), np.median(attacks, axis=0)),
             ("least", np.min(benign, axis=0), np.min(attacks, axis=0))]
    print(f"| model | benign flagged at {threshold:g} nines | ROC-AUC | header-visible ROC-AUC "
          "| header-visible DR@1% |")
    print("|---|---|---|---|---|")
    for name, b, a in rows:
        roc = ev.metrics(a, labels)[0]
        hv_roc, _, hv_dr = ev.header_visible(a, labels, kinds)
        print(f"| {name} | {(b >= threshold).mean():.2%} | {roc:.3f} | {hv_roc:.3f} "
              f"| {hv_dr[1]:.3f} |")
    return 0


def judge(model: Path, capture: Path) -> evaluate_command.Report:
    argv = ["evaluate", str(capture), "--labels", str(labels_path(capture)), "--model", str(model),
            "--warm-up", "--no-baselines"]
    parser = cli.build_parser(argv)
    parsed, _ = parser.parse_known_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate_command.evaluate(parsed, cli.settings_from(parsed), seed_baseline=False)


if __name__ == "__main__":
    sys.exit(main())
