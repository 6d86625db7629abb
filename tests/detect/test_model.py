"""The network and the detector around it: shapes, invariants, batch independence, words."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from netids.detect.calibration import RANGE_WEIGHT, SurpriseCombiner
from netids.detect.counted import (
    SERVICE_SURPRISE_CAP,
    answering,
    conversation_inputs,
    service_inputs,
)
from netids.detect.detector import Detector, Scores, ThresholdPolicy
from netids.detect.model import PRIOR_WEIGHT, ModelConfig, PacketAutoencoder
from netids.training.data import read_capture
from netids.training.train import TrainConfig, train

CAPTURE = "benign/iotlab__lockly-hub-01.pcap"  # in the shared data


@pytest.fixture(scope="module")
def trained(shared_data):
    packets, feats = read_capture(shared_data / CAPTURE)
    cut = 20000
    report = train([(packets.take(slice(0, cut)), feats[:cut])],
                   TrainConfig(epochs=2, max_train_windows=1000, threads=2))
    return Detector(report.checkpoint, threads=2), packets.take(slice(cut, None)), feats[cut:]


def test_reconstruction_has_one_error_per_input_and_packet():
    config = ModelConfig(n_numeric=10, vocab_sizes=(8, 513, 4), window=16)
    model = PacketAutoencoder(config).eval()
    numeric = torch.randn(3, 16, 10)  # [B, T, n_numeric]
    codes = torch.zeros(3, 16, 3, dtype=torch.long)  # [B, T, n_fields]
    errors = model.errors(numeric, codes)
    assert errors.shape == (3, 16, 13)
    assert bool((errors >= 0).all())


def test_categorical_errors_are_inverse_probabilities_under_the_network_mixed_with_the_prior():
    torch.manual_seed(0)  # the inputs below are random: the same ones whatever ran before
    config = ModelConfig(n_numeric=10, vocab_sizes=(8, 513, 4), window=16)
    model = PacketAutoencoder(config).eval()
    seen = np.array([[0, 0, 0]] * 99 + [[1, 2, 3]])  # the training codes: 99% zeros
    model.set_code_prior(seen)
    numeric, codes = torch.randn(2, 16, 10), torch.randint(0, 4, (2, 16, 3))
    losses, errors = model.losses(numeric, codes), model.errors(numeric, codes)
    torch.testing.assert_close(errors[..., :10], losses[..., :10])
    share = np.zeros((3, 513))
    for f in range(3):
        values, counts = np.unique(seen[:, f], return_counts=True)
        share[f, values] = counts / counts.sum()
    prior = torch.from_numpy(share[np.arange(3), codes.numpy()]).float()  # [2, 16, 3]
    expected = 1 / ((1 - PRIOR_WEIGHT) * torch.exp(-losses[..., 10:]) + PRIOR_WEIGHT * prior)
    torch.testing.assert_close(errors[..., 10:], expected)
    assert bool((errors[..., 10:] >= 1).all())  # p <= 1


def test_a_value_seen_in_training_costs_at_most_its_rarity_an_unseen_one_its_full_surprise():
    config = ModelConfig(n_numeric=2, vocab_sizes=(4,), window=4, latent=2)
    model = PacketAutoencoder(config).eval()
    model.set_code_prior(np.array([[0]] * 99 + [[1]]))  # code 1: 1% of training, code 2: never
    with torch.no_grad():
        model.out.bias[2] = 60.0  # the network is all but certain every packet has code 0
    numeric = torch.zeros(1, 4, 2)
    codes = torch.tensor([[[0], [1], [2], [0]]])
    nats = torch.log(model.errors(numeric, codes)[0, :, 2])
    assert nats[0] < 0.01  # the expected value
    assert abs(nats[1] - (5.0 + np.log(100))) < 0.1  # seen: -log(PRIOR_WEIGHT * 1%)
    assert nats[2] > 50  # never seen: the network's own cross-entropy


def test_a_field_with_a_share_floor_counts_no_value_rarer_than_the_floor():
    """A port or protocol the training network never used costs what a rare one does; a field
    without a floor (an impossible address class) keeps the network's full surprise."""
    config = ModelConfig(n_numeric=2, vocab_sizes=(4, 4), window=4, latent=2,
                         share_floor=(1e-3, 0.0))
    model = PacketAutoencoder(config).eval()
    model.set_code_prior(np.array([[0, 0]] * 9999 + [[1, 1]]))  # code 1: 0.01%, code 2: never
    with torch.no_grad():
        model.out.bias[2] = 60.0  # the network is all but certain of code 0 in both fields
        model.out.bias[6] = 60.0
    codes = torch.tensor([[[0, 0], [1, 1], [2, 2], [0, 0]]])
    nats = torch.log(model.errors(torch.zeros(1, 4, 2), codes)[0, :, 2:])
    floor = 5.0 - math.log(1e-3)  # -log(PRIOR_WEIGHT * floor)
    assert abs(nats[1, 0] - floor) < 0.1 and abs(nats[2, 0] - floor) < 0.1
    assert abs(nats[1, 1] - (5.0 - math.log(1e-4))) < 0.1  # seen once in 10,000: its rarity
    assert nats[2, 1] > 50  # never seen, no floor: the network's own cross-entropy


