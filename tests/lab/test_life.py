"""A varied lab run's plan: who joins, leaves and pauses, how busy, and the background job."""

from __future__ import annotations

import pytest

from netids.lab.life import LOADS, PHASE, ClientLife, plan_life
from netids.lab.scenario import CLIENTS, HOSTS


def test_a_seed_gives_one_plan_and_seeds_differ() -> None:
    plans = [plan_life(seed, 240.0, CLIENTS, varied=True) for seed in range(20)]
    assert plans[3] == plan_life(3, 240.0, CLIENTS, varied=True)
    assert len({p.describe() for p in plans}) == 20


@pytest.mark.parametrize("seed", range(60))
def test_a_varied_plan_keeps_its_hosts_within_the_run(seed: int) -> None:
    duration = 300.0
    life = plan_life(seed, duration, CLIENTS, varied=True)
    joiners = [n for n, c in life.clients.items() if c.join > 0]
    leavers = [n for n, c in life.clients.items() if c.leave < duration]
    assert len(joiners) == len(leavers) == 1 and joiners != leavers
    assert 0.15 * duration <= life.clients[joiners[0]].join <= 0.4 * duration
    assert 0.6 * duration <= life.clients[leavers[0]].leave <= 0.85 * duration
    for client in life.clients.values():
        ends = [client.join] + [t for spell in client.pauses for t in spell]
        assert ends == sorted(ends) and ends[-1] <= min(client.leave, duration)
        assert all(LOADS[0] <= load <= LOADS[1] for load in client.loads)
        assert len(client.loads) == int(duration // PHASE) + 1
    job = life.background
    assert job is not None and job.host in HOSTS and job.host not in job.targets


def test_a_client_waits_for_its_join_and_its_pauses_and_stops_at_leave() -> None:
    client = ClientLife(join=10.0, leave=100.0, pauses=((30.0, 45.0),), loads=(0.5, 2.0))
    assert client.wait(0.0) == 10.0
    assert client.wait(20.0) == 0.0
    assert client.wait(40.0) == 5.0
    assert client.wait(100.0) is None
    assert client.active_for(20.0) == 10.0  # until the pause
    assert client.active_for(50.0) == 50.0  # until it leaves
    assert (client.load(59.0), client.load(61.0)) == (0.5, 2.0)


def test_a_steady_plan_keeps_every_client_busy_at_one_load() -> None:
    life = plan_life(5, 300.0, CLIENTS, varied=False)
    assert life.background is None
    assert all(c.wait(t) == 0.0 and c.load(t) == 1.0
               for c in life.clients.values() for t in (0.0, 150.0, 299.0))
    assert life.describe() == "steady: every client from start to end"
