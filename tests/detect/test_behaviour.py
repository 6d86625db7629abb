"""Behaviour detectors on hand-built connection records: the edge cases real captures rarely
hold (a scanner slower than the 15-min tier, a day's expiry, a login after guessing,
suppression and escalation, learned normals, bounded state)."""

from __future__ import annotations

from netids.detect.behaviour import BehaviourConfig, BehaviourDetectors
from netids.detect.behaviour_base import record
from netids.detect.behaviour_brute import BruteConfig
from netids.detect.behaviour_scan import ScanConfig

MIN = 60.0


def probes(n: int, every: float, start: float = 0.0, **fields: object) -> list:
    """``n`` refused connections from 10.0.0.9 to new ports of 10.0.0.5, ``every`` s apart."""
    base = dict(orig_h="10.0.0.9", resp_h="10.0.0.5", conn_state="REJ", history="Sr")
    base.update(fields)
    return [record(ts=start + i * every, uid=f"P{i}", resp_p=1000 + i, **base)
            for i in range(n)]


def feed(d: BehaviourDetectors, records: list) -> list:
    """Records one at a time, as the tracker would write them; every alert that went out."""
    return [a for r in records for a in d.update([r], now=r.ts)]


def logins(n: int, every: float = 20.0, start: float = 0.0, resp_bytes: int = 2336) -> list:
    """``n`` short SSH sessions from 10.0.0.9 to 10.0.0.5:22, alike in size."""
    return [record(ts=start + i * every, uid=f"L{i}", orig_h="10.0.0.9", resp_h="10.0.0.5",
                   service="ssh", conn_state="SF", history="ShAdDaFf", duration=3.5,
                   orig_bytes=2581, resp_bytes=resp_bytes, orig_pkts=22, resp_pkts=15)
            for i in range(n)]


def test_a_scan_with_pauses_under_15_min_is_one_scanner() -> None:
    alerts = feed(BehaviourDetectors(), probes(30, every=14 * MIN))
    assert [(a.kind, a.count, a.source, a.targets) for a in alerts] == [
        ("vertical_scan", 25, "10.0.0.9", ("10.0.0.5",))]
    a = alerts[0]
    assert a.last - a.first == 24 * 14 * MIN
    assert a.uids == tuple(f"P{i}" for i in range(25))
    assert "10.0.0.9 failed to connect to 25 ports on 10.0.0.5 in 5 h 36 min" in a.why


def test_a_scan_slower_than_15_min_is_caught_by_the_24_hour_tier() -> None:
    records = probes(30, every=20 * MIN)  # never two failures within 15 min
    alerts = feed(BehaviourDetectors(), records)
    assert [(a.kind, a.count, a.severity) for a in alerts] == [("slow_scan", 25, "medium")]
    assert alerts[0].last == records[24].ts  # raised on the 25th failure, 8 h in
    assert alerts[0].uids == tuple(f"P{i}" for i in range(25))
    assert "over 8 h, never more than 1 within 15 min of each other" in alerts[0].why
    # without the slow tier, the same scanner goes unseen: the 15-min state forgets it
    no_slow = BehaviourConfig(scan=ScanConfig(slow_threshold=10**6))
    assert feed(BehaviourDetectors(no_slow), records) == []


def test_the_slow_tier_forgets_a_source_24_hours_after_its_first_failure() -> None:
    # one failure every 61 min: 24 in any 24 h, never 25
    assert feed(BehaviourDetectors(), probes(60, every=61 * MIN)) == []


def test_one_port_on_many_hosts_is_a_horizontal_scan_at_the_knock_knock_limit() -> None:
    records = [record(ts=i, uid=f"H{i}", orig_h="10.0.0.9", resp_h=f"10.0.1.{i}", resp_p=445)
               for i in range(1, 40)]
    alerts = feed(BehaviourDetectors(), records)
    assert [(a.kind, a.count) for a in alerts] == [("horizontal_scan", 20)]
    assert "20 hosts on tcp port 445" in alerts[0].why and "knock-knock" in alerts[0].why


def test_silence_from_multicast_broadcast_and_answered_sessions_is_no_scan() -> None:
    quiet = [record(ts=i, proto="udp", resp_h="224.0.0.251", resp_p=5353 + i) for i in range(40)]
    quiet += [record(ts=i, proto="udp", resp_h="10.0.0.255", resp_p=137 + i) for i in range(40)]
    quiet += [record(ts=i, resp_p=i, conn_state="SF", orig_bytes=10, resp_bytes=10)
              for i in range(40)]
    d = BehaviourDetectors()
    result = d.observe(quiet, now=40.0)
    assert result.alerts == [] and set(result.scores) == {0.0}


def test_in_progress_snapshots_are_not_counted() -> None:
    snapshots = [r.__class__(**{**_fields(r), "in_progress": True, "ended": ""})
                 for r in probes(40, every=1.0)]
    assert BehaviourDetectors().update(snapshots, now=40.0) == []


