"""Connection records from decoded packet batches, as Zeek's conn.log has them.

:class:`ConnTracker` takes the :class:`~netids.detect.packets.PacketBatch` batches the pipeline
decodes and returns :class:`~netids.detect.conn_records.ConnRecord` records: TCP, UDP and ICMP
(v4 and v6) connections keyed by their bidirectional 5-tuple (ICMP by type and counterpart
type, as Zeek keys it). The originator is the side that sent the first packet seen, unless
that packet was not a SYN (or was UDP) and came from a likely server port: then the roles are
flipped, as Zeek's ``WantConnection`` does (``^`` in the history). TCP state and history follow
Zeek's rules (:mod:`netids.detect.conn_state`).

Records are written as Zeek removes connections, with Zeek's default timers: TCP 5 s after
it closed (FIN both ways, a RST, or a FIN against a silent peer: ``tcp_close_delay``,
``tcp_reset_delay``), 5 s after an unanswered SYN (``tcp_attempt_delay``), after 5 min
without packets (TCP) or 1 min (UDP, ICMP). A connection open longer than a minute is also
written every minute as an ``in_progress`` snapshot. Time is packet time (the newest
timestamp seen), so a capture file gives the records live capture would.

The cost is per batch, not per packet or connection: packets are grouped by connection with
numpy and counted with ``bincount``; only the packets that can change TCP state (SYN, FIN,
RST, and the first of each kind per direction) step Zeek's state machine, held for every
connection in arrays (:class:`~netids.detect.conn_steps.TcpTable`); records are returned as
columns and built into objects when read (:class:`~netids.detect.conn_columns.ConnRecords`).
State is bounded:
``capacity`` open connections at most, in a :class:`~netids.detect.keytable.KeyTable`; when it
is full the idlest connections that are not established (4 packets over 1 s) are written out
early (``ended = "evicted"``) and counted, so a flood of spoofed SYNs evicts its own and leaves
long-standing connections alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.detect.conn_columns import ConnColumns, ConnRecords
from netids.detect.conn_keys import connection_keys
from netids.detect.conn_records import SERVER_PORTS, ConnRecord
from netids.detect.conn_state import ACK, FIN, INACTIVE, RST, SYN, SYN_ACK_SENT, SYN_SENT
from netids.detect.conn_steps import TcpTable
from netids.detect.keytable import KeyTable, TableStats
from netids.detect.packets import (
    FLAG_FRAGMENT,
    FLAG_L4,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PacketBatch,
)


@dataclass(frozen=True, slots=True)
class ConnConfig:
    """Timers and bounds of the tracker; the timers are Zeek's defaults."""

    capacity: int = 1 << 16  # open connections held at most (about 300 bytes each, plus TCP's)
    tcp_timeout: float = 300.0  # tcp_inactivity_timeout
    udp_timeout: float = 60.0  # udp_inactivity_timeout
    icmp_timeout: float = 60.0  # icmp_inactivity_timeout
    close_delay: float = 5.0  # tcp_close_delay and tcp_reset_delay: linger after closing
    attempt_delay: float = 5.0  # tcp_attempt_delay: an unanswered SYN is written after this
    report_every: float = 60.0  # a long connection's in-progress snapshot, this often
    sizes_kept: int = 4  # payload sizes kept per direction (the first payload packets')
    seed: int = 0  # for uids

    def __post_init__(self) -> None:
        assert self.capacity >= 64 and self.sizes_kept >= 0


PROTO_TEXT = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}
# UDP's conn_state and history by (originator sent) + 2 (responder sent) + 4 (flipped)
_UDP_STATES = np.array(["OTH", "S0", "SHR", "SF"], dtype=object)
_UDP_HISTORY = np.array(["", "D", "d", "Dd", "^", "^D", "^d", "^dD"], dtype=object)


def _port_table(ports: list[int]) -> np.ndarray:
    table = np.zeros(1 << 16, dtype=bool)
    table[ports] = True
    return table


