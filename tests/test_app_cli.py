"""`pixglot ui`: what it starts Streamlit with, and the errors it reports before starting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixglot.cli import build_parser, main
from pixglot.cli.ui import streamlit_command


def command(*argv: str) -> list[str]:
    return streamlit_command(build_parser().parse_args(["ui", *argv]))


def test_serves_on_localhost_headless_without_usage_stats_by_default():
    line = command()
    assert line[1:4] == ["-m", "streamlit", "run"]
    assert Path(line[4]).name == "main.py" and Path(line[4]).is_file()
    flags = line[5 : line.index("--")]
    for flag in (
        "--server.address=127.0.0.1",
        "--server.port=8501",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.maxUploadSize=20",
    ):
        assert flag in flags
    assert line[-1] == "--"  # no script arguments


def test_host_port_collection_and_database_are_passed_on():
    line = command("--host", "0.0.0.0", "--port", "9000", "-c", "photos", "--db", "sqlite:////tmp/x.db")
    assert "--server.address=0.0.0.0" in line and "--server.port=9000" in line
    assert line[line.index("--") + 1 :] == ["--collection", "photos", "--db", "sqlite:////tmp/x.db"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--collection", "nope"], "no collection named 'nope'"),
        (["--port", "70000"], "--port 70000: must be between 1 and 65535"),
    ],
)
def test_bad_arguments_fail_before_the_server_starts(argv, message, capsys):
    assert main(["ui", *argv]) == 2
    assert message in capsys.readouterr().err
