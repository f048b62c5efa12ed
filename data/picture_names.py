"""What people call a dataset's pictures: the captions of an image that lies in the XM3600 layout
(`<dir>/images/<key>.png` beside `<dir>/captions.jsonl`), so a search page can show an emoji's CLDR
name ("cat face", "猫の顔") where it would otherwise show its file name (`u1f431.png`).

The first caption of a language is its name (Emoji-36 lists the CLDR short name first, then the
keywords). Any other image has no names, and is shown by its file name as before.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from data.captions import CAPTIONS_FILE, IMAGES_DIR, load
from ground.errors import PixglotError

Names = Mapping[str, tuple[str, ...]]  # language -> the picture's captions, its name first
NO_NAMES: Names = MappingProxyType({})


def names_of(path: str) -> Names:
    """The captions of the picture at `path` by language; empty when it is in no dataset (or the
    dataset's captions cannot be read: a page showing results must not fail on them)."""
    folder = os.path.dirname(path)
    if os.path.basename(folder) != IMAGES_DIR:
        return NO_NAMES
    captions_file = os.path.join(os.path.dirname(folder), CAPTIONS_FILE)
    try:
        stamp = os.stat(captions_file).st_mtime_ns
    except OSError:
        return NO_NAMES
    return _dataset_names(os.path.dirname(folder), stamp).get(os.path.basename(path), NO_NAMES)


@functools.lru_cache(maxsize=4)
def _dataset_names(root: str, stamp: int) -> dict[str, Names]:
    """File name -> names of each picture of the dataset at `root`; `stamp` (the captions file's
    mtime) makes an edited file read anew."""
    try:
        dataset = load(root)
    except (PixglotError, OSError):
        return {}
    names: dict[str, dict[str, tuple[str, ...]]] = {}
    for language, by_image in dataset.captions.items():
        for index, captions in by_image.items():
            names.setdefault(dataset.image_paths[index].name, {})[language] = tuple(captions)
    return {name: MappingProxyType(languages) for name, languages in names.items()}


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def query_language(query: str, pictures: Iterable[Names]) -> str | None:
    """The language whose captions of `pictures` hold `query` most often, e.g. "ja" for 猫 over cat
    emoji; None when no caption holds it or two languages hold it equally often."""
    words = _folded(query).strip()
    if not words:
        return None
    counts = Counter(
        language
        for names in pictures
        for language, captions in names.items()
        if any(words in _folded(caption) for caption in captions)
    )
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]
