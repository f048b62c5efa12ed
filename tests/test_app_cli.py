"""`pixglot ui`: what it starts Streamlit with, and the errors it reports before starting it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ground.errors import PixglotError
from indexer import IndexOptions, index_paths
from indexer.samples import write_images
from pixglot.cli import build_parser, main
from pixglot.cli.ui import prepare_first_collection, streamlit_command


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


def test_start_up_warms_the_first_collection_and_reports_one_it_cannot(
    tiny: str, tmp_path: Path, pixglot_home: Path, capsys: pytest.CaptureFixture
) -> None:
    write_images(tmp_path / "photos", 3)
    index_paths([tmp_path / "photos"], "c", tiny, options=IndexOptions(progress=False, workers=0))
    prepare_first_collection(build_parser().parse_args(["ui"]))
    assert "preparing collection 'c' (model tiny)" in capsys.readouterr().err
    shutil.rmtree(pixglot_home / "models" / "tiny")
    # Unnamed, the page still starts: the collection shows its error there.
    prepare_first_collection(build_parser().parse_args(["ui"]))
    assert "warning: collection 'c' cannot be searched" in capsys.readouterr().err
    # Named, it is an error before the server starts.
    with pytest.raises(PixglotError, match="tiny"):
        prepare_first_collection(build_parser().parse_args(["ui", "-c", "c"]))