# the likely server ports of each protocol, as a table indexed by port
_LIKELY = {PROTO_TCP: _port_table(SERVER_PORTS["tcp"]),
           PROTO_UDP: _port_table(SERVER_PORTS["udp"])}


class ConnTracker:
    """Connections of one traffic stream, across batches.

    >>> from tests.support import make_packets
    >>> t = ConnTracker()
    >>> t.update(make_packets(1, src="10.0.0.1", dst="10.0.0.2", ts=[0.0]))  # a SYN: open
    []
    >>> [(r.conn_state, r.history, r.ended) for r in t.flush()]
    [('S0', 'S', 'end of input')]
    """

    def __init__(self, config: ConnConfig | None = None) -> None:
        self.config = c = config or ConnConfig()
        n = c.capacity
        self.table = KeyTable(n, min_packets=4, min_age=1.0)
        self.table.on_evict = self._evicted
        self.addr = np.zeros((n, 4), dtype=np.uint64)  # orig hi, lo, resp hi, lo
        self.ports = np.zeros((n, 2), dtype=np.int32)  # orig, resp
        self.proto = np.zeros(n, dtype=np.int16)
        self.orig_low = np.zeros(n, dtype=bool)  # the originator is the key's first endpoint
        self.start = np.zeros(n)
        self.last = np.zeros(n)
        self.pkts = np.zeros((n, 2), dtype=np.int64)  # [:, 0] originator, [:, 1] responder
        self.bytes = np.zeros((n, 2), dtype=np.int64)
        self.ip_bytes = np.zeros((n, 2), dtype=np.int64)
        self.sizes = np.zeros((n, 2, max(c.sizes_kept, 1)), dtype=np.int32)
        self.nsizes = np.zeros((n, 2), dtype=np.int64)
        self.serial = np.zeros(n, dtype=np.int64)
        self.next_report = np.full(n, np.inf)  # the next in-progress snapshot
        self.flipped = np.zeros(n, dtype=bool)  # at creation (UDP, TCP midstream)
        self.tcp_flips = np.zeros(n, dtype=bool)  # TcpTable.flipped, as the sides are held
        self.timeout = np.zeros(n)  # inactivity timeout by protocol
        self.deadline = np.full(n, np.inf)  # when a timer may end it, if nothing comes first
        self.tcp = TcpTable(n)  # Zeek's TCP state; its finished_at: when TCP closed
        self.now = -np.inf
        self.opened = 0
        self.evicted = 0
        self._out: list[ConnColumns] = []

    def __len__(self) -> int:
        return len(self.table)

    def stats(self) -> TableStats:
        return self.table.stats("connections")

    def update(self, packets: PacketBatch) -> ConnRecords:
        """Count one batch (in stream order); return the records it completed (a sequence
        of :class:`~netids.detect.conn_records.ConnRecord`, built when read)."""
        proto = packets.proto
        rows = np.flatnonzero(((packets.status & (FLAG_L4 | FLAG_FRAGMENT)) == FLAG_L4)
                              & ((proto == PROTO_TCP) | (proto == PROTO_UDP)
                                 | (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)))
        if len(rows):
            keys, src_low, ports = connection_keys(packets, rows)
            order = np.argsort(keys, kind="stable")  # each connection's packets, in order
            rows, keys, src_low, ports = rows[order], keys[order], src_low[order], ports[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            step = self.config.capacity // 4  # the table takes capacity / 2 new keys a call
            for lo in range(0, len(starts), step):
                a = starts[lo]
                b = starts[lo + step] if lo + step < len(starts) else len(rows)
                self._apply(packets, rows[a:b], keys[a:b], src_low[a:b], ports[a:b])
            self.now = max(self.now, float(packets.ts[rows].max()))
        self._expire()
        out, self._out = self._out, []
        return ConnRecords(out)

    def flush(self) -> ConnRecords:
        """Write every open connection (the input ended) and forget them."""
        slots = np.flatnonzero(self.table.used)
        out = ConnRecords([*self._out, self._records(slots, "end of input")])
        self._out = []
        self._release(slots)
        return out

    # -- one group of connections ----------------------------------------------------------
    def _apply(self, p: PacketBatch, rows: np.ndarray, keys: np.ndarray, src_low: np.ndarray,
               ports: np.ndarray) -> None:
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        counts = np.diff(np.r_[starts, len(keys)])
        last = np.maximum.reduceat(p.ts[rows], starts)
        slots_u, new = self.table.lookup(keys[starts], last)
        self.table.hits[slots_u] += counts - 1
        slot = np.repeat(slots_u, counts)
        tcp = p.proto[rows] == PROTO_TCP
        if new.any():
            first = starts[new]
            # a connection opened by a plain SYN has taken that SYN's step already
            tcp[first[self._open(p, rows[first], slots_u[new], src_low[first],
                                 ports[first])]] = False
        if tcp.any():
            self._tcp(p, rows[tcp], slot[tcp], src_low[tcp])
        self._count(p, rows, slots_u, counts, src_low == self.orig_low[slot], last)
        self._deadlines(slots_u)

    def _deadlines(self, slots: np.ndarray) -> None:
        """When Zeek's timers would next look at these connections: inactivity, the linger
        after closing, and the attempt timer of an unanswered SYN."""
        c = self.config
        due = np.minimum(self.last[slots] + self.timeout[slots],
                         self.tcp.finished_at[slots] + c.close_delay)
        st = self.tcp.roles(slots)
        waiting = ((self.proto[slots] == PROTO_TCP) & (st[:, 1] == INACTIVE)
                   & ((st[:, 0] == SYN_SENT) | (st[:, 0] == SYN_ACK_SENT)))
        self.deadline[slots] = np.where(waiting, np.minimum(due, self.start[slots]
                                                            + c.attempt_delay), due)

    def _open(self, p: PacketBatch, rows: np.ndarray, slots: np.ndarray, src_low: np.ndarray,
              ports: np.ndarray) -> np.ndarray:
        """New connections, from their first packet: who originated it, and clean counters.
        Returns where that packet was a plain SYN, stepped already (TcpTable.open_syn)."""
        proto = p.proto[rows]
        flags = p.tcp_flags[rows]
        flip = np.zeros(len(rows), dtype=bool)
        for num, likely in _LIKELY.items():
            src, dst = likely[ports[:, 0] & 0xFFFF], likely[ports[:, 1] & 0xFFFF]
            if num == PROTO_TCP:  # Zeek's TCPAnalyzer::WantConnection
                partial = (flags & SYN == 0) | (flags & ACK != 0)
                both = ~(flags & SYN != 0) & (ports[:, 0] < ports[:, 1])
                flip |= (proto == num) & partial & src & (~dst | both)
            else:  # UDPAnalyzer::WantConnection
                flip |= (proto == num) & src & ~dst
        src_a = np.stack([p.src_hi[rows], p.src_lo[rows]], axis=1)
        dst_a = np.stack([p.dst_hi[rows], p.dst_lo[rows]], axis=1)
        f = flip[:, None]
        self.addr[slots] = np.concatenate([np.where(f, dst_a, src_a), np.where(f, src_a, dst_a)],
                                          axis=1)
        self.ports[slots] = np.where(f, ports[:, ::-1], ports)
        self.orig_low[slots] = src_low ^ flip
        self.proto[slots] = proto
        self.start[slots] = self.last[slots] = p.ts[rows]
        self.next_report[slots] = p.ts[rows] + self.config.report_every
        c = self.config
        self.timeout[slots] = np.where(proto == PROTO_TCP, c.tcp_timeout,
                                       np.where(proto == PROTO_UDP, c.udp_timeout,
                                                c.icmp_timeout))
        for arr in (self.pkts, self.bytes, self.ip_bytes, self.nsizes):
            arr[slots] = 0
        self.flipped[slots] = flip
        self.tcp_flips[slots] = False
        self.serial[slots] = np.arange(self.opened + 1, self.opened + 1 + len(slots))
        self.opened += len(slots)
        tcp = proto == PROTO_TCP
        self.tcp.reset(slots, flip & tcp)
        syn = tcp & ((flags & (SYN | ACK | FIN | RST)) == SYN)
        self.tcp.open_syn(slots[syn], p.seq[rows[syn]])
        return syn

    def _tcp(self, p: PacketBatch, rows: np.ndarray, slot: np.ndarray,
             src_low: np.ndarray) -> None:
        """Zeek's state machine over the packets that can change state or history."""
        flags = p.tcp_flags[rows].astype(np.int64)
        size = p.payload[rows].astype(np.int64)
        step = (flags & (SYN | FIN | RST)) != 0
        plain = np.flatnonzero(~step)  # the first of each kind per side may change state
        kind = np.where(size[plain] > 0, 2, np.where(flags[plain] & ACK, 1, 0))
        group = slot[plain] * 6 + src_low[plain] * 3 + kind
        step[plain[np.unique(group, return_index=True)[1]]] = True
        idx = np.flatnonzero(step)
        at = slot[idx]
        # the sender's endpoint, as TcpTable holds them: column 0 originated at creation
        col = (src_low[idx] ^ self.orig_low[at] ^ self.tcp_flips[at]).astype(np.intp)
        self.tcp.step(at, col, flags[idx], p.seq[rows[idx]], size[idx], p.ts[rows[idx]])
        touched = at[np.r_[True, at[1:] != at[:-1]]]  # packets come grouped by connection
        for s in touched[self.tcp.flipped[touched] != self.tcp_flips[touched]].tolist():
            self.tcp_flips[s] = not self.tcp_flips[s]
            self._swap(s)

    def _swap(self, s: int) -> None:
        """The roles of connection ``s`` flipped: what was the originator's is the responder's."""
        self.orig_low[s] = not self.orig_low[s]
        self.addr[s] = self.addr[s, [2, 3, 0, 1]]
        for arr in (self.ports, self.pkts, self.bytes, self.ip_bytes, self.sizes, self.nsizes):
            arr[s] = arr[s, ::-1]

    def _count(self, p: PacketBatch, rows: np.ndarray, slots: np.ndarray, counts: np.ndarray,
               is_orig: np.ndarray, last: np.ndarray) -> None:
        """Packets, bytes, IP bytes and the first payload sizes per side; the last time.
        ``rows`` come grouped by connection, ``counts`` packets each, in ``slots``."""
        side = np.repeat(np.arange(len(slots)) * 2, counts) + (~is_orig)
        size = p.payload[rows].astype(np.int64)
        icmp = (p.proto[rows] == PROTO_ICMP) | (p.proto[rows] == PROTO_ICMPV6)
        size = np.maximum(np.where(icmp, size - 8, size), 0)  # Zeek: ICMP data after 8 bytes
        m = 2 * len(slots)
        self.pkts[slots] += np.bincount(side, minlength=m).reshape(-1, 2)
        self.bytes[slots] += np.bincount(side, size, m).reshape(-1, 2).astype(np.int64)
        ip_len = np.maximum(p.ip_len[rows], 0)
        self.ip_bytes[slots] += np.bincount(side, ip_len, m).reshape(-1, 2).astype(np.int64)
        self.last[slots] = np.maximum(self.last[slots], last)
        keep = self.config.sizes_kept
        group = slots[side // 2] * 2 + (side & 1)
        held = self.nsizes.reshape(-1)
        paying = np.flatnonzero((size > 0) & (held[group] < keep))  # sizes still wanted
        if len(paying):
            g = group[paying]
            order = np.argsort(g, kind="stable")
            g, values = g[order], size[paying][order]
            starts = np.r_[True, g[1:] != g[:-1]]
            index = np.arange(len(g))
            rank = index - np.maximum.accumulate(np.where(starts, index, 0))
            pos = held[g] + rank
            ok = pos < keep
            self.sizes.reshape(-1, self.sizes.shape[2])[g[ok], pos[ok]] = values[ok]
            ug, n = np.unique(g, return_counts=True)
            held[ug] = np.minimum(keep, held[ug] + n)

    # -- writing records -------------------------------------------------------------------
    def _expire(self) -> None:
        """Write out what Zeek would remove by now, and the in-progress snapshots due."""
        c, now = self.config, self.now
        if now == -np.inf:
            return
        slots = np.flatnonzero(self.deadline <= now)
        if len(slots):
            self._deadlines(slots)  # the same rules, at a time these slots are due
            slots = slots[self.deadline[slots] <= now]
            closed = self.tcp.finished_at[slots] + c.close_delay <= now
            for part, why in ((slots[closed], "closed"), (slots[~closed], "timeout")):
                if len(part):
                    self._out.append(self._records(part, why))
                    self._release(part)
        due = np.flatnonzero(self.next_report <= now)
        if len(due):
            self._out.append(self._records(due, "", in_progress=True))
            late = np.floor((now - self.next_report[due]) / c.report_every) + 1
            self.next_report[due] += late * c.report_every

    def _evicted(self, slots: np.ndarray) -> None:
        self._out.append(self._records(slots, "evicted"))
        self.evicted += len(slots)
        self._forget(slots)

    def _release(self, slots: np.ndarray) -> None:
        self.table.release(slots)
        self._forget(slots)

    def _forget(self, slots: np.ndarray) -> None:
        self.deadline[slots] = self.next_report[slots] = np.inf

    def _records(self, slots: np.ndarray, ended: str, *,
                 in_progress: bool = False) -> ConnColumns:
        """The records of connections ``slots`` as they stand, as columns."""
        proto = self.proto[slots]
        tcp, udp = proto == PROTO_TCP, proto == PROTO_UDP
        pkts, size = self.pkts[slots], self.bytes[slots]
        start = self.start[slots]
        # TCP's duration ends with the packet that closed both sides (nan: not closed)
        last = np.fmin(self.last[slots], self.tcp.closed_at[slots])
        state = np.full(len(slots), "OTH", dtype=object)
        history = np.full(len(slots), None, dtype=object)
        if tcp.any():
            t = slots[tcp]
            state[tcp] = self.tcp.conn_state(t, size[tcp, 0], size[tcp, 1])
            history[tcp] = [h or None for h in self.tcp.history(t)]
        if udp.any():
            # Zeek's D and d, in the order the sides first sent (the responder first when
            # the roles were flipped)
            sent = (pkts[udp] > 0).astype(np.intp)
            state[udp] = _UDP_STATES[sent[:, 0] + 2 * sent[:, 1]]
            history[udp] = _UDP_HISTORY[sent[:, 0] + 2 * sent[:, 1]
                                        + 4 * self.flipped[slots[udp]]]
        return ConnColumns(
            ts=start, serial=self.serial[slots], seed=self.config.seed, addr=self.addr[slots],
            ports=self.ports[slots], proto=[PROTO_TEXT[p] for p in proto.tolist()],
            duration=last - start, bytes=size, conn_state=state.tolist(),
            history=history.tolist(), pkts=pkts, ip_bytes=self.ip_bytes[slots],
            sizes=self.sizes[slots], nsizes=self.nsizes[slots],
            in_progress=[in_progress] * len(slots), ended=[ended] * len(slots))


def connection_records(packets: PacketBatch) -> list[ConnRecord]:
    """Every connection of ``packets``, closed or still open at their end, whatever order the
    batches come in: what the behaviour detectors learn a network's normal from (how many
    failed connections a host makes, which servers beacon or take big uploads, which services
    stay connected), from the traffic learning kept or a capture's learning part."""
    order = np.argsort(packets.ts, kind="stable")
    tracker = ConnTracker()
    return list(tracker.update(packets.take(order))) + list(tracker.flush())
