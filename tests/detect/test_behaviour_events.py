"""Behaviour alerts as events (pure): an escalation updates its episode's event, a later
alert on the same key opens a new one and closes the old, quiet episodes close, the open ones
are bounded, and levels follow the detectors' severities at any threshold."""

from __future__ import annotations

from netids.detect.behaviour_base import record
from netids.detect.behaviour_events import BehaviourEvents
from netids.detect.event_records import GRADES, behaviour_score, grade


def probes(start: float, ports: range, host: str = "10.0.0.2",
           source: str = "10.0.0.1") -> list:
    """Failed connection attempts from ``source`` to ``host``, one port a second."""
    return [record(ts=start + i, uid=f"C{host}-{start}-{p}", orig_h=source, resp_h=host,
                   resp_p=p) for i, p in enumerate(ports)]


def test_an_escalating_scan_updates_one_event_and_a_later_one_opens_another() -> None:
    b = BehaviourEvents()
    (first,), closed = b.update(probes(0.0, range(1, 26)), now=25.0, threshold=0.999)
    assert (first.kind, first.packets, closed) == ("vertical scan", 25, [])
    assert grade(first.score_max, 0.999, first.kind) == "medium"
    # four times the limit: "high", which suppression lets through as an escalation
    (grown,), closed = b.update(probes(30.0, range(26, 300)), now=400.0, threshold=0.999)
    assert (grown.id, grown.first_seen, closed) == (first.id, 0.0, [])
    assert grown.packets >= 100 and grown.last_seen > first.last_seen
    assert grade(grown.score_max, 0.999, grown.kind) == "high"
    # hours later the same scanner again: a new event; the old episode was closed when quiet
    _, closed = b.update([], now=400.0 + 3700.0, threshold=0.999)
    assert [c.id for c in closed] == [first.id] and not b.open
    (again,), _ = b.update(probes(8000.0, range(1, 26)), now=8025.0, threshold=0.999)
    assert again.id != first.id and again.first_seen == 8000.0
    assert [c.id for c in b.flush()] == [again.id] and not b.open
    assert b.opened == 2  # the escalation updated its event


def test_login_after_guessing_is_an_event_of_its_own() -> None:
    b = BehaviourEvents()
    guesses = [record(ts=10.0 * i, uid=f"G{i}", orig_p=40000 + i, service="ssh",
                      conn_state="SF", history="ShADadFf", duration=2.0, orig_bytes=1500,
                      resp_bytes=2000, resp_pkts=10, orig_pkts=10) for i in range(12)]
    login = record(ts=200.0, uid="L", orig_p=50000, service="ssh", conn_state="SF",
                   history="ShADadFf", duration=600.0, orig_bytes=90_000, resp_bytes=400_000,
                   resp_pkts=900, orig_pkts=800)
    found, _ = b.update(guesses + [login], now=800.0, threshold=0.999)
    assert [(e.kind, e.dst, e.dst_port) for e in found] == [
        ("brute force", "10.0.0.2", 22), ("login after guessing", "10.0.0.2", 22)]
    assert len({e.id for e in found}) == 2
    assert [grade(e.score_max, 0.9, e.kind) for e in found] == ["medium", "critical"]


def test_open_events_are_bounded_and_the_oldest_close_first() -> None:
    b = BehaviourEvents(capacity=2)
    found: list = []
    closed: list = []
    for n, host in enumerate(["10.0.1.1", "10.0.1.2", "10.0.1.3"]):
        scan = probes(100.0 * n, range(1, 26), host=f"10.0.2.{n}", source=host)
        more, ended = b.update(scan, now=100.0 * n + 30, threshold=0.999)
        found, closed = found + more, closed + ended
    assert [e.src for e in found] == ["10.0.1.1", "10.0.1.2", "10.0.1.3"]
    assert [e.src for e in closed] == ["10.0.1.1"] and len(b.open) == 2


def test_behaviour_levels_ignore_the_threshold_slider() -> None:
    for severity in ("low", "medium", "high", "critical"):
        score = behaviour_score(severity)
        assert {grade(score, t, "slow scan") for t in (0.5, 0.999, 0.99999)} == {severity}
    assert set(("low", "medium", "high", "critical")) <= set(GRADES)


def test_an_escalation_keeps_the_start_of_its_first_alert() -> None:
    # records come in the order connections end, not start: a late batch of failures that
    # started earlier escalates the event, whose start stays where the store keeps it
    b = BehaviourEvents()
    (first,), _ = b.update(probes(100.0, range(1, 26)), now=130.0, threshold=0.999)
    (grown,), _ = b.update(probes(50.0, range(26, 300)), now=400.0, threshold=0.999)
    assert grown.id == first.id and grown.packets > first.packets
    assert grown.first_seen == first.first_seen == 100.0