def test_suppression_one_alert_an_hour_unless_it_escalates() -> None:
    d = BehaviourDetectors()
    first = feed(d, probes(60, every=1.0))  # 25: alert; 50: suppressed (same severity, < x10)
    assert [a.count for a in first] == [25] and d.suppressor.suppressed == 1
    more = feed(d, probes(60, every=1.0, start=60.0, resp_h="10.0.0.6"))  # ~100: 4x the limit
    assert [a.severity for a in more] == ["high"] and 100 <= more[0].count <= 115
    assert feed(d, probes(10, every=1.0, start=200.0, resp_h="10.0.0.7")) == []
    # over an hour later (its 15-min state long forgotten) it starts afresh
    later = feed(d, probes(30, every=1.0, start=4000.0, resp_h="10.0.0.8"))
    assert [a.count for a in later] == [25]


def test_password_guessing_then_a_real_login_is_a_critical_alert() -> None:
    d = BehaviourDetectors()
    alerts = feed(d, logins(12))
    assert [(a.kind, a.severity, a.count, a.targets, a.service) for a in alerts] == [
        ("brute_force", "medium", 10, ("10.0.0.5:22",), "ssh")]
    assert alerts[0].why.startswith("10 SSH sessions from 10.0.0.9 to 10.0.0.5:22 in 3 min, "
                                    "each at most 4 s and 5 kB, 10 of them alike in size: "
                                    "password guessing")
    shell = record(ts=300.0, uid="WIN", orig_h="10.0.0.9", resp_h="10.0.0.5", service="ssh",
                   conn_state="SF", duration=600.0, orig_bytes=40_000, resp_bytes=900_000)
    (win,) = d.update([shell], now=300.0)
    assert (win.kind, win.severity, win.count) == ("login_after_guessing", "critical", 12)
    assert win.uids[-1] == "WIN" and win.first == 0.0 and win.last == 300.0
    assert d.update([shell], now=301.0) == []  # one success alert per guessing run


def test_a_login_after_guessing_is_alerted_while_the_session_is_still_open() -> None:
    d = BehaviourDetectors()
    feed(d, logins(12))
    fields = dict(ts=300.0, uid="SHELL", orig_h="10.0.0.9", resp_h="10.0.0.5", service="ssh",
                  conn_state="S1", history="ShAdD", orig_bytes=3000, resp_bytes=9000)
    snapshot = record(duration=60.0, in_progress=True, ended="", **fields)
    (win,) = d.update([snapshot], now=360.0)  # the tracker's first snapshot, a minute in
    assert (win.kind, win.uids[-1], win.last) == ("login_after_guessing", "SHELL", 300.0)
    final = record(duration=7200.0, ended="closed", **{**fields, "conn_state": "SF"})
    # the same login, not a second alert (its two hours make it a long connection too)
    assert [a.kind for a in d.update([final], now=7500.0)] == ["long_connection"]
    # a snapshot short enough to be one more attempt says nothing yet
    d2 = BehaviourDetectors()
    feed(d2, logins(12))
    early = record(duration=5.0, in_progress=True, ended="", **{**fields, "resp_bytes": 900})
    assert d2.update([early], now=305.0) == []


def test_sessions_unlike_each_other_are_a_person_not_a_tool() -> None:
    varied = [record(ts=i * 60.0, uid=f"V{i}", orig_h="10.0.0.9", resp_h="10.0.0.5",
                     service="ssh", conn_state="SF", duration=3.0, orig_bytes=500 + 300 * i,
                     resp_bytes=400 * (i + 1)) for i in range(15)]
    # (one a minute on the dot is a beacon's timing: only guessing is in question here)
    assert [a for a in feed(BehaviourDetectors(), varied) if a.kind != "beacon"] == []


def test_a_network_whose_normal_is_many_sessions_learns_a_higher_limit() -> None:
    automation = logins(15, every=60.0)  # an automation host: 15 sessions in 15 min, normal
    d = BehaviourDetectors()
    d.learn(automation)
    assert d.brute.threshold("ssh") == 31 and d.brute.threshold("ftp") == 10
    assert feed(d, logins(30, every=10.0, start=10_000.0)) == []
    (alert,) = feed(d, logins(31, every=10.0, start=20_000.0))
    assert alert.count == 31 and "normal here is 0-15 in 30 min" in alert.why
    assert feed(BehaviourDetectors(), logins(30, every=10.0))  # unlearned: alerts


def test_a_source_that_fails_often_in_normal_traffic_gets_its_own_limit() -> None:
    monitor = probes(30, every=10.0, orig_h="10.0.0.2")  # a monitoring host probing ports
    d = BehaviourDetectors()
    d.learn(monitor)
    assert d.scans.threshold("10.0.0.2") == 60 and d.scans.threshold("10.0.0.9") == 25
    assert feed(d, probes(50, every=1.0, start=5000.0, orig_h="10.0.0.2")) == []
    (alert,) = feed(d, probes(30, every=1.0, start=5000.0))
    assert "normal here is at most 0 from this host and 30 from any host" in alert.why


def test_state_stays_bounded_under_a_million_sources_worth_of_scanning() -> None:
    config = BehaviourConfig(scan=ScanConfig(max_scanners=64, max_slow=32),
                             brute=BruteConfig(max_keys=16))
    d = BehaviourDetectors(config)
    spoofed = [record(ts=i * 0.001, orig_h=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                      resp_p=i & 1023) for i in range(5000)]
    d.update(spoofed, now=5.0)
    assert len(d.scans.fast) == 64 and len(d.scans.slow) == 32
    assert d.scans.fast.evicted == 5000 - 64


def _fields(r: object) -> dict[str, object]:
    return {name: getattr(r, name) for name in r.__slots__}  # type: ignore[attr-defined]