def test_fields_whose_logits_sit_far_below_another_fields_keep_exact_errors():
    config = ModelConfig(n_numeric=3, vocab_sizes=(4, 6, 5), window=4, latent=2)
    model = PacketAutoencoder(config).eval()
    model.set_code_prior(np.array([[0, 0, 0]] * 9 + [[1, 1, 1]]))  # codes >= 2 never seen
    with torch.no_grad():
        model.out.bias[3:7] += 120.0  # field 0 far above: the others' exp underflows float32
        model.out.bias[7 + 5] -= 40.0  # and one code of field 1 far below its own field
    numeric, codes = torch.randn(2, 4, 3), torch.randint(0, 5, (2, 4, 3))
    codes[0, 0] = torch.tensor([0, 5, 4])
    with torch.no_grad():
        losses, errors = model.losses(numeric, codes), model.errors(numeric, codes)
    prior = model.code_log_prior[codes + model.offsets]
    mixed = -torch.logaddexp(math.log1p(-PRIOR_WEIGHT) - losses[..., 3:],
                             math.log(PRIOR_WEIGHT) + prior)
    torch.testing.assert_close(errors[..., 3:], torch.exp(mixed.clamp(max=80.0)))
    assert math.log(errors[0, 0, 4]) > 40  # a code never seen, 40 nats below its field


def test_config_rejects_a_bottleneck_as_wide_as_the_input():
    with pytest.raises(AssertionError):
        PacketAutoencoder(ModelConfig(n_numeric=4, vocab_sizes=(8,), latent=5))


def test_padding_does_not_change_the_real_packets():
    model = PacketAutoencoder(ModelConfig(n_numeric=6, vocab_sizes=(8,), window=8, latent=4)).eval()
    numeric, codes = torch.randn(1, 8, 6), torch.zeros(1, 8, 1, dtype=torch.long)
    pad = torch.tensor([[False] * 5 + [True] * 3])
    with torch.inference_mode():
        full = model.errors(numeric, codes, pad)[0, :5]
        other = numeric.clone()
        other[0, 5:] = 100.0  # different padding content
        again = model.errors(other, codes, pad)[0, :5]
    torch.testing.assert_close(full, again)


def test_scores_are_calibrated_floats_between_0_and_1(trained):
    detector, packets, feats = trained
    scores = detector.score_batch(packets.take(slice(0, 5000)), feats[:5000])
    assert scores.scores.dtype == np.float64 and scores.scores.shape == (5000,)
    np.testing.assert_allclose(scores.scores, -np.expm1(-scores.nines * np.log(10)))
    assert scores.scores.min() >= 0.0 and scores.scores.max() <= 1.0
    assert scores.errors.shape == (5000, len(detector.input_names))
    assert 0.5 < detector.threshold < 1.0


