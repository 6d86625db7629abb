"""Whether a newly trained model looks trustworthy, judged from its checkpoint metadata alone.

A model learns only the normal traffic it saw. Trained on a few seconds of one host talking one
protocol, it flags nearly everything else; with too few held-back packets its threshold is a
guess. :func:`concerns` lists what looks wrong, in words with the figures, so the training page
can warn and ask before activating the model, and every model card can say it too.
:func:`traffic_profile` computes the figures ``train`` stores that the checks read (hosts,
protocol mix). Metadata without a figure (older checkpoints) is not judged on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netids.detect.packets import PacketBatch, protocol_name


@dataclass(frozen=True, slots=True)
class Limits:
    """Where a figure starts to be a concern."""

    min_packets: int = 30_000  # a few minutes of a small network; training's floor is 8,000
    min_seconds: float = 120.0  # of traffic: daily rhythms need far more, seconds say little
    min_hosts: int = 3  # distinct IP addresses seen
    max_protocol_share: float = 0.98  # of the commonest protocol
    max_val_loss: float = 0.1  # the shipped model reaches about 0.02
    max_val_over_train: float = 2.0  # validation loss this many times the training loss
    min_tail_packets: float = 10.0  # held-back packets expected past the threshold


@dataclass(frozen=True, slots=True)
class Concern:
    """One reason to doubt a model."""

    check: str  # short name, e.g. "few hosts"
    why: str  # one sentence with the figures and what to do


def concerns(metadata: dict, threshold: float, limits: Limits = Limits()) -> list[Concern]:
    """What looks wrong about a model trained with this ``metadata`` (a checkpoint's), at its
    default ``threshold``; empty when nothing does.

    >>> meta = {"packets": 12000, "time_span": {"seconds": 14.0}, "hosts": 2,
    ...         "protocols": {"TCP": 11900, "UDP": 100},
    ...         "metrics": {"best_val_loss": 0.3, "calibration_packets": 2400,
    ...                     "history": [{"train_loss": 0.1, "val_loss": 0.3}]}}
    >>> [c.check for c in concerns(meta, 0.999)]
    ['little traffic', 'short capture', 'few hosts', 'one protocol', 'high validation loss', \
'validation far above training', 'unstable calibration']
    >>> concerns({"packets": 167484, "metrics": {"best_val_loss": 0.018}}, 0.999)
    []
    """
    found: list[Concern] = []
    packets = metadata.get("packets")
    if packets is not None and packets < limits.min_packets:
        found.append(Concern("little traffic", f"trained on only {packets:,} packets; a few "
                             f"minutes of ordinary traffic ({limits.min_packets:,} or more) "
                             "teach it far more"))
    seconds = (metadata.get("time_span") or {}).get("seconds")
    if seconds is not None and seconds < limits.min_seconds:
        found.append(Concern("short capture", f"the traffic spans only {seconds:.0f} s: "
                             "anything the network does at other moments will look new"))
    found += _variety(metadata, limits)
    found += _fit(metadata.get("metrics") or {}, threshold, limits)
    return found


def _variety(metadata: dict, limits: Limits) -> list[Concern]:
    found = []
    hosts = metadata.get("hosts")
    if hosts is not None and hosts < limits.min_hosts:
        found.append(Concern("few hosts", f"only {hosts} IP address{'es' * (hosts != 1)} "
                             "took part: every other host will look unusual"))
    protocols = metadata.get("protocols") or {}
    total = sum(protocols.values())
    if total:
        name, top = max(protocols.items(), key=lambda kv: kv[1])
        if top / total >= limits.max_protocol_share:
            found.append(Concern("one protocol", f"{top / total:.1%} of the packets are {name}: "
                                 "traffic of any other protocol will look unusual"))
    return found


def _fit(metrics: dict, threshold: float, limits: Limits) -> list[Concern]:
    found = []
    val = metrics.get("best_val_loss")
    if val is not None and val > limits.max_val_loss:
        found.append(Concern("high validation loss", f"validation loss {val:.3f} (above "
                             f"{limits.max_val_loss}): it reconstructs even normal traffic "
                             "poorly"))
    history = metrics.get("history") or []
    if val is not None and history and history[-1].get("train_loss"):
        ratio = val / history[-1]["train_loss"]
        if ratio > limits.max_val_over_train:
            found.append(Concern("validation far above training", f"validation loss is "
                                 f"{ratio:.1f} times the training loss: it learnt its training "
                                 "packets more than the traffic"))
    held_back = metrics.get("calibration_packets")
    if held_back is not None:
        past = held_back * (1.0 - threshold)
        if past < limits.min_tail_packets:
            found.append(Concern("unstable calibration", f"the threshold {threshold} rests on "
                                 f"about {past:.1f} of {held_back:,} held-back packets above "
                                 f"it (want {limits.min_tail_packets:.0f}+): its false-alarm "
                                 "rate is a guess"))
    return found


def traffic_profile(batches: Sequence[PacketBatch]) -> dict:
    """Distinct IP addresses and packets per protocol over ``batches``, for the metadata.

    >>> traffic_profile([])
    {'hosts': 0, 'protocols': {}}
    """
    addresses: set[tuple[int, int]] = set()
    protocols: dict[str, int] = {}
    for p in batches:
        ip = p.ip_version > 0
        for hi, lo in ((p.src_hi, p.src_lo), (p.dst_hi, p.dst_lo)):
            pairs = np.unique(np.stack([hi[ip], lo[ip]], axis=1), axis=0)
            addresses.update(map(tuple, pairs.tolist()))
        pairs = np.stack([p.ethertype.astype(np.int64), p.proto.astype(np.int64)], axis=1)
        uniq, n = np.unique(pairs, axis=0, return_counts=True)
        for (ethertype, proto), c in zip(uniq.tolist(), n.tolist(), strict=True):
            name = protocol_name(ethertype, proto)
            protocols[name] = protocols.get(name, 0) + c
    return {"hosts": len(addresses), "protocols": protocols}
