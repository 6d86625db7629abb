"""Zeek's TCP state machine for every open connection at once: :class:`TcpTable`.

:class:`~netids.detect.conn_state.TcpState` transcribes Zeek's rules one packet at a time and
stays the reference; creating and stepping one Python object per connection cost 30-40 us a
connection, so a flood of spoofed SYNs (one connection per packet) cost 44 us a packet. Here
the same state lives in numpy arrays indexed by the tracker's slot, and a batch is stepped in
*rounds*: round ``k`` takes the ``k``-th state-changing packet of every connection at once, as
array operations. When few connections are left in a round (a long exchange within one
batch), their remaining packets go through :class:`TcpState` itself (:meth:`TcpTable.load` and
:meth:`TcpTable.store` convert), so the cost stays per round for the many and per packet for
the few. Tests step real captures and random packet sequences through both and compare.

Endpoints are held by identity, not by role: column 0 is the endpoint that was the originator
when the connection was created. A role flip (Zeek's ``^``) toggles ``flipped`` and moves no
data: the originator is column ``flipped``. History letters are kept as bytes, ``HIST_WIDTH``
per connection, and any beyond that in a dict (Zeek repeats ``S``/``F``/``R`` on new sequence
numbers, so a history has no fixed length).
"""

from __future__ import annotations

import numpy as np

from netids.detect.conn_state import (
    ACK,
    CLOSED,
    ESTABLISHED,
    FIN,
    INACTIVE,
    PARTIAL,
    RESET,
    RST,
    SYN,
    SYN_ACK_SENT,
    SYN_SENT,
    Endpoint,
    TcpState,
    rstos0,
)

HIST_WIDTH = 12  # history letters held in the array; longer histories spill into a dict
SCALAR_BELOW = 24  # a round with fewer connections than this hands the rest to TcpState
KINDS = "SFRDAIQ"  # the kinds of CheckHistory, as TcpState.seen names them ("S" for S and H)
_S, _F, _R, _D, _A, _I, _Q = range(len(KINDS))
_CODE = np.frombuffer(b"SFRDAIQ", dtype=np.uint8)  # the letter of each kind (S: H with ACK)
_LOWER = 32  # ASCII: lower case is upper case + 32


def _kind_table() -> np.ndarray:
    """update_history's branch by FIN, SYN, RST and ACK (flags & 0x17): the kind of letter,
    -2 where it depends on the payload (D with data, A with ACK, none without)."""
    table = np.full(0x18, -2, dtype=np.int64)
    for f in range(0x18):
        syn, fin, rst = bool(f & SYN), bool(f & FIN), bool(f & RST)
        if syn + fin + rst > 1:
            table[f] = _I if fin and rst else _Q
        elif syn + fin + rst == 1:
            table[f] = _S if syn else _F if fin else _R
    return table


def _state_table() -> np.ndarray:
    """TcpState.conn_state by [originator state, responder state, no bytes either way], from
    TcpState itself; "" where the history decides (RSTOS0 or OTH)."""
    names = np.empty((7, 7, 2), dtype=object)
    for os_, rs, empty in np.ndindex(names.shape):
        state = TcpState()
        state.orig.state, state.resp.state = os_, rs
        names[os_, rs, empty] = state.conn_state(0 if empty else 1, 0)
        state.history = "SR"
        if state.conn_state(0 if empty else 1, 0) != names[os_, rs, empty]:
            names[os_, rs, empty] = ""
    return names


_KINDS = _kind_table()
_STATES = _state_table()


