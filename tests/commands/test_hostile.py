"""Every command and option given hostile values, through the real ``python app.py``: one
plain line on stderr, exit status 2, no traceback, nothing created or overwritten on the way.

Exit status 2 is every refusal the commands report (a usage error argparse finds, or a value
a command finds unusable: a missing file, a database URL of another kind, a full disk), as
:mod:`netids.cli` has always returned for :class:`~netids.commands.CommandError`.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT
from netids.store.engine import open_database
from tests.forked_app import Run, run_forked
from tests.support import clean_env, model_for_tests, small_pcap

APP = str(PROJECT_ROOT / "app.py")
SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # {NAME} is replaced by the path of a file made below
    says: str  # a piece of the one line
    env: tuple[tuple[str, str], ...] = ()


LABELS = {  # labels CSVs that are broken, and the line each error names
    "labels_bad_index": ("index,label,attack_kind\n0,0,\nx,0,\n", "line 3: index 'x'"),
    "labels_bad_label": ("index,label,attack_kind\n0,0,\n1,zz,\n", "line 3: label 'zz'"),
    "labels_no_columns": ("foo,bar\n1,2\n", "line 1: no index or label column"),
    "labels_negative": ("index,label,attack_kind\n-5,0,\n", "line 2: index '-5'"),
    "labels_huge_index": ("index,label,attack_kind\n0,0,\n99999999999,0,\n",
                          "line 3: index 99999999999, but the file has 2 rows"),
    "labels_twice": ("index,label,attack_kind\n0,0,\n1,0,\n1,1,x\n", "line 4: index 1 is "
                     "labelled twice"),
    "labels_nul": ("index,label,attack_kind\n0,\x00,\n", "line 2: label"),
}

CASES = [
    # the app itself (each refused before anything is served)
    Case("app-port-huge", ("--port", "99999"), "from 1 to 65535"),
    Case("app-port-negative", ("--port", "-1"), "from 1 to 65535"),
    Case("app-port-text", ("--port", "http"), "from 1 to 65535"),
    Case("app-db-mysql", ("--db", "mysql://bob:secret@db/x"),
         "unsupported database URL mysql://bob:***@db/x: netids stores events in SQLite"),
    Case("app-model-missing", ("--model", "{DIR}/none.pt"), "no such file"),
    Case("app-models-dir-file", ("--models-dir", "{PNG}"), "not a folder"),
    Case("app-unknown-option", ("--natve",), "unrecognized arguments: --natve"),
    Case("app-unknown-command", ("frobnicate",), "invalid choice"),
    Case("app-host-unknown", ("--host", "no.such.host.invalid"), "--host no.such.host.invalid: "
         "Name or service not known"),
    Case("app-port-taken", ("--port", "{TAKEN}"), "cannot serve on 127.0.0.1 port {TAKEN}: "
         "Address already in use"),
    Case("app-env-number", ("--port", "18999"), "NETIDS_* environment variable holds a bad value",
         env=(("NETIDS_SESSION_IDLE_SECONDS", "soon"),)),
    # score
    Case("score-missing", ("score", "{DIR}/none.pcap", "--out", "{OUT}"), "cannot open"),
    Case("score-directory", ("score", "{DIR}", "--out", "{OUT}"), "Is a directory"),
    Case("score-empty", ("score", "{EMPTY}", "--out", "{OUT}"), "the file is empty"),
    Case("score-png", ("score", "{PNG}", "--out", "{OUT}"), "not a pcap or pcapng file"),
    Case("score-gzip", ("score", "{GZ}", "--out", "{OUT}"), "not a pcap or pcapng file"),
    Case("score-out-full-disk", ("score", "{PCAP}", "--out", "/dev/full", "--workers", "0"),
         "/dev/full: cannot write (No space left on device)"),
    Case("score-out-directory", ("score", "{PCAP}", "--out", "{DIR}"), "Is a directory"),
    Case("score-out-read-only", ("score", "{PCAP}", "--out", "/proc/netids-scores.csv"),
         "cannot write"),
    Case("score-out-is-capture", ("score", "{PCAP}", "--out", "{PCAP}"), "the capture itself"),
    Case("score-db-mysql", ("score", "{PCAP}", "--out", "{OUT}", "--db", "mysql://x/y"),
         "unsupported database URL mysql://x/y: netids stores events in SQLite"),
    Case("score-db-no-driver", ("score", "{PCAP}", "--out", "{OUT}", "--db",
                                "postgresql+psycopg2://u:pw@127.0.0.1/x"),
         "No module named 'psycopg2'"),
    Case("score-db-bad-port", ("score", "{PCAP}", "--out", "{OUT}", "--db",
                               "postgresql+psycopg://u:pw@h:port/x"), "unusable database URL"),
    Case("score-db-unopenable", ("score", "{PCAP}", "--out", "{OUT}", "--db",
                                 "sqlite:////proc/netids/x.db"), "cannot open the database"),
    Case("score-db-empty", ("score", "{PCAP}", "--out", "{OUT}", "--db", ""),
         "unsupported database URL"),
    Case("score-threshold-nan", ("score", "{PCAP}", "--out", "{OUT}", "--threshold", "nan"),
         "--threshold: must be a number from 0 to 1"),
    Case("score-threshold-big", ("score", "{PCAP}", "--out", "{OUT}", "--threshold", "2"),
         "--threshold: must be a number from 0 to 1"),
    Case("score-batch-zero", ("score", "{PCAP}", "--out", "{OUT}", "--batch-size", "0"),
         "--batch-size: must be a whole number from 1"),
    Case("score-batch-negative", ("score", "{PCAP}", "--out", "{OUT}", "--batch-size", "-5"),
         "--batch-size: must be a whole number from 1"),
    Case("score-workers-negative", ("score", "{PCAP}", "--out", "{OUT}", "--workers", "-1"),
         "--workers: must be a whole number from 0 to 64"),
    Case("score-workers-huge", ("score", "{PCAP}", "--out", "{OUT}", "--workers", "100000"),
         "--workers: must be a whole number from 0 to 64"),
    Case("score-model-png", ("score", "{PCAP}", "--out", "{OUT}", "--model", "{PNG}"),
         "not a readable netids model"),
    Case("score-model-directory", ("score", "{PCAP}", "--out", "{OUT}", "--model", "{DIR}"),
         "model file not found"),
    # train
    Case("train-wifi-only", ("train", "{WIFI}", "--out", "{DIR}/m.pt"),
         "0 of 8,200 packets are IP traffic netids decodes (8,200 of a link type netids does "
         "not decode"),
    Case("train-png", ("train", "{PNG}", "--out", "{DIR}/m.pt"), "not a pcap or pcapng file"),
    Case("train-too-small", ("train", "{PCAP}", "--out", "{DIR}/m.pt"), "too little normal"),
    Case("train-out-directory", ("train", "{PCAP}", "--out", "{DIR}"), "is a folder"),
    Case("train-out-pipe", ("train", "{PCAP}", "--out", "{FIFO}"), "is not a regular file"),
    Case("train-epochs-zero", ("train", "{PCAP}", "--out", "{DIR}/m.pt", "--epochs", "0"),
         "--epochs: must be a whole number from 1"),
    Case("train-seed-negative", ("train", "{PCAP}", "--out", "{DIR}/m.pt", "--seed", "-1"),
         "--seed: must be a whole number from 0"),
    Case("train-threads-zero", ("train", "{PCAP}", "--out", "{DIR}/m.pt", "--threads", "0"),
         "--threads: must be a whole number from 1"),
    Case("train-part-reversed", ("train", "{PCAP}", "--out", "{DIR}/m.pt", "--part", "0.5:0.2"),
         "must satisfy 0 <= FROM < TO <= 1"),
    Case("train-false-alarm-nan", ("train", "{PCAP}", "--out", "{DIR}/m.pt", "--false-alarm",
                                   "nan"), "--false-alarm must be between 0 and 0.5"),
    # evaluate
    *(Case(f"evaluate-{name}", ("evaluate", "{PCAP}", "--labels", f"{{{name.upper()}}}",
                                "--no-baselines"), f"{{{name.upper()}}}: {line}")
      for name, (_, line) in LABELS.items()),
    Case("evaluate-labels-binary", ("evaluate", "{PCAP}", "--labels", "{GZ}", "--no-baselines"),
         "not a labels CSV (not UTF-8 text)"),
    Case("evaluate-labels-directory", ("evaluate", "{PCAP}", "--labels", "{DIR}",
                                       "--no-baselines"), "labels not found"),
    Case("evaluate-markdown-full-disk", ("evaluate", "{PCAP}", "--labels", "{LABELS}",
                                         "--no-baselines", "--markdown", "/dev/full"),
         "/dev/full: cannot write (No space left on device)"),
    Case("evaluate-threads-zero", ("evaluate", "{PCAP}", "--labels", "{LABELS}", "--threads",
                                   "0"), "--threads: must be a whole number from 1"),
    Case("evaluate-threshold-nan", ("evaluate", "{PCAP}", "--labels", "{LABELS}", "--threshold",
                                    "nan"), "--threshold: must be a number from 0 to 1"),
    Case("evaluate-train-part", ("evaluate", "{PCAP}", "--labels", "{LABELS}", "--train-part",
                                 "2:3"), "must satisfy 0 <= FROM < TO <= 1"),
    Case("evaluate-train-png", ("evaluate", "{PCAP}", "--labels", "{LABELS}", "--train",
                                "{PNG}"), "baseline training capture {PNG}: not a pcap"),
    # mix
    Case("mix-seed-negative", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap", "--seed",
                               "-1"), "--seed: must be a whole number from 0"),
    Case("mix-max-gap-nan", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap",
                             "--max-gap", "nan"), "--max-gap: must be a number from 0"),
    Case("mix-max-gap-negative", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap",
                                  "--max-gap", "-1"), "--max-gap: must be a number from 0"),
    Case("mix-max-attack-negative", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap",
                                     "--attack", "{PCAP}", "--max-attack-packets", "-3"),
         "--max-attack-packets: must be a whole number from 1"),
    Case("mix-normal-png", ("mix", "--normal", "{PNG}", "--out", "{DIR}/m.pcap"),
         "not a pcap or pcapng file"),
    Case("mix-out-full-disk", ("mix", "--normal", "{PCAP}", "--out", "/dev/full"),
         "cannot write the mix: /dev/full: No space left on device"),
    Case("mix-attack-bad-labels", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap",
                                   "--attack", "{ATTACK}"), "attack.labels.csv: line 3: label"),
    Case("mix-part-text", ("mix", "--normal", "{PCAP}", "--out", "{DIR}/m.pcap",
                           "--normal-part", "a:b"), "part must look like FROM:TO"),
    # export
    Case("export-db-mysql", ("export", "--format", "csv", "--out", "{OUT}", "--db",
                             "mysql://x/y"), "unsupported database URL"),
    Case("export-db-env", ("export", "--format", "csv", "--out", "{OUT}"),
         "unsupported database URL", env=(("NETIDS_DB", "oracle://scott:tiger@db/x"),)),
    Case("export-format", ("export", "--format", "xml", "--out", "{OUT}", "--db", "{DBURL}"),
         "invalid choice: 'xml'"),
    Case("export-min-score-nan", ("export", "--format", "csv", "--out", "{OUT}", "--db", "{DBURL}",
                                  "--min-score", "nan"), "--min-score: must be a number"),
    Case("export-since", ("export", "--format", "csv", "--out", "{OUT}", "--db", "{DBURL}",
                          "--since", "9999-99-99"), "not an ISO 8601 time"),
    Case("export-src", ("export", "--format", "csv", "--out", "{OUT}", "--db", "{DBURL}",
                        "--src", "999.1.1.1"), "not an address or CIDR"),
    Case("export-out-full-disk", ("export", "--format", "csv", "--out", "/dev/full", "--db",
                                  "{DBURL}"), "/dev/full: No space left on device"),
    Case("export-pcap-stdout", ("export", "--format", "pcap", "--out", "-", "--event", "x",
                                "--db", "{DBURL}"), "give a file name for the pcap"),
    Case("export-db-missing", ("export", "--format", "csv", "--out", "{OUT}", "--db",
                               "sqlite:///{DIR}/none.db"), "no database at"),
    # users
    Case("users-unwritable", ("users", "add", "bob", "--role", "admin", "--password-stdin"),
         "cannot write /proc/netids/users.json",
         env=(("NETIDS_USERS_FILE", "/proc/netids/users.json"),)),
    Case("users-bad-name", ("users", "add", "../x", "--role", "admin", "--password-stdin"),
         "a user name has"),
    Case("users-bad-role", ("users", "add", "bob", "--role", "root"), "invalid choice: 'root'"),
    Case("users-remove-nobody", ("users", "remove", "nobody"), "no user 'nobody'"),
    Case("users-file-png", ("users", "list"), "cannot read", env=(("NETIDS_USERS_FILE", "{PNG}"),)),
    # lab (refused before any namespace is made)
    Case("lab-out-file", ("lab", "--out", "{PNG}"), "is not a folder"),
    Case("lab-name-path", ("lab", "--out", "{DIR}", "--name", "../escape"), "plain file name"),
    Case("lab-duration-nan", ("lab", "--out", "{DIR}", "--duration", "nan"),
         "between 3 and 3600 seconds"),
    Case("lab-snaplen", ("lab", "--out", "{DIR}", "--snaplen", "5"),
         "--snaplen: must be a whole number from 64"),
    Case("lab-attacks", ("lab", "--out", "{DIR}", "--attacks", "teleport"), "unknown attack"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The hostile files the cases name, made once."""
    from netids.capture.pcapfile import write_pcap

    tmp = tmp_path_factory.mktemp("hostile")
    made = {"DIR": tmp / "folder", "PNG": tmp / "picture.png", "GZ": tmp / "archive.gz",
            "EMPTY": tmp / "empty.pcap", "FIFO": tmp / "pipe", "WIFI": tmp / "wifi.pcap",
            "PCAP": tmp / "small.pcap", "LABELS": tmp / "small.labels.csv",
            "ATTACK": tmp / "attack.pcap", "DB": tmp / "events.sqlite"}
    made["DIR"].mkdir()
    made["PNG"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    made["GZ"].write_bytes(gzip.compress(b"index,label\n0,0\n"))
    made["EMPTY"].write_bytes(b"")
    os.mkfifo(made["FIFO"])
    beacon = bytes.fromhex("80000000ffffffffffff020000000001020000000001") + bytes(40)
    write_pcap(made["WIFI"], ((1_700_000_000 + i / 100, beacon) for i in range(8200)),
               linktype=105)  # IEEE 802.11
    small_pcap(made["PCAP"], 300)
    made["LABELS"].write_text("index,label,attack_kind\n"
                              + "".join(f"{i},0,\n" for i in range(300)))
    small_pcap(made["ATTACK"], 20)
    (tmp / "attack.labels.csv").write_text(LABELS["labels_bad_label"][0])
    for name, (text, _) in LABELS.items():
        made[name.upper()] = tmp / f"{name}.csv"
        made[name.upper()].write_text(text)
    open_database(f"sqlite:///{made['DB']}").dispose()
    paths = {k: str(v) for k, v in made.items()}
    paths["DBURL"] = f"sqlite:///{made['DB']}"
    paths["OUT"] = str(tmp / "out" / "result.csv")
    (tmp / "out").mkdir()
    return paths


def _fill(text: str, files: dict[str, str]) -> str:
    for key, value in files.items():
        text = text.replace(f"{{{key}}}", value)
    return text


@pytest.fixture(scope="module")
def answers(files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """Every case run at once, each a real ``python app.py`` process; forked from one that
    imported torch already (a fresh interpreter spends seconds on that, 78 times)."""
    model = str(model_for_tests())
    output = tmp_path_factory.mktemp("hostile-output")
    taken = socket.socket()  # a port another program holds
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    files["TAKEN"] = str(taken.getsockname()[1])

    def run(case: Case) -> Run:
        env = clean_env(NETIDS_USERS_FILE=str(Path(files["DIR"]) / "users.json"),
                        NETIDS_MODEL=model, NETIDS_DB=f"sqlite:///{files['DIR']}/app.sqlite")
        env.update({k: _fill(v, files) for k, v in case.env})
        return Run(APP, [_fill(a, files) for a in case.argv], env, files["DIR"],
                   "a long enough password\n", str(output / case.name))

    with taken:
        done = run_forked([run(c) for c in CASES], parallel=2)
        yield dict(zip((c.name for c in CASES), done, strict=True))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_value_gets_one_line_and_exit_status_2(
        case: Case, answers: dict[str, subprocess.CompletedProcess[str]],
        files: dict[str, str]) -> None:
    done = answers[case.name]
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert done.returncode == 2, done.stderr
    assert _fill(case.says, files) in lines[0], lines[0]


def test_refusals_create_and_overwrite_nothing(
        answers: dict[str, subprocess.CompletedProcess[str]], files: dict[str, str]) -> None:
    assert not Path(files["OUT"]).exists()  # no case got as far as writing its output
    assert Path(files["FIFO"]).is_fifo()  # train did not put a checkpoint in the pipe's place
    assert Path(files["PCAP"]).stat().st_size > 10_000  # score --out CAPTURE left it whole
    assert not (Path(files["DIR"]).parent / "escape.pcap").exists()
    assert Path("/dev/full").is_char_device()
