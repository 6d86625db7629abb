"""Honest evaluation on a labelled capture, with baselines run on the same data.

Metrics, overall and per attack kind (each kind's packets against all normal packets):
ROC-AUC, PR-AUC (average precision) and detection rate at 0.1% and 1% false alarms (the
threshold is the normal packets' 99.9th / 99th percentile score in this capture). What each
method flags at its *own* threshold, the one it would run with (the model's calibrated
threshold, IsolationForest's percentile of its training scores), and the events those flags
make, are in :mod:`netids.training.drift`.

Baselines, trained in the same run on the same normal packets as the model:

- ``isolation forest``: scikit-learn's IsolationForest on the same scaled model inputs;
- ``seed transformer``: the seed's approach rebuilt, the 8 per-packet fields (length, protocol,
  TTL, source port, destination port, TCP window, TCP flags, UDP length), each packet min-max
  scaled by its own min and max, a Transformer over those 8 values of one packet, scored by
  reconstruction error.

Kinds whose evidence lives in payloads (web attacks, C2, exploits) are reported like the rest
and marked: a header-level detector is not expected to catch them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from netids.detect.detector import Detector
from netids.detect.model import SinglePacketAutoencoder
from netids.detect.packets import PacketBatch
from netids.detect.scaling import categorical_codes, raw_numeric

log = logging.getLogger(__name__)

# attack kinds whose packets differ from normal in headers, counts or timing
HEADER_KINDS = frozenset({
    "port_scan", "host_sweep", "arp_scan", "arp_spoof_mitm", "syn_flood", "synack_reflection",
    "snmp_amplification", "isakmp_amplification", "dhcp_flood", "os_fingerprint",
    "malformed_icmp", "malformed_teardrop", "udp_flood", "icmp_flood",
})
FALSE_ALARMS = (0.001, 0.01)
MIN_KIND_PACKETS = 1  # kinds with fewer attack packets are still listed


@dataclass
class Row:
    kind: str  # "all" or an attack kind
    method: str
    packets: int  # attack packets of this kind
    roc_auc: float
    pr_auc: float
    detection: tuple[float, ...]  # at each of FALSE_ALARMS
    header_visible: bool


def metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, tuple[float, ...]]:
    """(ROC-AUC, PR-AUC, detection rates at FALSE_ALARMS) of attack (1) vs normal (0).

    >>> metrics(np.array([0.1, 0.2, 0.3, 0.9]), np.array([0, 0, 0, 1]))[:2]
    (1.0, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    normal, attack = scores[~labels], scores[labels]
    if len(normal) == 0 or len(attack) == 0:
        return float("nan"), float("nan"), tuple(float("nan") for _ in FALSE_ALARMS)
    rates = tuple(float((attack > np.quantile(normal, 1.0 - far)).mean()) for far in FALSE_ALARMS)
    return (float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores)),
            rates)


def table(method_scores: dict[str, np.ndarray], labels: np.ndarray,
          kinds: Sequence[str]) -> list[Row]:
    """Rows for every method: overall first, then all header-visible kinds together (when
    payload-only kinds are present too), then each attack kind (most packets first)."""
    labels = np.asarray(labels).astype(bool)
    kinds_arr = np.asarray(kinds, dtype=object)
    present = [k for k, _ in sorted(
        ((k, int(((kinds_arr == k) & labels).sum())) for k in set(kinds_arr[labels])),
        key=lambda kv: -kv[1]) if k]
    header = [k for k in present if k in HEADER_KINDS]
    groups = [("all", np.ones_like(labels))]
    if header and len(header) < len(present):
        groups.append(("header-visible", ~labels | np.isin(kinds_arr, header)))
    groups += [(k, ~labels | (kinds_arr == k)) for k in present]
    rows = []
    for kind, sel in groups:
        n_attack = int((labels & sel).sum())
        for method, scores in method_scores.items():
            roc, pr, det = metrics(scores[sel], labels[sel])
            rows.append(Row(kind, method, n_attack, roc, pr, det,
                            kind in ("all", "header-visible") or kind in HEADER_KINDS))
    return rows


