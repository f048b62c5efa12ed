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
    from indexer import IndexOptions, ModelMismatch, index_paths, reindex
    from model.encoder import model_dir

    model_dir(MODEL)  # a missing model is a clear error before minutes of dataset building
    directory = Path(dataset) if dataset else emoji36.default_directory()
    if not (directory / "captions.jsonl").is_file():
        emoji36.build(directory, only=only, progress=progress)
    options = IndexOptions(progress=progress)

    def index() -> None:
        index_paths([directory / "images"], COLLECTION, MODEL, database, options)

    try:
        index()
    except ModelMismatch:
        # The demo model changed since the demo was indexed (a newer checkout ships new weights).
        # The demo collection only ever holds the demo model's vectors, so it follows the model
        # instead of stopping the demo; a user's own collections never switch models by themselves.
        reindex(COLLECTION, MODEL, database, options)
        index()
    return directory / "images"
