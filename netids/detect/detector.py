"""The detector the pipeline calls: batched scoring, explanations, and the threshold policy.

Higher score means more anomalous; scores are calibrated 0..1 (see
:mod:`netids.detect.calibration`).
Scoring and deciding are separate: :class:`Detector` scores, :class:`ThresholdPolicy` classifies.

Packets are scored in tumbling windows of ``config.window`` consecutive packets, starting at the
first packet of each call; the last partial window is padded and the padding masked out of
attention, so a packet's score depends only on the packets of its own window.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from netids.detect import explain as words
from netids.detect.calibration import Calibrator, InputSurprise, SurpriseCombiner, scores_of
from netids.detect.counted import as_counted, packet_roles, service_inputs, uncounted_inputs
from netids.detect.model import ModelConfig, PacketAutoencoder, to_windows
from netids.detect.packets import FLAG_MALFORMED, FLAG_TRUNCATED, PacketBatch, format_ip, format_mac
from netids.detect.scaling import (
    ADDRESS_CLASSES,
    MAC_CLASSES,
    RobustScaler,
    categorical_codes,
    past_range,
    raw_numeric,
)
from netids.detect.warmup import warmup_discount

# the status input's code holds decoder bits 3.. (see scaling.CATEGORICAL): truncated, malformed
STATUS_DAMAGED = (FLAG_TRUNCATED | FLAG_MALFORMED) >> 3
# the address classes that call a packet's addresses bogus, not merely rare here: a public
# source is rare on a quiet LAN, a multicast or class E one is impossible
BOGUS_CODES = {
    "src_addr": [ADDRESS_CLASSES.index(c)
                 for c in ("loopback", "multicast", "broadcast", "reserved")],
    "dst_addr": [ADDRESS_CLASSES.index(c) for c in ("unspecified", "loopback", "reserved")],
    "mac": [MAC_CLASSES.index("group source MAC"),
            MAC_CLASSES.index("MAC does not match the IP destination")],
}
# A source is scanning while its new contacts (hosts, services) are at least this share of
# what it sends over the shortest window: a SYN flood right after a port scan keeps a high
# decaying new-port rate for seconds, but is 1 new port in 1,000 packets, a flood
SPOOF_FLOOR = 8.0  # new addresses/s (MACs on the link, IPs behind a MAC) below which they never
# name a spoofed flood: a sensor's start or a device joining shows a few a second (benign
# flags of the dev mix at most 6.1/s), the dev mix's DHCP flood at least 10.6/s for 95 % of
# its packets
SCAN_SHARE = 0.05
SWEEP_SHARE = 0.5  # a scan whose new hosts are at least this share of its new services sweeps
WINDOWS_PER_CALL = 256  # 256 windows of 16 = 4096 packets (a pipeline batch) per model call:
# fewer, larger matrix products cost about 10% less per packet, with the same results


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt or made for another version."""


