"""Zeek's TCP connection state machine, history letters and ``conn_state``, one packet at a time.

Transcribed from Zeek (github.com/zeek/zeek, commit a13de64f): the endpoint states and their
transitions from ``src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc``
(``UpdateInactiveState``, ``UpdateSYN_SentState``, ``UpdateEstablishedState``,
``UpdateClosedState``, ``update_history``, ``ConnectionClosed``), the history rules from
``src/analyzer/protocol/tcp/TCP_Endpoint.cc`` (``CheckHistory``: a connection that began with
a SYN-ACK is flipped, ``^h``, once productive traffic follows), and the ``conn_state`` letters
from ``scripts/base/protocols/conn/main.zeek`` (function ``conn_state``).

History letters kept (upper case: originator): ``s`` SYN, ``h`` SYN-ACK, ``a`` pure ACK,
``d`` data, ``f`` FIN, ``r`` RST, ``i`` FIN+RST, ``q`` SYN with FIN or RST, ``^`` flipped.
As in Zeek, ``a d i q`` appear at most once per direction, ``s h f r`` again whenever their
sequence number differs from the last packet of that flag (a retransmission repeats none).
Zeek's ``c g t w`` (checksum, gap, retransmitted data, zero window) need checksums or
reassembly and are left out.

The tracker (:mod:`netids.detect.connections`) steps only the packets that can change state
or history: those with SYN, FIN or RST, and the first packet of each kind (data, pure ACK,
neither) per direction in a batch. All other packets of an open connection leave Zeek's
state and history as they are. It holds the state of all connections in arrays
(:class:`~netids.detect.conn_steps.TcpTable`, the same rules as array operations) and hands
:class:`TcpState` only the few connections left in a long exchange; this module stays the
readable reference the arrays are tested against.
"""

from __future__ import annotations

import re

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

# Zeek's TCP_ENDPOINT_* states
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


class Endpoint:
    """One side's state, as Zeek's ``TCP_Endpoint`` keeps it."""

    __slots__ = ("state", "prev_state", "did_close", "last_syn", "last_fin", "last_rst")

    def __init__(self) -> None:
        self.state = self.prev_state = INACTIVE
        self.did_close = False
        self.last_syn = self.last_fin = self.last_rst = -1

    def set(self, state: int) -> None:
        if state != self.state:
            self.prev_state, self.state = self.state, state