class TcpTable:
    """The TCP state of ``capacity`` connection slots, as Zeek's rules update it."""

    def __init__(self, capacity: int) -> None:
        n = capacity
        self.state = np.zeros((n, 2), dtype=np.int8)  # endpoint state, by identity column
        self.prev = np.zeros((n, 2), dtype=np.int8)
        self.did_close = np.zeros((n, 2), dtype=bool)
        self.last_syn = np.full((n, 2), -1, dtype=np.int64)
        self.last_fin = np.full((n, 2), -1, dtype=np.int64)
        self.last_rst = np.full((n, 2), -1, dtype=np.int64)
        self.seen = np.zeros(n, dtype=np.int32)  # bit 2 * kind + column: CheckHistory's set
        self.flipped = np.zeros(n, dtype=bool)  # the originator is column 1
        self.finished_at = np.full(n, np.inf)  # when Zeek's close_complete became true
        self.closed_at = np.full(n, np.nan)  # when both sides had closed (nan: not yet)
        self.hist = np.zeros((n, HIST_WIDTH), dtype=np.uint8)
        self.hlen = np.zeros(n, dtype=np.int64)
        self.spill: dict[int, str] = {}  # history letters past HIST_WIDTH

    def reset(self, slots: np.ndarray, flipped: np.ndarray) -> None:
        """New connections; ``flipped``: made with the roles reversed (history ``^``)."""
        for arr in (self.state, self.prev, self.did_close, self.seen, self.flipped, self.hist):
            arr[slots] = 0
        for arr in (self.last_syn, self.last_fin, self.last_rst):
            arr[slots] = -1
        self.finished_at[slots] = np.inf
        self.closed_at[slots] = np.nan
        self.hist[slots, 0] = np.where(flipped, ord("^"), 0)
        self.hlen[slots] = flipped
        if self.spill:
            for s in slots.tolist():
                self.spill.pop(s, None)

    def open_syn(self, slots: np.ndarray, seq: np.ndarray) -> None:
        """New connections (just :meth:`reset`, not flipped) whose first packet is a SYN
        without ACK, FIN or RST: its step, as TcpState.step takes it (state SYN_SENT,
        history ``S``), without a round. The first packet of most connections, and of
        every connection of a SYN flood."""
        self.state[slots, 0] = SYN_SENT
        self.seen[slots] = 1 << (2 * _S)
        self.last_syn[slots, 0] = seq
        self.hist[slots, 0] = ord("S")
        self.hlen[slots] = 1

    def roles(self, slots: np.ndarray) -> np.ndarray:
        """Endpoint states of ``slots`` as [originator, responder]."""
        f = self.flipped[slots].astype(np.intp)
        return np.stack([self.state[slots, f], self.state[slots, 1 - f]], axis=1)

    # -- stepping --------------------------------------------------------------------------
    def step(self, slots: np.ndarray, col: np.ndarray, flags: np.ndarray, seq: np.ndarray,
             size: np.ndarray, ts: np.ndarray) -> None:
        """Packets in stream order, grouped by connection: ``col`` is the sender's column."""
        if not len(slots):
            return
        starts = np.r_[True, slots[1:] != slots[:-1]]
        index = np.arange(len(slots))
        rank = index - np.maximum.accumulate(np.where(starts, index, 0))
        order = np.argsort(rank, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if b - a < SCALAR_BELOW and k + 1 < len(bounds) - 1:
                rest = np.sort(order[a:])  # the rest, back in stream order per connection
                self._scalar(slots[rest], col[rest], flags[rest], seq[rest], size[rest],
                             ts[rest])
                return
            i = order[a:b]
            self._round(slots[i], col[i], flags[i].astype(np.int64), seq[i].astype(np.int64),
                        size[i].astype(np.int64), ts[i])

    def _scalar(self, slots: np.ndarray, col: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                size: np.ndarray, ts: np.ndarray) -> None:
        """The reference rules, packet by packet, for the few connections left."""
        current, state, ends = -1, TcpState(), (Endpoint(), Endpoint())
        rows = zip(slots.tolist(), col.tolist(), flags.tolist(), seq.tolist(), size.tolist(),
                   ts.tolist(), strict=True)
        for s, c, f, q, n, t in rows:
            if s != current:
                if current >= 0:
                    self.store(current, state, ends)
                current = s
                state, ends = self.load(s)
            state.step((ends[c] is state.orig), f, q, n, t)
            if state.finished and self.finished_at[s] == np.inf:
                self.finished_at[s] = t
        self.store(current, state, ends)

    def _round(self, s: np.ndarray, c: np.ndarray, flags: np.ndarray, seq: np.ndarray,
               size: np.ndarray, ts: np.ndarray) -> None:
        """One packet of each connection ``s`` (all distinct): TcpState.step, as arrays."""
        r = np.arange(len(s))
        fl = self.flipped[s]
        fl ^= self._history(s, c, flags, seq, size, fl)
        st, prev, dc = self.state[s], self.prev[s], self.did_close[s]
        close = _transitions(st, prev, dc, r, c, fl, flags, size)
        pc = 1 - c
        close &= ~dc[r, c]  # ConnectionClosed: once per endpoint
        dc[r[close], c[close]] = True
        done = close & ((st[r, c] == RESET) | dc[r, pc] | (st[r, pc] == INACTIVE))
        fin = self.finished_at[s]
        self.finished_at[s] = np.where(done & (fin == np.inf), ts, fin)
        both = close & dc[r, pc]
        was = self.closed_at[s]
        self.closed_at[s] = np.where(both & np.isnan(was), ts, was)
        self.state[s], self.prev[s], self.did_close[s], self.flipped[s] = st, prev, dc, fl

    def _history(self, s: np.ndarray, c: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                 size: np.ndarray, fl: np.ndarray) -> np.ndarray:
        """Zeek's ``update_history`` for one packet each; returns where the roles flipped
        (a connection begun by a SYN-ACK, then productive traffic: ``^h``)."""
        ack = (flags & ACK) != 0
        kind = _KINDS[flags & (SYN | FIN | RST | ACK)]
        kind = np.where(kind == -2, np.where(size > 0, _D, np.where(ack, _A, -1)), kind)
        hlen = self.hlen[s]
        rewrite = (((kind == _D) | (kind == _A)) & (hlen == 1)
                   & (self.hist[s, 0] == ord("H")))
        if rewrite.any():
            w = s[rewrite]
            self.hist[w, 0], self.hist[w, 1], self.hlen[w] = ord("^"), ord("h"), 2
        orig = c == (fl ^ rewrite)  # the sender is the originator (after a rewrite's flip)
        bit = np.where(kind >= 0, 2 * kind + c, 0)
        seen = self.seen[s]
        had = (kind >= 0) & (((seen >> bit) & 1) == 1)
        self.seen[s] = np.where(kind >= 0, seen | (1 << bit), seen)
        letter = (kind >= 0) & ~had
        for k, last, value in ((_S, self.last_syn, seq), (_F, self.last_fin, seq + size),
                               (_R, self.last_rst, seq)):
            m = kind == k
            if m.any():  # s h f r again when the sequence number moved
                letter |= m & had & (value != last[s, c])
                last[s[m], c[m]] = value[m]
        if letter.any():
            code = _CODE[np.maximum(kind, 0)]
            code = np.where((kind == _S) & ack, ord("H"), code) + np.where(orig, 0, _LOWER)
            self._append(s[letter], code[letter].astype(np.uint8))
        return rewrite

    def _append(self, s: np.ndarray, code: np.ndarray) -> None:
        n = self.hlen[s]
        room = n < HIST_WIDTH
        self.hist[s[room], n[room]] = code[room]
        for slot, letter in zip(s[~room].tolist(), code[~room].tolist(), strict=True):
            self.spill[slot] = self.spill.get(slot, "") + chr(letter)
        self.hlen[s] = n + 1

    # -- reading ---------------------------------------------------------------------------
    def history(self, slots: np.ndarray) -> list[str]:
        """Zeek's history of ``slots``, as text."""
        held = self.hist[slots].view(f"S{HIST_WIDTH}").ravel().astype(str).tolist()
        if self.spill:
            spill = self.spill
            held = [h + spill.get(s, "") for h, s in zip(held, slots.tolist(), strict=True)]
        return held

    def conn_state(self, slots: np.ndarray, orig_bytes: np.ndarray,
                   resp_bytes: np.ndarray) -> list[str]:
        """Zeek's ``conn_state`` of ``slots`` (TcpState.conn_state, as arrays)."""
        os_, rs = self.roles(slots).T
        empty = ((orig_bytes == 0) & (resp_bytes == 0)).astype(np.intp)
        out = _STATES[os_, rs, empty].tolist()
        if "" in out:
            for i in [i for i, name in enumerate(out) if not name]:
                out[i] = "RSTOS0" if rstos0(self.history(slots[i:i + 1])[0]) else "OTH"
        return out

    # -- the reference object, for the few ---------------------------------------------------
    def load(self, s: int) -> tuple[TcpState, tuple[Endpoint, Endpoint]]:
        """Connection ``s`` as a :class:`TcpState`, and its endpoints by column."""
        state = TcpState()
        ends = (Endpoint(), Endpoint())
        for c, ep in enumerate(ends):
            ep.state, ep.prev_state = int(self.state[s, c]), int(self.prev[s, c])
            ep.did_close = bool(self.did_close[s, c])
            ep.last_syn, ep.last_fin = int(self.last_syn[s, c]), int(self.last_fin[s, c])
            ep.last_rst = int(self.last_rst[s, c])
        flipped = bool(self.flipped[s])
        state.flipped = flipped
        state.orig, state.resp = (ends[1], ends[0]) if flipped else ends
        bits = int(self.seen[s])
        state.seen = {(KINDS[b // 2], (b % 2) == flipped) for b in range(2 * len(KINDS))
                      if bits >> b & 1}
        state.history = self.history(np.array([s]))[0]
        state.finished = bool(self.finished_at[s] < np.inf)
        closed = float(self.closed_at[s])
        state.closed_at = None if np.isnan(closed) else closed
        return state, ends

    def store(self, s: int, state: TcpState, ends: tuple[Endpoint, Endpoint]) -> None:
        """Write back what :meth:`load` gave, after stepping it (``finished_at`` is the
        caller's: it knows the packet's time)."""
        for c, ep in enumerate(ends):
            self.state[s, c], self.prev[s, c] = ep.state, ep.prev_state
            self.did_close[s, c] = ep.did_close
            self.last_syn[s, c], self.last_fin[s, c] = ep.last_syn, ep.last_fin
            self.last_rst[s, c] = ep.last_rst
        self.flipped[s] = state.flipped
        self.seen[s] = sum(1 << (2 * KINDS.index(kind) + (orig == state.flipped))
                           for kind, orig in state.seen)
        text = state.history.encode()
        self.hist[s] = 0
        self.hist[s, :min(len(text), HIST_WIDTH)] = np.frombuffer(text[:HIST_WIDTH], np.uint8)
        self.hlen[s] = len(text)
        self.spill.pop(s, None)
        if len(text) > HIST_WIDTH:
            self.spill[s] = state.history[HIST_WIDTH:]
        self.closed_at[s] = np.nan if state.closed_at is None else state.closed_at


def _set(st: np.ndarray, prev: np.ndarray, m: np.ndarray, r: np.ndarray, col: np.ndarray,
         value: np.ndarray | int) -> None:
    """Endpoint.set for the rows ``m``: the state, and the previous one when it changes."""
    cur = st[r, col]
    change = m & (value != cur)
    rows, cols = r[change], col[change]
    prev[rows, cols] = cur[change]
    st[rows, cols] = value[change] if isinstance(value, np.ndarray) else value


def _transitions(st: np.ndarray, prev: np.ndarray, dc: np.ndarray, r: np.ndarray,
                 c: np.ndarray, fl: np.ndarray, flags: np.ndarray, size: np.ndarray
                 ) -> np.ndarray:
    """TcpState.step's state changes for one packet per row (``st``, ``prev`` and ``fl``
    updated in place); returns where an endpoint reports itself closed."""
    syn, fin, rst, ack = ((flags & bit) != 0 for bit in (SYN, FIN, RST, ACK))
    pc = 1 - c
    se = st[r, c]
    inactive = se == INACTIVE
    syn_sent = (se == SYN_SENT) | (se == SYN_ACK_SENT)
    est = (se == ESTABLISHED) | (se == PARTIAL)
    was_closed = (se == CLOSED) & rst & (st[r, pc] != CLOSED)
    close = (inactive | syn_sent | est) & (fin | rst)
    close |= was_closed & ~dc[r, c]
    # UpdateInactiveState
    orig = c == fl
    _set(st, prev, inactive & syn & orig, r, c, np.where(ack, SYN_ACK_SENT, SYN_SENT))
    answer = inactive & syn & ~orig
    swap = answer & ~ack & (st[r, pc] == SYN_ACK_SENT)  # the roles were reversed
    fl ^= swap
    _set(st, prev, swap, r, pc, ESTABLISHED)
    _set(st, prev, answer & (st[r, pc] == SYN_SENT), r, pc, ESTABLISHED)
    _set(st, prev, answer, r, c, ESTABLISHED)
    _set(st, prev, inactive & fin, r, c, CLOSED)
    _set(st, prev, inactive & rst, r, c, RESET)
    still = inactive & (st[r, c] == INACTIVE)
    wait = still & ~orig & (size == 0) & (st[r, pc] == SYN_SENT)
    late = still & ~wait & ack & (st[r, pc] == ESTABLISHED)
    _set(st, prev, late, r, c, ESTABLISHED)
    _set(st, prev, still & ~wait & ~late, r, c, PARTIAL)
    # UpdateSYN_SentState
    _set(st, prev, syn_sent & fin, r, c, CLOSED)
    _set(st, prev, syn_sent & rst, r, c, RESET)
    # UpdateEstablishedState
    _set(st, prev, est & syn & (st[r, c] == PARTIAL) & (st[r, pc] == INACTIVE) & ~ack, r, c,
         SYN_SENT)
    half = est & fin & ~rst
    _set(st, prev, half, r, c, CLOSED)
    _set(st, prev, half & (st[r, pc] == RESET) & (prev[r, pc] == CLOSED), r, pc, CLOSED)
    _set(st, prev, est & rst, r, c, RESET)
    # UpdateClosedState
    _set(st, prev, was_closed, r, c, RESET)
    return close