@dataclass
class Checkpoint:
    """What a trained detector is made of; :mod:`netids.training.checkpoint` saves and loads
    it, so the detector itself never touches a file."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    scaler: RobustScaler
    calibrator: Calibrator
    surprise: InputSurprise  # how rare each input's error is on training traffic
    combiner: SurpriseCombiner  # per-input surprises -> one raw anomaly value
    threshold: float  # default calibrated threshold (1 - target false-alarm rate)
    feature_names: list[str]  # context feature columns the model was trained on, in order
    numeric_names: list[str]  # every numeric model input: packet fields then features
    categorical_names: list[str]  # categorical model inputs
    metadata: dict = field(default_factory=dict)  # data size, time span, metrics, ...

    def build_model(self) -> PacketAutoencoder:
        model = PacketAutoencoder(self.config)
        try:
            model.load_state_dict(self.state_dict)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint weights do not fit its config: {exc}") from None
        model.eval()
        return model


@dataclass(frozen=True, slots=True)
class Scores:
    scores: np.ndarray  # float64 [n], calibrated 0..1, higher is more anomalous
    raw: np.ndarray  # float32 [n], per-input surprises combined (see SurpriseCombiner)
    errors: np.ndarray  # float32 [n, n_inputs], surprise of each input's reconstruction error
    nines: np.ndarray  # float64 [n], -log10(1 - score), unbounded (see calibration)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True, slots=True)
class ThresholdPolicy:
    """Decides which scores are anomalies: ``score >= threshold``."""

    threshold: float

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """bool mask, True where anomalous.

        >>> ThresholdPolicy(0.99).classify(np.array([0.5, 0.99, 1.0])).tolist()
        [False, True, True]
        """
        return np.asarray(scores) >= self.threshold


class Detector:
    def __init__(self, checkpoint: Checkpoint, threads: int = 1) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.build_model()
        self.threads = max(1, int(threads))
        self.window = checkpoint.config.window
        self.threshold = checkpoint.threshold
        self.feature_names = tuple(checkpoint.feature_names)
        self.input_names = list(checkpoint.numeric_names) + list(checkpoint.categorical_names)
        # the per-packet numeric fields this checkpoint was trained on (before its features)
        self.packet_numeric = tuple(
            checkpoint.numeric_names[:len(checkpoint.numeric_names) - len(self.feature_names)])
        self._typical = checkpoint.scaler.typical()
        self._base_names = [words.base_name(name) for name in self.input_names]
        self._kind_floor = self._kind_floors()
        # a two-way conversation's own rate is no evidence on packets answering their peer,
        # nor unasked replies to a host on the requests it receives (netids.detect.counted)
        self._uncounted = uncounted_inputs(self.input_names)
        self._uncounted_numeric = uncounted_inputs(checkpoint.numeric_names)
        self._services = service_inputs(self.input_names)  # weak evidence alone
        self._scan_inputs, self._scanning_now = self._scan_columns()
        # a rate in words is told at its busiest window: a flood's 3,000 packets/s over the
        # last second, not the 90/s its 100 s average has reached
        n_num = len(checkpoint.numeric_names)
        self._rate_windows = {
            j: [i for i in range(n_num) if self._base_names[i] == self._base_names[j]]
            for j in range(n_num) if "_rate_" in self.input_names[j]}

    def policy(self, threshold: float | None = None) -> ThresholdPolicy:
        return ThresholdPolicy(self.threshold if threshold is None else threshold)

    def score_batch(self, packets: PacketBatch, features: np.ndarray,
                    scale: float = 1.0, started: float | None = None) -> Scores:
        """Score consecutive packets; ``features`` is float32 [n, F] in ``feature_names`` order.
        ``scale``: the calibration as adapted to this network (netids.detect.adaptive), read
        as the trained one's score of ``raw / scale``. ``started``: the stream's first packet
        time, from which a sensor's warm-up is discounted (netids.detect.warmup)."""
        n = len(packets)
        if features.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} feature columns, "
                             f"got {features.shape[1]}")
        roles = packet_roles(packets, features, self.feature_names)
        errors, excess = self.input_errors(packets, features, roles)
        with self._torch_threads():
            combiner = self.checkpoint.combiner
            surprise = as_counted(self.checkpoint.surprise.transform(errors), combiner.mean,
                                  self._services, roles, self._uncounted)
            raw = combiner.combine(surprise, excess) if n else np.zeros(0, np.float32)
        nines = self.checkpoint.calibrator.nines(raw / scale if scale != 1.0 else raw)
        discount = warmup_discount(packets.ts, started)
        if discount is not None:
            nines = np.maximum(nines - discount, 0.0)
        return Scores(scores_of(nines), raw, surprise, nines)

    @contextmanager
    def _torch_threads(self) -> Iterator[None]:
        """torch runs with this detector's threads inside, the caller's outside: capture, the
        event loop or a second scoring process keep the cores they need."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def input_errors(self, packets: PacketBatch, features: np.ndarray,
                     roles: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [n, n_inputs] reconstruction error of every model input, not normalised;
        float32 [n] distance of each packet's numeric inputs past the training range, in
        scaled units summed over the inputs). ``roles``: the packets' roles
        (:func:`~netids.detect.counted.packet_roles`), when the caller has them already."""
        n, T = len(packets), self.window
        k = len(self.input_names)
        if n == 0:
            return np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        scaler = self.checkpoint.scaler
        numeric = scaler.transform(raw_numeric(packets, features, self.packet_numeric))
        codes = categorical_codes(packets)
        clamped = scaler.clamp(numeric)
        if roles is None:
            roles = packet_roles(packets, features, self.feature_names)
        excess = past_range(numeric, clamped, roles, self._uncounted_numeric)
        num, pad = to_windows(clamped.astype(np.float32, copy=False), T)
        tgt, _ = to_windows(numeric.astype(np.float32, copy=False), T)
        cod, _ = to_windows(codes.astype(np.int64, copy=False), T)
        m = pad.size
        num_t = torch.from_numpy(num)  # [W, T, n_numeric]
        tgt_t = torch.from_numpy(tgt)  # [W, T, n_numeric]
        cod_t = torch.from_numpy(cod)  # [W, T, n_fields]
        pad_t = torch.from_numpy(pad)  # [W, T]
        out = np.empty((m, k), np.float32)
        # whole windows go without a padding mask, the last, partial one alone with its mask:
        # a window's errors then do not depend on how the packets were batched, to the bit
        full = n // T
        calls = [slice(w, min(w + WINDOWS_PER_CALL, full))
                 for w in range(0, full, WINDOWS_PER_CALL)]
        if m // T > full:
            calls.append(slice(full, full + 1))
        with self._torch_threads(), torch.inference_mode():
            for sl in calls:
                w = sl.start
                p = pad_t[sl] if bool(pad_t[sl].any()) else None
                err = self.model.errors(num_t[sl], cod_t[sl], p, tgt_t[sl])  # [w, T, k]
                out[w * T:(w + err.shape[0]) * T] = err.reshape(-1, k).numpy()
        return out[:n], excess

    def explain(self, packets: PacketBatch, features: np.ndarray, scores: Scores,
                index: np.ndarray) -> tuple[list[str], list[str]]:
        """(kind, explanation) for each row in ``index`` (positions in this batch)."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return [], []
        sub = packets.take(index)
        values = raw_numeric(sub, features[index], self.packet_numeric)
        codes = categorical_codes(sub)
        cat_values = self.categorical_values(sub, codes)
        n_num = values.shape[1]
        errors = scores.errors[index]
        shares = self._shares(codes)
        # per row, the inputs by falling surprise; rows as lists: a Python loop reads them
        orders = np.argsort(-errors, axis=1)[:, :8].tolist()
        absent = self._absent(values) | words.foreign_inputs(self.input_names, sub.ethertype,
                                                             sub.proto)
        may_name = (self._may_name_kind(values, codes, shares) & ~absent).tolist()
        sweeping = self._sweeping(values).tolist()
        rows = zip(orders, errors.tolist(), values.tolist(), codes.tolist(), cat_values.tolist(),
                   shares.tolist(), may_name, absent.tolist(), strict=True)
        names, bases = self.input_names, self._base_names
        kinds, texts = [], []
        for row, (order, err, value, code, cat_value, share, may, gone) in enumerate(rows):
            top = [j for j in order[:6] if may[j]][:3]
            kind = words.busy_or_flood(words.kind_of([names[j] for j in top],
                                                     [err[j] for j in top]),
                                       int(sub.tcp_flags[row]))
            kinds.append("host sweep" if kind == "port scan" and sweeping[row] else kind)
            parts, seen = [], set()
            # the inputs that say something first (a rate above normal, a rare value), then
            # the rest but fields the packet does not have: a common ICMP echo the network
            # did not expect is no reason in itself, and an ARP packet has no TTL to tell
            for j in ([j for j in order if may[j]]
                      + [j for j in order if not may[j] and not gone[j]]):
                if bases[j] in seen:
                    continue  # the same statistic over another window says nothing new
                if len(parts) == 2:
                    break
                seen.add(bases[j])
                name = names[j]
                if name == "arp_conflict" and value[j] > 0:
                    op = "reply" if sub.arp_op[row] == 2 else "request"
                    ip = format_ip(sub.src_hi[row], sub.src_lo[row])
                    parts.append(f"ARP {op} maps {ip} to a new MAC {format_mac(sub.arp_sha[row])}")
                elif j < n_num:
                    j = max(self._rate_windows.get(j, [j]), key=value.__getitem__)
                    parts.append(words.describe(names[j], value[j], self._typical[j]))
                else:
                    c = j - n_num
                    parts.append(words.describe_code(name, code[c], cat_value[c], share[c]))
            texts.append("; ".join(parts))
        return kinds, texts

    def categorical_values(self, packets: PacketBatch, codes: np.ndarray) -> np.ndarray:
        """int64 [n, n_categorical]: each packet's own value of every categorical input, the
        value its explanation tells (TCP flags 0x11, source port 993); an input that is a
        class of its own (an address class) is its code. ``codes``: the packets'
        :func:`categorical_codes`."""
        own = {"protocol": packets.proto, "tcp_flags": packets.tcp_flags,
               "sport_class": packets.sport, "dport_class": packets.dport,
               "icmp_type": packets.icmp_type, "icmp_code": packets.icmp_code,
               "arp_op": packets.arp_op, "status": packets.status}
        return np.stack([own[name] if name in own else codes[:, c]
                         for c, name in enumerate(self.checkpoint.categorical_names)],
                        axis=1).astype(np.int64)

    def _may_name_kind(self, values: np.ndarray, codes: np.ndarray,
                       shares: np.ndarray) -> np.ndarray:
        """bool [rows, n_inputs]: whether each input deviating may name the kind: a rate only
        when it is *above* normal (a quiet connection is no flood), ARP evidence only when
        present, a categorical value only when it is rare in normal traffic (the network
        failing to predict a common value is part of the score, not its reason), and the
        inputs that call a packet malformed only when its headers are: an ICMP code its type
        does not define, headers cut short or impossible (not mere IP options).
        ``values`` [rows, n_numeric], ``codes`` and ``shares`` [rows, n_categorical] (see
        :meth:`_shares`)."""
        n_num = values.shape[1]
        padded = np.zeros((len(values), len(self.input_names)))
        padded[:, :n_num] = values
        may = (padded > self._kind_floor) | np.isneginf(self._kind_floor)
        may[:, n_num:] = shares < words.RARE_SHARE
        names = self.checkpoint.categorical_names
        may[:, n_num + names.index("icmp_code")] &= codes[:, names.index("icmp_code")] == 2
        damaged = (codes[:, names.index("status")] & STATUS_DAMAGED) != 0
        may[:, n_num + names.index("status")] &= damaged
        for name, bogus in BOGUS_CODES.items():
            may[:, n_num + names.index(name)] &= np.isin(codes[:, names.index(name)], bogus)
        if self._scanning_now is not None:
            port, host, sent = self._scanning_now
            new = np.maximum(values[:, port], values[:, host])
            may[:, self._scan_inputs] &= (new >= SCAN_SHARE * values[:, sent])[:, None]
        return may

    def _sweeping(self, values: np.ndarray) -> np.ndarray:
        """bool [rows]: the source reaches new hosts about as fast as new services over the
        shortest window (at least half as many): a ping or ARP sweep opens one service per
        host, a port scan many per host; both raise the new-service rate."""
        if self._scanning_now is None:
            return np.zeros(len(values), bool)
        port, host, _ = self._scanning_now
        return (values[:, host] > 0) & (values[:, host] >= SWEEP_SHARE * values[:, port])

    def _scan_columns(self) -> tuple[list[int], tuple[int, int, int] | None]:
        """(the inputs that name a scan: new ports or hosts per second from the source, every
        window; the columns of the new-port, new-host and packet rates of the source over the
        shortest window, or None when a model lacks them)."""
        names = self.input_names
        scan = [j for j, n in enumerate(names) if n.startswith(("src_new_port_rate_",
                                                                "src_new_dst_rate_"))]
        windows = sorted((n[len("src_rate_"):] for n in names if n.startswith("src_rate_")),
                         key=lambda w: float(w.rstrip("s")))
        wanted = [f"src_new_port_rate_{windows[0]}", f"src_new_dst_rate_{windows[0]}",
                  f"src_rate_{windows[0]}"] if windows else []
        if not wanted or not all(n in names for n in wanted):
            return scan, None
        port, host, sent = (names.index(n) for n in wanted)
        return scan, (port, host, sent)

    def _absent(self, values: np.ndarray) -> np.ndarray:
        """bool [rows, n_inputs]: a per-packet field the packet does not have (-1: an ARP
        packet's TTL, a UDP datagram's TCP window)."""
        absent = np.zeros((len(values), len(self.input_names)), bool)
        for j, name in enumerate(self.input_names[:values.shape[1]]):
            if name in self.packet_numeric:
                absent[:, j] = values[:, j] < 0
        return absent

    def _shares(self, codes: np.ndarray) -> np.ndarray:
        """float64 [rows, n_categorical]: each categorical value's share of training traffic."""
        prior = self.model.code_log_prior.numpy().astype(np.float64)
        return np.exp(prior[codes + self.model.offsets.numpy()])

    def _kind_floors(self) -> np.ndarray:
        """float64 [n_inputs]: the value above which an input may name the kind (-inf: any
        value, even a missing one)."""
        floor = np.full(len(self.input_names), -np.inf)
        for j, name in enumerate(self.input_names):
            if name in ("arp_conflict", "ip_mac_moved"):
                floor[j] = 0.0
            elif name == "arp_mac_ips":
                floor[j] = 1.0
            elif "rate" in name:  # above twice normal and above 0.05
                typical = self._typical[j] if j < len(self._typical) else 0.0
                floor[j] = max(2 * typical, 0.05)
                if name.startswith(("link_new_mac_rate_", "mac_new_ip_rate_")):
                    floor[j] = max(floor[j], SPOOF_FLOOR)
        return floor
