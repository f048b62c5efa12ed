"""Crossmodal-3600 (XM3600): 3600 images with human captions in 36 languages.

`download(directory)` leaves the layout that `data.captions.load` reads:
    directory/captions.jsonl          one JSON object per image
    directory/images/<key>.jpg        the images
The archives are fetched resumably into directory/downloads/ and removed once unpacked (unless
`keep_archives`). The URLs are arguments (and PIXGLOT_XM3600_CAPTIONS_URL / PIXGLOT_XM3600_IMAGES_URL),
so a mirror or a local server can stand in for the public hosts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from data.archive import safe_extract
from ground.download import download as fetch
from ground.errors import FileFormatError
from ground.home import datasets_dir

LANGUAGES = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr",
    "he", "hi", "hr", "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl",
    "pt", "quz", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip

CAPTIONS_URL = "https://google.github.io/crossmodal-3600/web-data/captions.zip"
IMAGES_URL = "https://open-images-dataset.s3.amazonaws.com/crossmodal-3600/images.tgz"

CAPTIONS_FILE = "captions.jsonl"
IMAGES_DIR = "images"
_DONE_CAPTIONS = ".captions.complete"
_DONE_IMAGES = ".images.complete"


def default_directory() -> Path:
    return datasets_dir() / "xm3600"


@dataclass
class DownloadResult:
    directory: Path
    captions: Path
    images: Path
    fetched: list[
        str
    ]  # what this call downloaded and unpacked ("captions", "images"); empty if all was there


def download(
    directory: str | Path | None = None,
    *,
    captions_url: str | None = None,
    images_url: str | None = None,
    images: bool = True,
    keep_archives: bool = False,
    progress: bool = True,
) -> DownloadResult:
    """Download and unpack XM3600 into `directory`; parts already complete are skipped, downloads resume."""
    directory = Path(directory) if directory else default_directory()
    directory.mkdir(parents=True, exist_ok=True)
    captions_url = captions_url or os.environ.get("PIXGLOT_XM3600_CAPTIONS_URL") or CAPTIONS_URL
    images_url = images_url or os.environ.get("PIXGLOT_XM3600_IMAGES_URL") or IMAGES_URL
    downloads = directory / "downloads"
    fetched = []

    if not (directory / _DONE_CAPTIONS).exists():
        archive = downloads / "captions.zip"
        fetch(captions_url, archive, progress=progress)
        safe_extract(archive, directory)
        if not (directory / CAPTIONS_FILE).is_file():
            raise FileFormatError(archive, f"the archive holds no {CAPTIONS_FILE} at its top level")
        (directory / _DONE_CAPTIONS).touch()
        fetched.append("captions")
        if not keep_archives:
            archive.unlink()

    if images and not (directory / _DONE_IMAGES).exists():
        archive = downloads / "images.tgz"
        fetch(images_url, archive, progress=progress)
        safe_extract(archive, directory / IMAGES_DIR)
        (directory / _DONE_IMAGES).touch()
        fetched.append("images")
        if not keep_archives:
            archive.unlink()

    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()
    return DownloadResult(directory, directory / CAPTIONS_FILE, directory / IMAGES_DIR, fetched)