def test_scores_do_not_depend_on_how_the_stream_is_cut(trained):
    detector, packets, feats = trained
    n, w = 4000, detector.window
    whole = detector.score_batch(packets.take(slice(0, n)), feats[:n]).scores
    cuts = [0, 1024, 2048, 3072, n]  # batch edges on window edges: identical scores
    parts = [detector.score_batch(packets.take(slice(a, b)), feats[a:b]).scores
             for a, b in zip(cuts, cuts[1:], strict=False)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    # a partial last window is padded: its packets score as if scored alone
    tail = detector.score_batch(packets.take(slice(n - 5, n)), feats[n - 5:n]).scores
    alone = detector.score_batch(packets.take(slice(n - 5 - w, n)), feats[n - 5 - w:n]).scores
    np.testing.assert_allclose(alone[w:], tail, rtol=1e-5, atol=1e-6)


def test_empty_batch_scores_to_nothing(trained):
    detector, packets, feats = trained
    scores = detector.score_batch(packets.take(slice(0, 0)), feats[:0])
    assert len(scores) == 0


def test_explanations_speak_plain_words(trained):
    detector, packets, feats = trained
    scores = detector.score_batch(packets.take(slice(0, 2000)), feats[:2000])
    rows = np.argsort(-scores.scores)[:5]
    kinds, texts = detector.explain(packets.take(slice(0, 2000)), feats[:2000], scores, rows)
    assert len(kinds) == len(texts) == 5
    assert all(k and len(k) < 30 for k in kinds)
    assert all("normal is" in t or "rare here" in t or "maps" in t or "decoder" in t
               for t in texts), texts


def test_a_rate_is_told_at_its_busiest_window_whichever_window_deviates_most(trained):
    detector, packets, feats = trained
    one, row = packets.take(slice(0, 1)), feats[:1].copy()
    names = list(detector.feature_names)
    for window, rate in (("1s", 3000.0), ("10s", 900.0), ("100s", 90.0)):
        row[0, names.index(f"src_rate_{window}")] = rate
    errors = np.zeros((1, len(detector.input_names)), np.float32)
    errors[0, detector.input_names.index("src_rate_100s")] = 50.0  # the most surprising
    scores = Scores(np.ones(1), np.ones(1, np.float32), errors, np.ones(1))
    _, texts = detector.explain(one, row, scores, np.array([0]))
    assert texts[0].startswith("3000 packets/s from this source"), texts


@pytest.mark.parametrize("sent, new_ports, new_hosts, kind", [
    (100.0, 60.0, 1.0, "port scan"),  # most of what it sends probes a new port
    (3000.0, 30.0, 1.0, "flood"),  # a SYN flood just after a scan: its new-port rate decays
    (25.0, 20.0, 20.0, "host sweep"),  # one new service per new host: a ping or ARP sweep
])
def test_a_scan_is_named_by_what_the_source_does_now(trained, sent, new_ports, new_hosts, kind):
    detector, packets, feats = trained
    one, row = packets.take(slice(0, 1)), feats[:1].copy()
    names = list(detector.feature_names)
    for window in ("1s", "10s"):
        row[0, names.index(f"src_rate_{window}")] = sent
        row[0, names.index(f"src_syn_rate_{window}")] = sent
        row[0, names.index(f"src_new_port_rate_{window}")] = new_ports
        row[0, names.index(f"src_new_dst_rate_{window}")] = new_hosts
    errors = np.zeros((1, len(detector.input_names)), np.float32)
    errors[0, detector.input_names.index("src_new_port_rate_10s")] = 50.0  # the most surprising
    errors[0, detector.input_names.index("src_syn_rate_1s")] = 40.0
    scores = Scores(np.ones(1), np.ones(1, np.float32), errors, np.ones(1))
    kinds, _ = detector.explain(one, row, scores, np.array([0]))
    assert kinds == [kind]


@pytest.mark.parametrize("flags, kind", [
    (0x18, "busy connection"),  # PSH ACK: a transfer answering its peer
    (0x10, "busy connection"),  # a bare ACK of that transfer
    (0x02, "flood"),  # SYNs at that rate on one conversation
])
def test_one_busy_conversation_is_a_flood_only_when_it_does_not_answer(trained, flags, kind):
    detector, packets, feats = trained
    tcp = np.flatnonzero(packets.proto[:2000] == 6)[:1]
    one, row = packets.take(tcp), feats[tcp].copy()
    one.tcp_flags[:] = flags
    names = list(detector.feature_names)
    for window in ("1s", "10s"):
        row[0, names.index(f"sock_rate_{window}")] = 2000.0
        row[0, names.index(f"pair_rate_{window}")] = 2000.0
    errors = np.zeros((1, len(detector.input_names)), np.float32)
    errors[0, detector.input_names.index("sock_rate_1s")] = 50.0  # the most surprising
    errors[0, detector.input_names.index("pair_rate_10s")] = 40.0
    scores = Scores(np.ones(1), np.ones(1, np.float32), errors, np.ones(1))
    kinds, texts = detector.explain(one, row, scores, np.array([0]))
    assert kinds == [kind]
    assert texts[0].startswith("2000 packets/s on this connection"), texts


@pytest.mark.parametrize("new_macs, spoofed", [(1.4, False), (6.0, False), (40.0, True)])
def test_a_few_new_macs_a_second_are_a_start_not_a_spoofed_flood(trained, new_macs, spoofed):
    detector, packets, feats = trained
    one, row = packets.take(slice(0, 1)), feats[:1].copy()
    names = list(detector.feature_names)
    for window in ("1s", "10s"):
        row[0, names.index(f"link_new_mac_rate_{window}")] = new_macs
    errors = np.zeros((1, len(detector.input_names)), np.float32)
    errors[0, detector.input_names.index("link_new_mac_rate_1s")] = 50.0  # the most surprising
    scores = Scores(np.ones(1), np.ones(1, np.float32), errors, np.ones(1))
    kinds, _ = detector.explain(one, row, scores, np.array([0]))
    assert (kinds == ["spoofed flood"]) is spoofed, kinds


def test_a_common_value_the_network_did_not_expect_is_not_called_rare(trained):
    detector, packets, feats = trained
    tcp = np.flatnonzero(packets.proto[:2000] == 6)[:1]  # TCP: most of the training traffic
    one, row = packets.take(tcp), feats[tcp]
    errors = np.zeros((1, len(detector.input_names)), np.float32)
    errors[0, detector.input_names.index("protocol")] = 50.0  # the most surprising input
    errors[0, detector.input_names.index("length")] = 10.0
    scores = Scores(np.ones(1), np.ones(1, np.float32), errors, np.ones(1))
    kinds, texts = detector.explain(one, row, scores, np.array([0]))
    assert kinds != ["unusual protocol"], kinds
    assert texts[0].startswith("packet length"), texts  # the reason first
    assert "protocol" not in texts[0] and "rare" not in texts[0], texts


def test_threshold_policy_decides_separately():
    policy = ThresholdPolicy(0.99)
    assert policy.classify(np.array([0.1, 0.99, 0.999])).tolist() == [False, True, True]


def test_whole_windows_score_the_same_to_the_bit_however_the_batch_ends(trained):
    detector, packets, feats = trained
    w = detector.window
    whole, _ = detector.input_errors(packets.take(slice(0, 100 * w)), feats[:100 * w])
    ragged, _ = detector.input_errors(packets.take(slice(0, 100 * w + 5)), feats[:100 * w + 5])
    assert np.array_equal(ragged[:100 * w], whole)  # a padded last window changes no other


def test_scoring_runs_on_the_detectors_threads_and_gives_the_callers_back(trained, monkeypatch):
    detector, packets, feats = trained
    seen = []
    surprise = detector.checkpoint.surprise
    transform = surprise.transform

    def spy(errors):
        seen.append(torch.get_num_threads())
        return transform(errors)

    monkeypatch.setattr(surprise, "transform", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        detector.score_batch(packets.take(slice(0, 100)), feats[:100])
        assert seen == [detector.threads] == [2]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_conversations_rates_are_no_evidence_on_packets_answering_their_peer(trained):
    """A download at a speed training never saw: its pair, socket, source and destination
    rates, and its destination's rate of replies nobody asked for (a host under a reflection
    flood), count neither as surprise nor as distance past the range on TCP packets that
    acknowledge their peer; on the others (SYNs, UDP) they still do."""
    detector, packets, feats = trained
    sub, inside = packets.take(slice(0, 512)), feats[:512]
    ans = answering(sub.tcp_flags)
    assert ans.sum() > 50 and (~ans).sum() > 50
    beyond = inside.copy()
    for name in ("pair_rate_1s", "sock_rate_1s", "src_rate_1s", "dst_rate_10s",
                 "dst_unsolicited_rate_1s"):
        beyond[:, detector.feature_names.index(name)] = 1e6
    _, excess_inside = detector.input_errors(sub, inside)
    _, excess = detector.input_errors(sub, beyond)
    np.testing.assert_allclose(excess[ans], excess_inside[ans], rtol=1e-5)
    assert (excess[~ans] > excess_inside[~ans] + 1.0).all()
    scores = detector.score_batch(sub, beyond)
    combiner, conversation = detector.checkpoint.combiner, conversation_inputs(detector.input_names)
    # the surprises told (and explained) are those that counted: typical where they do not
    np.testing.assert_array_equal(scores.errors[np.ix_(ans, conversation)],
                                  np.broadcast_to(combiner.mean[conversation],
                                                  (ans.sum(), len(conversation))))
    assert (scores.errors[np.ix_(~ans, conversation)] != combiner.mean[conversation]).all()
    np.testing.assert_allclose(scores.raw, combiner.combine(scores.errors, excess), rtol=1e-4)
    errors, _ = detector.input_errors(sub, beyond)
    counted = combiner.combine(detector.checkpoint.surprise.transform(errors), excess)  # before
    assert (counted[ans] > scores.raw[ans]).mean() > 0.9


def test_the_distance_past_the_training_range_adds_to_the_raw_score(trained):
    detector, packets, feats = trained
    sub, inside = packets.take(slice(0, 64)), feats[:64]
    beyond = inside.copy()
    beyond[:, detector.feature_names.index("mac_new_ip_rate_1s")] = 1000.0  # never in training
    _, excess_inside = detector.input_errors(sub, inside)
    _, excess = detector.input_errors(sub, beyond)
    assert (excess > excess_inside + 1.0).all()  # more than a scaled unit further out
    far = detector.score_batch(sub, beyond)
    combiner = detector.checkpoint.combiner
    assert combiner.range_weight == RANGE_WEIGHT
    surprise_only = SurpriseCombiner(combiner.mean, combiner.precision).combine(far.errors)
    np.testing.assert_allclose(far.raw - surprise_only, (RANGE_WEIGHT * excess) ** 2, rtol=1e-4)
    assert (far.scores >= detector.score_batch(sub, inside).scores).all()
    assert (far.scores >= detector.threshold).all()


def test_a_service_never_seen_in_training_is_weak_evidence_alone(trained, monkeypatch):
    """A port or protocol the training network never used counts no more than one packet in
    a thousand on its input: alone it stays under the threshold, while beside another sign
    (a packet length far from normal) it is flagged. Other fields keep their full surprise."""
    detector, packets, feats = trained
    sub, inside = packets.take(slice(0, 256)), feats[:256]
    surprise = detector.checkpoint.surprise
    transform = surprise.transform
    services = service_inputs(detector.input_names)
    assert [detector.input_names[j] for j in services] == ["protocol", "sport_class",
                                                          "dport_class"]
    icmp_type = detector.input_names.index("icmp_type")

    def typical_but(columns, value):
        def spy(errors):
            s = np.zeros_like(transform(errors))
            s[:] = detector.checkpoint.combiner.mean
            s[:, columns] = value
            return s
        return spy

    monkeypatch.setattr(surprise, "transform", typical_but([services[2]], 40.0))
    alone = detector.score_batch(sub, inside)
    assert (alone.errors[:, services[2]] == np.float32(SERVICE_SURPRISE_CAP)).all()
    share = (alone.scores >= detector.threshold).mean()
    monkeypatch.setattr(surprise, "transform", typical_but([services[2], 0], 40.0))
    beside = detector.score_batch(sub, inside)
    assert (beside.scores >= detector.threshold).mean() > 0.9 > 0.1 > share
    monkeypatch.setattr(surprise, "transform", typical_but([icmp_type], 40.0))
    assert (detector.score_batch(sub, inside).errors[:, icmp_type] == 40.0).all()


def test_systems_that_start_from_another_ttl_score_as_ours(trained):
    """A Modbus network's controllers start their TTL at 32, ours at 64: the model reads how
    many routers a packet crossed, not which TTL its system starts from, so the same traffic
    scores the same from either. A packet from farther away still scores differently."""
    detector, packets, feats = trained
    assert "ttl_hops" in detector.packet_numeric
    sub, inside = packets.take(slice(0, 512)), feats[:512]
    on_lan = (sub.ttl > 32) & (sub.ttl <= 64)
    assert on_lan.sum() > 50
    from_32 = replace(sub, ttl=np.where(on_lan, sub.ttl - 32, sub.ttl).astype(sub.ttl.dtype))
    farther = replace(sub, ttl=np.where(on_lan, sub.ttl - 12, sub.ttl).astype(sub.ttl.dtype))
    ours = detector.score_batch(sub, inside).raw
    assert np.array_equal(detector.score_batch(from_32, inside).raw, ours)
    assert not np.array_equal(detector.score_batch(farther, inside).raw, ours)
