"""Evaluation: metrics, baselines and the evaluate command on a real mixed capture."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from netids.cli import main
from netids.commands import CommandError
from netids.commands import evaluate as evaluate_command
from netids.config import PROJECT_ROOT, Settings
from netids.lab.mixing import AttackSource, mix
from netids.training import evaluate as ev
from netids.training.checkpoint import save
from netids.training.data import read_capture
from netids.training.train import TrainConfig, train

NORMAL = "benign/iotlab__lockly-hub-01.pcap"  # in the shared data
ATTACKS = ["attack/evilfingers__TCP_SYN_SCAN.pcap", "attack/sanders__http_dvwa_sqlinjection.pcapng"]


def test_metrics_of_a_perfect_and_a_useless_detector():
    labels = np.array([0] * 1000 + [1] * 10)
    perfect = np.concatenate([np.linspace(0, 1, 1000), np.full(10, 2.0)])
    roc, pr, det = ev.metrics(perfect, labels)
    assert (roc, pr) == (1.0, 1.0) and det == (1.0, 1.0)
    rng = np.random.default_rng(0)
    roc, _, det = ev.metrics(rng.random(1010), labels)
    assert 0.3 < roc < 0.7 and det[0] <= 0.2


def test_seed_scaling_erases_what_the_numbers_mean(shared_data):
    """The seed's flaw, rebuilt on purpose: every packet min-max scaled by its own values."""
    packets, _ = read_capture(shared_data / "benign" / "sanders__dns.pcap")
    x = ev.seed_inputs(packets)
    assert x.shape == (len(packets), 8)
    assert np.allclose(x.min(axis=1), 0) and np.allclose(x.max(axis=1), 1)


def test_table_has_overall_then_kinds_for_every_method():
    labels = np.array([0, 0, 0, 1, 1, 1])
    kinds = ["", "", "", "port_scan", "web_attack", "port_scan"]
    scores = {"a": np.array([0.1, 0.2, 0.3, 0.9, 0.25, 0.8]), "b": np.arange(6.0)}
    rows = ev.table(scores, labels, kinds)
    assert [(r.kind, r.method) for r in rows] == [
        ("all", "a"), ("all", "b"), ("header-visible", "a"), ("header-visible", "b"),
        ("port_scan", "a"), ("port_scan", "b"), ("web_attack", "a"), ("web_attack", "b")]
    assert rows[4].packets == 2 and rows[4].roc_auc == 1.0
    assert rows[2].packets == 2  # header-visible: the scans, not the web attack
    text = ev.format_table(rows)
    assert "web_attack (payload/behaviour)" in text and "| port_scan | 2 | a |" in text


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("eval")
    normal, attacks = shared_data / NORMAL, [shared_data / a for a in ATTACKS]
    packets, feats = read_capture(normal)
    cut = int(0.6 * len(packets))
    report = train([(packets.take(slice(0, cut)), feats[:cut])],
                   TrainConfig(epochs=3, max_train_windows=2000, threads=2),
                   sources=[str(normal)])
    report.checkpoint.metadata["part"] = [0.0, 0.6]
    model = save(report.checkpoint, tmp / "m.pt")
    mixed, labels = tmp / "mix.pcap", tmp / "mix.labels.csv"
    mix([normal], [AttackSource(a, max_packets=400) for a in attacks], mixed, labels,
        normal_part=(0.6, 1.0), seed=2)
    return model, mixed, labels


def _run(argv: list[str], model: Path) -> int:
    parser = argparse.ArgumentParser()
    evaluate_command.add_parser(parser.add_subparsers(dest="command"), "evaluate")
    return evaluate_command.run(parser.parse_args(["evaluate", *argv]),
                                Settings(model_path=model))


def test_evaluate_command_prints_model_and_baselines(setup, capsys, tmp_path):
    model, mixed, labels = setup
    md = tmp_path / "table.md"
    assert _run([str(mixed), "--labels", str(labels), "--markdown", str(md)], model) == 0
    out = capsys.readouterr().out
    for method in ("netids transformer", "isolation forest", "seed transformer"):
        assert f"| all | 435 | {method} |" in out  # 400 scan packets + 35 web attack
    assert "| port_scan | 400 | netids transformer |" in out
    assert "web_attack (payload/behaviour)" in out
    rows = [line.split("|") for line in md.read_text().splitlines()[2:]]
    roc = {(r[1].strip(), r[3].strip()): float(r[4]) for r in rows}
    assert roc[("port_scan", "netids transformer")] > 0.95  # a SYN scan is plain in headers


def test_evaluate_command_errors_are_one_line(setup, tmp_path):
    model, mixed, labels = setup
    with pytest.raises(CommandError, match="labels not found"):
        _run([str(mixed), "--labels", str(tmp_path / "none.csv")], model)
    short = tmp_path / "short.csv"
    short.write_text("index,label,attack_kind\n0,0,\n")
    with pytest.raises(CommandError, match="does not label every packet"):
        _run([str(mixed), "--labels", str(short), "--no-baselines"], model)
    with pytest.raises(CommandError, match="not found"):
        _run([str(mixed), "--labels", str(labels)], tmp_path / "missing.pt")


def test_the_shipped_model_is_evaluated_even_where_its_training_captures_are_not(
        trained_model, tmp_path, capsys):
    # the README's evaluate command on a fresh clone: the baselines' training captures (the
    # model's own, named in its metadata) are not there; the model's figures still print
    sample = PROJECT_ROOT / "netids" / "samples"
    args = ["evaluate", str(sample / "lab_sample.pcap"), "--labels",
            str(sample / "lab_sample.labels.csv"), "--model", str(trained_model)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "| all |" in out and "netids transformer" in out
    assert "isolation forest" not in out  # left out, and said so once
    notes = [line for line in err.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("baselines left out:"), err
    assert "pass --train" in notes[0]


def test_training_names_its_captures_relative_to_the_project():
    from netids.commands.train import _project_path

    inside = PROJECT_ROOT / "build" / "normal" / "a.pcap"
    assert _project_path(str(inside)) == "build/normal/a.pcap"
    assert _project_path("/elsewhere/b.pcap") == "/elsewhere/b.pcap"


def test_evaluate_adapt_gives_the_false_alarms_with_and_without_adaptation(setup, capsys):
    model, mixed, labels = setup
    assert _run([str(mixed), "--labels", str(labels), "--no-baselines"], model) == 0
    fixed_only = capsys.readouterr().out
    assert "| netids transformer |" in fixed_only and "adapted" not in fixed_only
    assert _run([str(mixed), "--labels", str(labels), "--no-baselines", "--adapt"], model) == 0
    out = capsys.readouterr().out
    assert out.startswith(fixed_only.rsplit("\n", 2)[0])  # the same, and one more row
    rows = {r[1].strip(): r for r in (line.split("|") for line in out.splitlines())
            if len(r) > 8 and r[1].strip().startswith("netids transformer")}
    assert set(rows) == {"netids transformer", "netids transformer, adapted"}
    fixed, adapted = rows["netids transformer"], rows["netids transformer, adapted"]
    assert fixed[3] == adapted[3]  # the same normal packets
    # the factor is never below 1: adapted, it never flags more, nor makes more events
    assert int(adapted[4]) <= int(fixed[4]) and int(adapted[6]) <= int(fixed[6])
