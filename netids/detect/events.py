"""Anomaly events: anomalous packets with the same key, close in time, merged into one event.

The key is (source, destination, protocol, kind of deviation); a "target under flood" or a
"reflection flood" is keyed by its destination alone from its first packet, as one event with
many sources: what made its packets anomalous is the traffic reaching that host (or the
replies it never asked for), so their senders (a flooded server's normal clients) are not
named as the source of a flood. A scan (port scan, host sweep) is
keyed by its source alone, also from its first packet: one event per scanner and protocol,
its targets counted (and named while there is one), not one per probed host. Anomalous
answers join the event of the conversation's opener: a scanned host's resets and a flooded
server's SYN-ACKs belong to the scan or flood that provoked them, not to an event naming the
victim as its source. Two merges keep floods and sweeps to a handful of rows: when more than
``max_sources`` distinct sources hit one target with the same protocol and kind (a spoofed
SYN flood, a DDoS), they become one event whose source is ``""`` ("many sources",
``src_count`` says how many); likewise more than ``max_targets`` targets of one source with
the same protocol and kind (a host flooding many) become one event with destination ``""``.

State is bounded whatever the traffic (see docs/performance.md, "Bounded state"): the fans
counting distinct peers are fixed-size tables (:mod:`netids.detect.event_fans`), an event
counts its sources and targets exactly up to ``exact_distinct`` and with a 2 KiB HyperLogLog
beyond, keeps its heaviest sources in a Space-Saving summary once they merge, and past
``max_open`` open events new keys merge into one "many -> many" event per protocol and kind,
a whole batch at a time. :meth:`EventAggregator.stats` says how full each table is.

Pure: :class:`EventAggregator` takes :class:`~netids.detect.scored.ScoredBatch` and returns
:class:`EventUpdate` snapshots. It does no I/O and reads no clock: time is packet time, so a
pcap replayed later gives the same events as the live capture did. Every update carries the
whole current state of its event, so writing the same event twice is harmless (storage
upserts by ``id``).

>>> import numpy as np
>>> from netids.detect.frames import FrameBatch
>>> from netids.detect.packets import COLUMNS, PacketBatch, parse_ip
>>> from netids.detect.scored import ScoredBatch
>>> n = 1000                                   # a spoofed SYN flood: 1000 sources, one target
>>> frames = FrameBatch.from_frames([b"x" * 60] * n, np.arange(n) * 0.001)
>>> src = np.array([parse_ip(f"10.0.{i // 250}.{i % 250}") for i in range(n)], np.uint64)
>>> dst = np.array([parse_ip("192.0.2.1")] * n, np.uint64)
>>> columns = {name: np.full(n, -1) for name in COLUMNS}   # -1: not in the packet
>>> columns.update(ts=frames.ts, length=np.full(n, 60), status=np.zeros(n, np.uint16),
...                ethertype=np.full(n, 0x0800), ip_version=np.full(n, 4), proto=np.full(n, 6),
...                src_hi=src[:, 0], src_lo=src[:, 1], dst_hi=dst[:, 0], dst_lo=dst[:, 1],
...                sport=np.full(n, 40000), dport=np.full(n, 80), tcp_flags=np.full(n, 2))
>>> packets = PacketBatch(**columns)                       # TCP SYNs to 192.0.2.1:80
>>> scores = np.full(n, 0.9995, np.float32)
>>> batch = ScoredBatch(frames, packets, np.zeros((n, 1), np.float32), scores, 0.5,
...                     scores >= 0.5, ["flood"] * n, ["SYN rate 1000/s, normal 2/s"] * n)
>>> agg = EventAggregator(EventConfig(samples=3))
>>> [(u.src, u.dst, u.dst_port, u.proto, u.kind, u.reach, u.severity) for u in agg.add(batch)]
[('', '192.0.2.1', 80, 'TCP', 'flood', '1,000 packets from ~1,010 sources', 'anomalous')]
>>> len(agg.add(batch)[0].new_samples), agg.add(batch)[0].packets   # the flood goes on
(0, 3000)
>>> [u.packets for u in agg.flush()], agg.open_events
([3000], 0)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np

from netids.detect.event_answers import answered_tag, answers
from netids.detect.event_fans import FanTable
from netids.detect.event_groups import Groups, Keyed, OpenEvent, by_destination, by_source
from netids.detect.event_records import ATTACK_KINDS, EventConfig, EventUpdate, Sample
from netids.detect.keytable import TableStats
from netids.detect.packets import PacketBatch, format_ip, format_mac, protocol_name, summary
from netids.detect.scored import ScoredBatch
from netids.detect.sketches import TopK, hash64

ANY = -1  # marker in the merge columns: address replaced by "many"
OWN_TAG_PROTOS = (1, 6, 17, 58)  # IP protocols with events of their own: ICMP, TCP, UDP, ICMPv6
OTHER_IP = 256  # the tag of every other IP protocol: a protocol scan is one event, not 100
PAIR_FANS = 1 << 10  # (protocol, kind) fans counting distinct host pairs


class EventAggregator:
    """Merges the anomalous packets of successive batches into events.

    Call :meth:`add` for every scored batch (in time order) and :meth:`flush` at the end of a
    capture or file; hand every returned update to the store.
    """

    def __init__(self, config: EventConfig | None = None) -> None:
        self.config = config or EventConfig()
        self._open: dict[tuple, OpenEvent] = {}
        self._closed: dict[tuple, OpenEvent] = {}  # ended less than ``refold`` ago, oldest first
        cfg = self.config
        self._fan_in = FanTable(cfg.fan_capacity, cfg.max_sources)  # (dst, ptag, kind) -> sources
        self._fan_out = FanTable(cfg.fan_capacity, cfg.max_targets)  # (src, ptag, kind) -> targets
        self._fan_pairs = FanTable(PAIR_FANS, cfg.max_pairs)  # (ptag, kind) -> host pairs
        self._kinds: dict[str, int] = {}
        self._kind_names: list[str] = []
        self._now = float("-inf")
        self.opened = 0  # events opened so far
        self._many_many: set[tuple] = set()  # keys of the "many -> many" events
        self.overflowed = 0  # packets merged into "many -> many" because max_open events were open

    @property
    def open_events(self) -> int:
        return len(self._open)

    def stats(self) -> list[TableStats]:
        """Occupancy of every keyed table of event aggregation."""
        return [self._fan_in.stats("sources per target"), self._fan_out.stats("targets per source"),
                self._fan_pairs.stats("pairs per kind"),
                TableStats("open events", len(self._open), self.config.max_open, self.overflowed,
                           evicted_as="packets merged")]

    def add(self, scored: ScoredBatch) -> list[EventUpdate]:
        """Merge the anomalous packets of ``scored``; return the events they created or changed."""
        idx = scored.anomaly_index
        assert len(idx) == len(scored.kinds) == len(scored.explanations)
        if len(idx) == 0:
            return []
        b = self._keyed(scored, idx)
        g = Groups.of(b, self.config.gap)
        touched: dict[str, OpenEvent] = {}
        new_samples: dict[str, list[Sample]] = {}
        for n in range(len(g.starts)):
            rows = g.order[g.starts[n]:g.ends[n]]  # positions in idx, time order
            mine = rows[b.own[rows]]  # the opener's own packets, the others answer them
            ev = self._event_of(b, g, n, rows, mine)
            self._grow(ev, b, g, n, rows, mine)
            new_samples.setdefault(ev.id, []).extend(self._samples_of(ev, b, rows))
            touched[ev.id] = ev
        self._now = max(self._now, b.now)
        return [ev.update(self.config, tuple(new_samples.get(ev.id, ())))
                for ev in touched.values()]

    def _keyed(self, scored: ScoredBatch, idx: np.ndarray) -> Keyed:
        """Each anomalous packet's event key: addresses replaced by ANY where merged, answers
        keyed as their opener."""
        cfg, p = self.config, scored.packets
        ts = p.ts[idx].astype(np.float64)
        proto = p.proto[idx].astype(np.int64)
        ptag = np.where(proto < 0, -2 - p.ethertype[idx].astype(np.int64),
                        np.where(np.isin(proto, OWN_TAG_PROTOS), proto, OTHER_IP))
        ptag = answered_tag(proto, p.icmp_type[idx], p.icmp_code[idx], ptag, 17, OTHER_IP)
        kind = np.fromiter((self._kind_id(k) for k in scored.kinds), np.int64, len(idx))
        src = np.stack([p.src_hi[idx], p.src_lo[idx]], axis=1).astype(np.uint64)
        dst = np.stack([p.dst_hi[idx], p.dst_lo[idx]], axis=1).astype(np.uint64)
        tag = np.stack([ptag.astype(np.int64), kind], axis=1).view(np.uint64)
        now = float(ts.max())
        opener, open_key = answers(self._open, src, dst, ptag, ts)
        answer = (opener >= 0) | (open_key[:, 0] == np.uint64(1))
        own = ~answer
        many_in = np.zeros(len(idx), dtype=bool)
        many_out = np.zeros(len(idx), dtype=bool)
        src_h, dst_h = hash64(src[:, 0], src[:, 1]), hash64(dst[:, 0], dst[:, 1])
        tag_h = hash64(tag[:, 0], tag[:, 1])
        cutoff = now - cfg.gap
        many_in[own] = self._fan_in.mark(hash64(dst_h[own], tag_h[own]), src_h[own], ts[own],
                                         cutoff)
        many_in |= own & np.isin(kind, self._ids_of(by_destination))
        many_out[own] = self._fan_out.mark(hash64(src_h[own], tag_h[own]), dst_h[own], ts[own],
                                           cutoff)
        many_out |= own & np.isin(kind, self._ids_of(by_source))
        pair = own & ~many_in & ~many_out  # keyed by both hosts: many such pairs at once merge
        many_in[pair] = many_out[pair] = self._fan_pairs.mark(
            tag_h[pair], hash64(src_h[pair], dst_h[pair]), ts[pair], cutoff)
        key = np.concatenate([src, dst, tag], axis=1)
        key[many_in, 0:2] = np.uint64(0)
        key[many_out, 2:4] = np.uint64(0)
        flags = (many_in.astype(np.uint64) | (many_out.astype(np.uint64) << np.uint64(1)))[:, None]
        key = np.concatenate([key, flags], axis=1)
        key[opener >= 0] = key[opener[opener >= 0]]
        key[open_key[:, 0] == np.uint64(1)] = open_key[open_key[:, 0] == np.uint64(1), 1:]
        self._overflow(key)
        return Keyed(scored, idx, ts, scored.scores[idx].astype(np.float64), src, dst, key,
                     own, now, src_h, dst_h)

    def _overflow(self, key: np.ndarray) -> None:
        """Past ``max_open`` open events, key the packets of new keys as "many -> many" for
        the whole batch at once (as :meth:`_event_of` would one key at a time): a flood of
        new pairs then costs a few groups a batch, not one per packet."""
        room = self.config.max_open - self._own_open()
        _, first, inverse = np.unique(hash64(*key.T), return_index=True, return_inverse=True)
        if len(first) <= room:
            return
        held = self._open.__contains__
        new = np.flatnonzero([not held(tuple(k)) for k in key[first].tolist()])
        if len(new) <= room:
            return
        spill = np.isin(inverse.reshape(-1), new[max(room, 0):])
        key[spill, 0:4] = np.uint64(0)
        key[spill, 6] = np.uint64(3)
        self.overflowed += int(spill.sum())

    def _event_of(self, b: Keyed, g: Groups, n: int, rows: np.ndarray,
                  mine: np.ndarray) -> OpenEvent:
        """The open event group ``n`` belongs to, or a new one (an old one past its gap or
        duration ends; past ``max_open`` events, new keys merge into "many -> many")."""
        cfg = self.config
        first = int(rows[0])
        k = tuple(b.key[first].tolist())
        t0, t1 = g.t0(n), g.t1(n)
        ev = self._open.get(k) or self._reopen(k, t0)
        if ev is not None and (t0 - ev.last_seen > self._idle(k)
                               or t1 - ev.first_seen > cfg.max_duration):
            del self._open[k]
            ev = None
        if ev is None and k[6] != 3 and self._own_open() >= cfg.max_open:
            k = (0, 0, 0, 0, *k[4:6], 3)
            ev = self._open.get(k)
        if ev is None and k[6] == 3:
            self._many_many.add(k)
        sp_lo, sp_hi, dp_lo, dp_hi = g.ports(n)
        if ev is None:
            i = int(b.idx[mine[0]]) if len(mine) else int(b.idx[first])
            ev = self._new_event(k, b.scored.packets, i, t0, answer=not len(mine))
            self._open[k] = ev
            if len(mine):
                ev.src_port = sp_lo if sp_lo == sp_hi and sp_lo >= 0 else None
                ev.dst_port = dp_lo if dp_lo == dp_hi and dp_lo >= 0 else None
        elif len(mine):
            if ev.src_port != sp_lo or sp_lo != sp_hi:
                ev.src_port = None
            if ev.dst_port != dp_lo or dp_lo != dp_hi:
                ev.dst_port = None
        return ev

    def _grow(self, ev: OpenEvent, b: Keyed, g: Groups, n: int, rows: np.ndarray,
              mine: np.ndarray) -> None:
        """Count group ``n`` into its event; its score and explanation stay its opener's."""
        ev.first_seen = min(ev.first_seen, g.t0(n))
        ev.last_seen = max(ev.last_seen, g.t1(n))
        ev.packets += len(rows)
        ev.scored += int(g.scored_count[n])
        ev.score_sum += float(g.score_sum[n])
        if len(mine):
            top = int(mine[int(np.argmax(b.scores[mine]))])
            if b.scores[top] > ev.score_max:
                ev.score_max = float(b.scores[top])
                ev.explanation = b.scored.explanations[top]
                ev.threshold = float(b.scored.threshold)
        ev.sources.add(b.src_h[mine])
        ev.targets.add(b.dst_h[mine])
        ev.count_sources(b.src_h[mine], b.src[mine])

    def _samples_of(self, ev: OpenEvent, b: Keyed, rows: np.ndarray) -> list[Sample]:
        """The group's first packets, raw, while the event has fewer than ``samples``."""
        kept = []
        p, frames = b.scored.packets, b.scored.frames
        for r in rows[: max(self.config.samples - ev.samples, 0)].tolist():
            i = int(b.idx[r])
            kept.append(Sample(
                seq=ev.samples,
                ts=float(p.ts[i]),
                data=frames.frame(i),
                wirelen=int(frames.wirelen[i]),
                linktype=int(frames.linktype[i]),
                score=float(b.scored.scores[i]),
                summary=summary(p, i),
            ))
            ev.samples += 1
        return kept

    def flush(self, now: float | None = None) -> list[EventUpdate]:
        """End the events idle for longer than ``gap`` at packet time ``now`` (all when None).

        Returns their final state; they are dropped from memory, so a later matching packet
        starts a new event.
        """
        cutoff = float("inf") if now is None else now - self.config.gap
        ended = [k for k, ev in self._open.items() if ev.last_seen < cutoff]
        out = []
        for k in ended:
            ev = self._open.pop(k)
            out.append(ev.update(self.config, ()))
            if self._idle(k) > self.config.gap:
                self._closed[k] = ev
        self._forget(now)
        if now is None:  # fans idle past the gap restart when next seen (FanTable.mark)
            self._fan_in.clear()
            self._fan_out.clear()
            self._fan_pairs.clear()
        return out

    def _idle(self, k: tuple) -> float:
        """How long the event of key ``k`` may go without a packet and still grow: ``refold``
        for a deviation that names no attack, ``gap`` for an attack (a second flood on the
        same host minutes later is news, not an update of the first)."""
        return self.config.gap if self._kind_names[int(k[5])] in ATTACK_KINDS \
            else self.config.refold

    def _reopen(self, k: tuple, t0: float) -> OpenEvent | None:
        """The event of key ``k`` that ended (idle past ``gap``) less than ``refold`` before
        ``t0``, open again: a host flagging the same odd way minutes later is the same
        incident, and its event is updated, not repeated (attacks never end up here)."""
        ev = self._closed.pop(k, None)
        if ev is not None and t0 - ev.last_seen <= self.config.refold:
            self._open[k] = ev
            if k[6] == 3:
                self._many_many.add(k)
            return ev
        return None

    def _forget(self, now: float | None) -> None:
        """Drop ended events past ``refold`` (all at the end of a stream), and the oldest
        past ``max_open`` of them."""
        if now is None:
            self._closed.clear()
            return
        cutoff = now - self.config.refold
        stale = [k for k, ev in self._closed.items() if ev.last_seen < cutoff]
        stale += list(self._closed)[: max(len(self._closed) - len(stale) - self.config.max_open, 0)]
        for k in stale:
            self._closed.pop(k, None)

    # helpers ---------------------------------------------------------------------------------

    def _own_open(self) -> int:
        """Open events of a key of their own (the cap's count; "many -> many" ones aside)."""
        self._many_many &= self._open.keys()
        return len(self._open) - len(self._many_many)

    def _ids_of(self, keyed_by: Callable[[str], bool]) -> list[int]:
        """Ids of the kinds ``keyed_by`` (:func:`by_destination`, :func:`by_source`) holds."""
        return [i for i, name in enumerate(self._kind_names) if keyed_by(name)]

    def _kind_id(self, name: str) -> int:
        kid = self._kinds.get(name)
        if kid is None:
            kid = self._kinds[name] = len(self._kind_names)
            self._kind_names.append(name)
        return kid

    def _new_event(self, k: tuple, p: PacketBatch, i: int, t0: float,
                   answer: bool = False) -> OpenEvent:
        """A new event for key ``k`` from packet ``i``: one of its own, or (``answer``) one
        answering it, whose addresses are the other way round."""
        self.opened += 1
        merged = k[6]
        src = format_ip(p.src_hi[i], p.src_lo[i]) or format_mac(p.src_mac[i])
        dst = format_ip(p.dst_hi[i], p.dst_lo[i]) or format_mac(p.dst_mac[i])
        if answer:
            src, dst = dst, src
        return OpenEvent(
            id=uuid.uuid4().hex,
            first_seen=t0,
            last_seen=t0,
            src="" if merged & 1 else src,
            dst="" if merged & 2 else dst,
            src_port=None,
            dst_port=None,
            proto="IP" if k[4] == OTHER_IP else protocol_name(int(p.ethertype[i]), int(p.proto[i])),
            kind=self._kind_names[int(k[5])],
            first_target=dst if by_source(self._kind_names[int(k[5])]) else "",
            top_sources=TopK(self.config.top_sources) if merged & 1 else None,
        )
