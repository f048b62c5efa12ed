"""Downloads from a local HTTP server on 127.0.0.1 (resume, servers without Range) and safe unpacking."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from http_support import FileServer

from data import xm3600
from data.archive import UnsafeArchiveError, safe_extract
from data.captions import load
from ground.download import DownloadError, download, part_path
from ground.errors import FileFormatError
from pixglot.cli import main


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def test_download_resumes_an_interrupted_transfer_with_range(server, tmp_path):
    body = bytes(range(256)) * 4000
    server.files["/big.bin"] = body
    server.cut_after = 300_000
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="run again"):
        download(f"{server.url}/big.bin", dest, progress=False, retries=0)
    assert not dest.exists() and part_path(dest).stat().st_size == 300_000
    assert download(f"{server.url}/big.bin", dest, progress=False) == hashlib.sha256(body).hexdigest()
    assert dest.read_bytes() == body and not part_path(dest).exists()
    assert server.requests[-1] == ("/big.bin", "bytes=300000-")
    # Complete files are not fetched again.
    download(f"{server.url}/big.bin", dest, progress=False)
    assert len(server.requests) == 2


def test_a_transfer_cut_short_resumes_within_the_same_call(server, tmp_path):
    body = bytes(range(256)) * 4000
    server.files["/big.bin"] = body
    server.cut_after = 123_456
    dest = tmp_path / "big.bin"
    download(f"{server.url}/big.bin", dest, progress=False)
    assert dest.read_bytes() == body
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=123456-")]


def test_server_errors_are_retried_and_a_missing_file_is_not(server, tmp_path):
    server.files["/f"] = b"the file"
    server.failures = 2  # two 503 answers before the file
    download(f"{server.url}/f", tmp_path / "f", progress=False)
    assert (tmp_path / "f").read_bytes() == b"the file" and len(server.requests) == 3
    server.failures = 9
    with pytest.raises(DownloadError, match="HTTP 503"):
        download(f"{server.url}/f", tmp_path / "g", progress=False, retries=1)
    assert not (tmp_path / "g").exists() and server.failures == 7  # the first try and one retry
    server.failures = 0
    before = len(server.requests)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/missing", tmp_path / "m", progress=False)
    assert len(server.requests) == before + 1


def test_download_starts_over_when_the_server_ignores_range(server, tmp_path):
    body = b"0123456789" * 1000
    server.files["/f"] = body
    server.ranges = False
    dest = tmp_path / "f"
    part_path(dest).write_bytes(b"stale bytes")
    download(f"{server.url}/f", dest, progress=False)
    assert dest.read_bytes() == body


def test_download_restarts_when_the_part_is_longer_than_the_file(server, tmp_path):
    server.files["/f"] = b"short"
    dest = tmp_path / "f"
    part_path(dest).write_bytes(b"much longer than the file")
    download(f"{server.url}/f", dest, progress=False)
    assert dest.read_bytes() == b"short"


def test_download_errors_name_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(f"{server.url}/missing", tmp_path / "x", progress=False)


def _tgz(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "bad",
    [
        ("../evil.txt", b"x"),
        ("/tmp/pixglot-absolute.txt", b"x"),
        ("images/../../evil.txt", b"x"),
        _link("up", "../outside"),
        _link("abs", "/etc"),
        _link("hard", "../outside", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_malicious_tar_entries_are_rejected_before_anything_is_written(tmp_path, bad):
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(_tgz([("ok.jpg", b"fine"), bad]))
    target = tmp_path / "deep" / "target"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        safe_extract(archive, target)
    assert not any(target.iterdir())
    assert not (tmp_path / "deep" / "evil.txt").exists()


def test_writing_through_a_link_of_the_same_archive_is_rejected(tmp_path):
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(_tgz([_link("sub", "inner"), ("sub/file.txt", b"x")]))
    with pytest.raises(UnsafeArchiveError, match="through a link"):
        safe_extract(archive, tmp_path / "t")


def test_zip_with_dotdot_or_symlink_is_rejected(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("captions.jsonl", "{}")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="'..'"):
        safe_extract(archive, tmp_path / "t")
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(archive, tmp_path / "t2")


def test_a_damaged_archive_is_a_file_format_error(tmp_path):
    archive = tmp_path / "images.tgz"
    archive.write_bytes(_tgz([("a.jpg", b"x" * 1000)])[:40])
    with pytest.raises(FileFormatError, match="images.tgz"):
        safe_extract(archive, tmp_path / "t")


def _captions_zip(lines: list[dict]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("captions.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    return buf.getvalue()


def test_xm3600_download_unpacks_the_layout_the_loader_reads(server, tmp_path, capsys):
    server.files["/web-data/captions.zip"] = _captions_zip(
        [
            {
                "image/key": "aa01",
                "en": {"caption": ["a cat"], "caption/tokenized": ["a cat"]},
                "de": {"caption": ["eine Katze"], "caption/tokenized": ["eine katze"]},
            },
            {
                "image/key": "bb02",
                "en": {"caption": ["a dog"], "caption/tokenized": ["a dog"]},
                "de": {"caption": ["ein Hund"], "caption/tokenized": ["ein hund"]},
            },
        ]
    )
    server.files["/crossmodal-3600/images.tgz"] = _tgz(
        [("aa01.jpg", b"jpeg-bytes-1"), ("bb02.jpg", b"jpeg-2")]
    )
    target = tmp_path / "xm3600"
    argv = [
        "data",
        "xm3600",
        "download",
        str(target),
        "--captions-url",
        f"{server.url}/web-data/captions.zip",
        "--images-url",
        f"{server.url}/crossmodal-3600/images.tgz",
    ]
    assert main(argv) == 0
    assert "captions, images" in capsys.readouterr().out
    assert (target / "images" / "aa01.jpg").read_bytes() == b"jpeg-bytes-1"
    assert not (target / "downloads").exists()  # archives removed once unpacked
    ds = load(target)
    assert ds.keys == ["aa01", "bb02"] and ds.languages == ["de", "en"] and ds.issues == []
    # A second run finds everything complete and downloads nothing.
    n = len(server.requests)
    result = xm3600.download(target, captions_url=f"{server.url}/nowhere", images_url=f"{server.url}/nowhere")
    assert result.fetched == [] and len(server.requests) == n


def test_xm3600_download_rejects_a_malicious_images_archive(server, tmp_path):
    server.files["/c.zip"] = _captions_zip([{"image/key": "aa01", "en": {"caption": ["a cat"]}}])
    server.files["/i.tgz"] = _tgz([("aa01.jpg", b"x"), ("../../escaped.jpg", b"x")])
    with pytest.raises(UnsafeArchiveError):
        xm3600.download(
            tmp_path / "xm",
            captions_url=f"{server.url}/c.zip",
            images_url=f"{server.url}/i.tgz",
            progress=False,
        )
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path.parent / "escaped.jpg").exists()
    assert not (tmp_path / "xm" / "images" / "aa01.jpg").exists()


def test_urls_come_from_the_environment_too(server, tmp_path, monkeypatch):
    server.files["/c.zip"] = _captions_zip([{"image/key": "k", "en": {"caption": ["x"]}}])
    monkeypatch.setenv("PIXGLOT_XM3600_CAPTIONS_URL", f"{server.url}/c.zip")
    result = xm3600.download(tmp_path / "xm", images=False, progress=False)
    assert result.fetched == ["captions"] and Path(result.captions).is_file()
