"""COCO-35L: the COCO captions of the Karpathy split in 35 languages, over the user's own COCO images.

`download` (data.translated_captions) fetches coco_mt_train.jsonl.bz2 and coco_mt_dev.jsonl.bz2.
`prepare` parses a split's file into caption shards, finds each image in the user's COCO folder
by its COCO image id, and writes training shards (data.pair_shards). The image of id 123456 is
looked for as

    train2014/COCO_train2014_000000123456.jpg    val2014/COCO_val2014_000000123456.jpg
    train2017/000000123456.jpg                   val2017/000000123456.jpg

or under the same names in the folder given itself. The Karpathy train split takes 30,504 of its
images from COCO's val2014 ("restval"), so a 2014 copy needs both of its folders; the 2017 folders
hold the same images under the shorter names. Captions whose image is not found are counted and
left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data import pair_shards
from data import translated_captions as tc
from ground.errors import InputError

NAME = "coco35l"
COCO_FOLDERS = ("train2014", "val2014", "train2017", "val2017")
_IMAGE_NAME = re.compile(r"(?:COCO_(?:train|val)2014_)?(\d{12})\.jpg")


def index_images(coco_dir: str | Path) -> dict[int, Path]:
    """COCO image id -> its file, for every image in `coco_dir` and its COCO_FOLDERS."""
    root = Path(coco_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such COCO folder")
    found: dict[int, Path] = {}
    for folder in (root, *(root / name for name in COCO_FOLDERS)):
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            match = _IMAGE_NAME.fullmatch(entry.name)
            if match:
                found.setdefault(int(match.group(1)), Path(entry.path))
    if not found:
        raise InputError(
            f"{root}: no COCO images (e.g. train2014/COCO_train2014_000000123456.jpg or "
            "train2017/000000123456.jpg) in it or in its " + ", ".join(COCO_FOLDERS) + " folders"
        )
    return found


@dataclass
class PrepareSummary:
    parse: tc.ParseSummary
    build: pair_shards.BuildSummary


def prepare(
    directory: str | Path | None = None,
    *,
    coco_dir: str | Path,
    out: str | Path,
    split: str = "train",
    languages: Sequence[str] | None = None,
    rows_per_shard: int = 10_000,
    lines_per_shard: int = tc.LINES_PER_SHARD,
    progress: bool = True,
) -> PrepareSummary:
    """Caption shards, then training shards `<out>/coco35l-<split>-BBB-NNNN.parquet`; reruns resume."""
    languages = tc.check_languages(languages)
    images = index_images(coco_dir)
    parsed = tc.parse(NAME, directory, split, lines_per_shard=lines_per_shard, progress=progress)

    def lookup(key: str) -> Path | None:
        return images.get(int(key))

    built = pair_shards.build(
        parsed.shards,
        out,
        lookup,
        prefix=f"{NAME}-{split}",
        languages=languages,
        images_state=f"{len(images)} COCO images in {Path(coco_dir).resolve()}",
        rows_per_shard=rows_per_shard,
        progress=progress,
    )
    return PrepareSummary(parsed, built)