class TcpState:
    """Both endpoints of one TCP connection, its history, and when it closed.

    >>> c = TcpState()
    >>> for is_orig, flags, seq, size in [(True, SYN, 0, 0), (False, SYN | ACK, 9, 0),
    ...                                   (True, ACK, 1, 0), (True, ACK, 1, 5),
    ...                                   (False, FIN | ACK, 10, 0), (True, FIN | ACK, 6, 0)]:
    ...     c.step(is_orig, flags, seq, size, 1.0)
    >>> c.history, c.conn_state(5, 0), c.finished
    ('ShADfF', 'SF', True)
    """

    __slots__ = ("orig", "resp", "history", "seen", "flipped", "finished", "closed_at")

    def __init__(self) -> None:
        self.orig, self.resp = Endpoint(), Endpoint()
        self.history = ""
        self.seen: set[tuple[str, bool]] = set()  # (kind, from the originator) recorded
        self.flipped = False  # roles swapped after the first packet (tracker swaps its counts)
        self.finished = False  # Zeek's close_complete: the connection will be removed
        self.closed_at: float | None = None  # when both sides had closed: the duration's end

    # -- history ---------------------------------------------------------------------------
    def _letter(self, ep: Endpoint, code: str) -> None:
        self.history += code if ep is self.orig else code.lower()

    def _once(self, ep: Endpoint, mask: str, code: str) -> bool:
        """Zeek's ``CheckHistory``: record ``code`` the first time a packet of kind ``mask``
        comes from this side; True when one came before."""
        if code in "AD" and self.history == "H":
            # began with a SYN-ACK, and productive traffic follows: the SYN-ACK's sender
            # was the responder after all (TCP_Endpoint::CheckHistory)
            self._flip()
            self.history = "^h"
        key = (mask, ep is self.orig)
        if key in self.seen:
            return True
        self.seen.add(key)
        self._letter(ep, code)
        return False

    def _flip(self) -> None:
        self.orig, self.resp = self.resp, self.orig
        self.flipped = not self.flipped
        self.seen = {(mask, not orig) for mask, orig in self.seen}

    def _history(self, ep: Endpoint, flags: int, seq: int, size: int) -> None:
        """Zeek's ``update_history``."""
        bits = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
        if bits > 1:
            if flags & FIN and flags & RST:
                self._once(ep, "I", "I")
            else:
                self._once(ep, "Q", "Q")
        elif flags & SYN:
            code = "H" if flags & ACK else "S"
            if self._once(ep, "S", code) and seq != ep.last_syn:
                self._letter(ep, code)
            ep.last_syn = seq
        elif flags & FIN:
            if self._once(ep, "F", "F") and seq + size != ep.last_fin:
                self._letter(ep, "F")
            ep.last_fin = seq + size
        elif flags & RST:
            if self._once(ep, "R", "R") and seq != ep.last_rst:
                self._letter(ep, "R")
            ep.last_rst = seq
        elif size:
            self._once(ep, "D", "D")
        elif flags & ACK:
            self._once(ep, "A", "A")

    # -- state -----------------------------------------------------------------------------
    def step(self, is_orig: bool, flags: int, seq: int, size: int, ts: float) -> None:
        """One packet: ``is_orig`` as the tracker holds the roles before this packet."""
        ep = self.orig if is_orig else self.resp
        self._history(ep, flags, seq, size)
        peer = self.resp if ep is self.orig else self.orig
        close = False
        if ep.state == INACTIVE:
            close = self._inactive(ep, peer, flags, size)
        elif ep.state in (SYN_SENT, SYN_ACK_SENT):
            close = self._syn_sent(ep, flags)
        elif ep.state in (ESTABLISHED, PARTIAL):
            close = self._established(ep, peer, flags)
        elif ep.state == CLOSED and flags & RST and peer.state != CLOSED:
            ep.set(RESET)
            close = not ep.did_close
        if close:
            self._closed(ep, peer, ts)

    def _inactive(self, ep: Endpoint, peer: Endpoint, flags: int, size: int) -> bool:
        """Zeek's ``UpdateInactiveState``; True when it reports the endpoint closed."""
        is_orig = ep is self.orig
        if flags & SYN:
            if is_orig:
                ep.set(SYN_ACK_SENT if flags & ACK else SYN_SENT)
            else:
                if not flags & ACK and peer.state == SYN_ACK_SENT:
                    # a SYN answering the originator's SYN-ACK: the roles were reversed
                    self._flip()
                    peer.set(ESTABLISHED)
                if peer.state == SYN_SENT:
                    peer.set(ESTABLISHED)
                ep.set(ESTABLISHED)
        close = self._syn_sent(ep, flags)  # a FIN or RST ends it as it ends SYN_SENT
        if ep.state == INACTIVE:
            if not is_orig and size == 0 and self.orig.state == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif flags & ACK and peer.state == ESTABLISHED:
                ep.set(ESTABLISHED)  # the SYN was missed, the SYN-ACK seen
            else:
                ep.set(PARTIAL)
        return close

    @staticmethod
    def _syn_sent(ep: Endpoint, flags: int) -> bool:
        """Zeek's ``UpdateSYN_SentState``: a FIN closes the endpoint, a RST resets it (the
        same step ends ``UpdateInactiveState``)."""
        close = False
        if flags & FIN:
            ep.set(CLOSED)
            close = True
        if flags & RST:
            ep.set(RESET)
            close = True
        return close

    @staticmethod
    def _established(ep: Endpoint, peer: Endpoint, flags: int) -> bool:
        """Zeek's ``UpdateEstablishedState``."""
        if flags & SYN and ep.state == PARTIAL and peer.state == INACTIVE and not flags & ACK:
            ep.set(SYN_SENT)
        close = False
        if flags & FIN and not flags & RST:
            ep.set(CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                peer.set(CLOSED)  # a FIN then a RST from the peer: a normal close after all
            close = True
        if flags & RST:
            ep.set(RESET)
            close = True
        return close

    def _closed(self, ep: Endpoint, peer: Endpoint, ts: float) -> None:
        """Zeek's ``ConnectionClosed``: once complete, the connection is removed after a delay."""
        if ep.did_close:
            return
        ep.did_close = True
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
            self.finished = True
        if peer.did_close and self.closed_at is None:
            self.closed_at = ts

    def conn_state(self, orig_bytes: int, resp_bytes: int) -> str:
        """Zeek's ``conn_state`` (scripts/base/protocols/conn/main.zeek), for TCP."""
        os_, rs = self.orig.state, self.resp.state
        o_inactive = os_ in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if (os_ in (SYN_SENT, SYN_ACK_SENT)
                    or (os_ == RESET and orig_bytes == 0 and resp_bytes == 0)):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                return "RSTOS0" if rstos0(self.history) else "OTH"
            return "RSTO"
        if rs == CLOSED and os_ == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"


def rstos0(history: str) -> bool:
    """Zeek's test for RSTOS0: a SYN from the originator, then its RST, no SYN-ACK."""
    return _RSTOS0.fullmatch(history) is not None


def udp_conn_state(orig_pkts: int, resp_pkts: int) -> str:
    """Zeek's ``conn_state`` for UDP: each side active once it sent a packet.

    >>> udp_conn_state(1, 0), udp_conn_state(2, 1)
    ('S0', 'SF')
    """
    if orig_pkts:
        return "SF" if resp_pkts else "S0"
    return "SHR" if resp_pkts else "OTH"
