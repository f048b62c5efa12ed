"""The demo: Emoji-36 indexed with Pixglot's shipped model, searchable in any of 36 languages.

`prepare()` is the whole set-up behind `make demo` and `pixglot demo`; it is idempotent, so a second
run only checks that everything is in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

COLLECTION = "demo"
MODEL = "demo"


def prepare(
    dataset: str | Path | None = None,
    *,
    only: Sequence[str] | None = None,
    database: str | None = None,
    progress: bool = True,
) -> Path:
    """Build Emoji-36 if missing and index its images into the `demo` collection; return the images folder.

    `only` builds a subset of emoji (as in `data.emoji36.build`), for quick headless checks.
    """
    from data import emoji36
    from indexer import IndexOptions, index_paths
    from model.encoder import model_dir

    model_dir(MODEL)  # a missing model is a clear error before minutes of dataset building
    directory = Path(dataset) if dataset else emoji36.default_directory()
    if not (directory / "captions.jsonl").is_file():
        emoji36.build(directory, only=only, progress=progress)
    index_paths(
        [directory / "images"],
        collection=COLLECTION,
        model=MODEL,
        database=database,
        options=IndexOptions(progress=progress),
    )
    return directory / "images"
