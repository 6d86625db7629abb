"""Allow-list rule matching (``netids.detect.rules``): CIDR v4 and v6, any, kind, port,
expiry, merged sources, and rule fields that do not parse."""

from __future__ import annotations

import pytest

from netids.detect.rules import Rule, RuleError, RuleSet


def test_a_source_subnet_covers_its_hosts_only() -> None:
    rules = RuleSet.of([Rule(src="10.77.0.0/24", id=1)])
    assert rules.match("10.77.0.66", "10.0.0.1", 80, "port scan", now=0) is not None
    assert rules.match("10.77.1.66", "10.0.0.1", 80, "port scan", now=0) is None
    assert rules.match("", "10.0.0.1", 80, "flood", now=0) is None  # merged sources


def test_ipv6_networks_and_hosts_match_and_never_cross_families() -> None:
    rules = RuleSet.of([Rule(dst="2001:db8::/32", id=1)])
    assert rules.match("10.0.0.1", "2001:db8:5::1", None, "unusual size", now=0) is not None
    assert rules.match("10.0.0.1", "2001:db9::1", None, "unusual size", now=0) is None
    assert rules.match("10.0.0.1", "10.0.0.2", None, "unusual size", now=0) is None
    host = RuleSet.of([Rule(src="fe80::1", id=2)])
    assert host.match("fe80::1", "", None, "x", now=0) is not None
    assert host.match("fe80::2", "", None, "x", now=0) is None


def test_any_covers_everything_including_non_ip_addresses() -> None:
    rules = RuleSet.of([Rule(src="any", id=1)])
    assert rules.match("02:00:00:00:00:01", "", None, "ARP spoofing", now=0) is not None


def test_kind_is_matched_without_case_and_port_exactly() -> None:
    rules = RuleSet.of([Rule(kind="Port Scan", dst_port=22, id=1)])
    assert rules.match("10.0.0.1", "10.0.0.2", 22, "port scan", now=0) is not None
    assert rules.match("10.0.0.1", "10.0.0.2", 23, "port scan", now=0) is None
    assert rules.match("10.0.0.1", "10.0.0.2", None, "port scan", now=0) is None
    assert rules.match("10.0.0.1", "10.0.0.2", 22, "flood", now=0) is None


def test_an_expired_rule_covers_nothing_and_the_next_one_is_tried() -> None:
    rules = RuleSet.of([Rule(kind="flood", expires=100.0, id=1), Rule(src="10.0.0.0/8", id=2)])
    assert rules.match("192.0.2.1", "", None, "flood", now=99.0).id == 1  # type: ignore[union-attr]
    assert rules.match("192.0.2.1", "", None, "flood", now=100.0) is None
    assert rules.match("10.1.1.1", "", None, "flood", now=100.0).id == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("fields", "message"), [
    ({"src": "10.0.0.300"}, "src '10.0.0.300' is not an address or CIDR"),
    ({"dst": "<script>"}, "dst '<script>' is not an address or CIDR"),
    ({"dst_port": 70000}, "port 70000 is not between 0 and 65535")])
def test_bad_fields_are_one_plain_line(fields: dict, message: str) -> None:
    with pytest.raises(RuleError) as err:
        Rule(**fields)
    assert str(err.value) == message


def test_matching_many_events_against_many_rules_is_fast() -> None:
    """Networks are parsed once: 200 rules x 20,000 events well under a second here."""
    import time

    rules = RuleSet.of([Rule(src=f"10.{i}.0.0/16", kind="flood", id=i) for i in range(200)])
    start = time.perf_counter()
    hits = sum(rules.match(f"10.{i % 250}.1.{i % 200}", "192.0.2.1", 80, "flood", now=0)
               is not None for i in range(20_000))
    assert hits == 16_000 and time.perf_counter() - start < 5.0
