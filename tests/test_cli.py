"""The command line: a typo is an error in one line, never silently ignored; every command
answers hostile values with one line on stderr and a non-zero exit."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest

from netids.cli import main
from netids.config import PROJECT_ROOT
from tests.support import AppProcess, clean_env, free_port, wait_until

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"


def test_a_misspelt_option_of_a_command_stops_it(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.csv"
    status = main(["score", str(SAMPLE), "--out", str(out), "--thresold", "0.5"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == ("app.py score: error: unrecognized arguments: --thresold 0.5 "
                   "(options: app.py score --help)\n")
    assert not out.exists()  # nothing ran with the default threshold instead


def test_a_misspelt_option_of_the_app_stops_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--natve"]) == 2  # returns before serving anything
    assert "unrecognized arguments: --natve" in capsys.readouterr().err


def test_help_still_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--help"]) == 0
    assert "--format" in capsys.readouterr().out


def test_connection_retention_is_configurable(capsys: pytest.CaptureFixture[str]) -> None:
    from netids.cli import build_parser, settings_from

    for argv in (["--conn-retention-days", "3"],
                 ["score", str(SAMPLE), "--out", "x.csv", "--conn-retention-days", "3"]):
        args = build_parser(argv).parse_args(argv)
        assert settings_from(args).storage.conn_retention_days == 3.0
    assert settings_from(build_parser([]).parse_args([])).storage.conn_retention_days == 7.0
    assert main(["--conn-retention-days", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--conn-retention-days" in err


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--learn-minutes", "0", "must be a number from 0.01 to 10080, got '0'"),
    ("--learn-minutes", "-5", "must be a number from 0.01 to 10080, got '-5'"),
    ("--learn-minutes", "ten", "must be a number from 0.01 to 10080, got 'ten'"),
    ("--learn-minutes", "nan", "must be a number from 0.01 to 10080, got 'nan'"),
    ("--learn-epochs", "0", "must be a whole number from 1 to 1000, got '0'"),
    ("--learn-epochs", "2.5", "must be a whole number from 1 to 1000, got '2.5'"),
])
def test_learning_options_out_of_range_are_one_line_errors(
        option: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([option, value]) == 2  # before anything is served or imported
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"app.py: error: argument {option}: {expected} "
                   "(options: app.py --help)\n")


def test_netns_without_an_interface_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--netns", "somewhere", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == (
        "error: --netns NS needs --interface IFACE (the interface to monitor in NS)\n")


def test_an_interface_that_is_not_there_is_one_line_and_the_app_keeps_serving(
        tmp_path: Path) -> None:
    port = free_port()
    app = AppProcess(["--port", str(port), "--db", f"sqlite:///{tmp_path / 'e.sqlite'}",
                      "--interface", "nosuch0"], clean_env(), tmp_path / "app.log")
    try:
        app.wait_http(f"http://127.0.0.1:{port}/")
        wait_until(lambda: "nosuch0" in app.log(), what="the capture error in the log")
        assert "ERROR netids.webapp: --interface nosuch0: no network interface named " \
               "'nosuch0'" in app.log()
        assert "Traceback" not in app.log()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).close()  # still serving
    finally:
        app.stop(signal.SIGINT)


def test_ctrl_c_stops_the_app_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    app = AppProcess(["--port", str(port), "--db", f"sqlite:///{tmp_path / 'c.sqlite'}"],
                     clean_env(), tmp_path / "app.log")
    app.wait_http(f"http://127.0.0.1:{port}/")
    assert app.stop(signal.SIGINT) in (0, 130)  # 130: as a shell reports Ctrl-C
    assert "Traceback" not in app.log()


def test_a_command_option_is_not_taken_for_an_abbreviation_of_an_app_option() -> None:
    from netids.cli import build_parser

    argv = ["score", str(SAMPLE), "--learn", "10", "--out", "x.csv"]
    args = build_parser(argv).parse_args(argv)
    assert args.learn == 10.0