def header_visible(scores: np.ndarray, labels: np.ndarray,
                   kinds: Sequence[str]) -> tuple[float, float, tuple[float, ...]]:
    """:func:`metrics` of the attacks visible in headers (:data:`HEADER_KINDS`) against all
    normal packets.

    >>> header_visible(np.array([0.1, 0.2, 0.9, 0.15]), np.array([0, 0, 1, 1]),
    ...                ["", "", "port_scan", "web_attack"])[0]
    1.0
    """
    labels = np.asarray(labels).astype(bool)
    sel = ~labels | np.isin(np.asarray(kinds, dtype=object), list(HEADER_KINDS))
    return metrics(np.asarray(scores)[sel], labels[sel])


def format_table(rows: list[Row]) -> str:
    """A Markdown table (prints well in a terminal and pastes into the README)."""
    head = ("| attack kind | packets | method | ROC-AUC | PR-AUC | "
            + " | ".join(f"DR@{far:.1%} FA" for far in FALSE_ALARMS) + " |")
    lines = [head, "|" + "---|" * (5 + len(FALSE_ALARMS))]
    for r in rows:
        kind = r.kind if r.header_visible else f"{r.kind} (payload/behaviour)"
        lines.append(f"| {kind} | {r.packets} | {r.method} | {r.roc_auc:.3f} | {r.pr_auc:.3f} | "
                     + " | ".join(f"{d:.3f}" for d in r.detection) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- baselines


def model_inputs(detector: Detector, packets: PacketBatch, features: np.ndarray) -> np.ndarray:
    """The model's inputs as one flat matrix: scaled numeric values then categorical codes."""
    num = detector.checkpoint.scaler.transform(raw_numeric(packets, features,
                                                         detector.packet_numeric))
    return np.concatenate([num, categorical_codes(packets).astype(np.float32)], axis=1)


def isolation_forest(train_x: np.ndarray, test_x: np.ndarray, seed: int = 0,
                     max_train: int = 50000) -> np.ndarray:
    """IsolationForest fitted on normal rows; higher = more anomalous."""
    return Forest.fit(train_x, seed=seed, max_train=max_train).score(test_x)


@dataclass
class Forest:
    """A fitted IsolationForest baseline and its own threshold: the ``quantile`` of its
    scores on all of its training rows, the rule the model's calibration follows (0.999: a
    thousandth of the training traffic scores above it)."""

    forest: IsolationForest
    threshold: float

    @classmethod
    def fit(cls, train_x: np.ndarray, seed: int = 0, max_train: int = 50000,
            quantile: float = 0.999) -> Forest:
        rng = np.random.default_rng(seed)
        fit_x = train_x
        if len(train_x) > max_train:
            fit_x = train_x[rng.choice(len(train_x), max_train, replace=False)]
        forest = IsolationForest(n_estimators=100, random_state=seed, n_jobs=1).fit(fit_x)
        threshold = float(np.quantile(-forest.score_samples(train_x), quantile))
        return cls(forest, threshold)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Higher = more anomalous."""
        return -self.forest.score_samples(x)


SEED_FIELDS = ("length", "proto", "ttl", "sport", "dport", "window", "tcp_flags", "udp_len")


def seed_inputs(packets: PacketBatch) -> np.ndarray:
    """The seed's 8 fields, each packet min-max scaled by its own min and max (its flaw)."""
    x = np.stack([getattr(packets, f).astype(np.float32) for f in SEED_FIELDS], axis=1)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-6)


def seed_transformer(train_packets: PacketBatch, test_packets: PacketBatch, seed: int = 0,
                     epochs: int = 5, max_train: int = 50000) -> np.ndarray:
    """Train the seed's single-packet Transformer on normal packets, score the test packets."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = seed_inputs(train_packets)
    if len(x) > max_train:
        x = x[rng.choice(len(x), max_train, replace=False)]
    model = SinglePacketAutoencoder()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(x)
    for _ in range(epochs):
        model.train()
        for b in torch.randperm(len(xt)).split(1024):
            loss = ((model(xt[b]) - xt[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test = torch.from_numpy(seed_inputs(test_packets))
    with torch.inference_mode():
        return torch.cat([((model(b) - b) ** 2).mean(dim=1) for b in test.split(4096)]).numpy()
