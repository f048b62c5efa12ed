"""The XM3600 layout, shared by Crossmodal-3600 and Emoji-36, and its loader.

    <dir>/captions.jsonl   one JSON object per line:
        {"image/key": "<key>", "<lang>": {"caption": [...], "caption/tokenized": [...]}, ...}
        other top-level fields whose values are not objects (e.g. "split", "emoji") are metadata.
    <dir>/images/<key>.jpg (or .jpeg, .png)
    <dir>/dataset.json     optional: {"name": ...}; without it the dataset is called "xm3600".

Nothing bad is dropped silently: a line that is not valid JSON, a missing key, a duplicate key, a
missing image, an empty caption list or a requested language that no line has becomes an `Issue`
naming the line or key. The rest of the data stays usable; callers decide (e.g. `--strict`) whether
issues are fatal.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ground.errors import FileFormatError, InputError

CAPTIONS_FILE = "captions.jsonl"
IMAGES_DIR = "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Which captions of each image an evaluation scores: every one (big_vision), or the first (CLIP_benchmark).
CAPTION_PROTOCOLS = ("all", "first")
WORD_SEPARATOR = ", "  # CLDR keywords, and word lists in general: "cat, face, pet"
DEFAULT_NAME = "xm3600"


def check_caption_protocol(protocol: str) -> None:
    if protocol not in CAPTION_PROTOCOLS:
        raise InputError(
            f"unknown caption protocol {protocol!r}; expected one of {', '.join(CAPTION_PROTOCOLS)}"
        )


@dataclass(frozen=True)
class Issue:
    kind: str  # bad_line, bad_key, duplicate_key, missing_image, bad_image, bad_captions, empty_captions,
    # unknown_language
    where: str  # "captions.jsonl:17" or "image 'abc'" or "language 'xx'"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class CaptionDataset:
    root: Path
    name: str
    keys: list[str]  # usable images (file present), in file order
    image_paths: list[Path]
    captions: dict[str, dict[int, list[str]]]  # language -> image index -> its captions (never empty)
    languages: list[str]  # the selected languages, each present in the data
    available_languages: list[str]  # every language code found in the file
    issues: list[Issue] = field(default_factory=list)
    split: str | None = None

    def pairs(
        self, language: str, protocol: str = "all", images: Collection[int] | None = None
    ) -> tuple[list[str], list[int]]:
        """Captions of `language` and the image index of each; only the first per image for "first".

        `images` restricts to those image indices (e.g. the ones that could be decoded).
        """
        check_caption_protocol(protocol)
        texts, owners = [], []
        for index, captions in self._captions_of(language, images):
            chosen = captions[:1] if protocol == "first" else captions
            texts.extend(chosen)
            owners.extend([index] * len(chosen))
        return texts, owners

    def word_queries(
        self, language: str, images: Collection[int] | None = None
    ) -> tuple[list[str], list[int], list[int]]:
        """One-word queries of `language`: every word of its captions that are word lists ("a, b, c"),
        once, in sorted order, and the relevant (word, image) pairs as two index lists: an image is
        relevant to a word when any of its captions is that word or a list holding it (so the cat
        emoji captioned just "cat" is a cat too)."""
        words_of: dict[int, set[str]] = {}
        queries: set[str] = set()
        for index, captions in self._captions_of(language, images):
            parts = [caption.split(WORD_SEPARATOR) for caption in captions]
            words_of[index] = {word.strip() for words in parts for word in words} - {""}
            queries.update(word.strip() for words in parts if len(words) > 1 for word in words)
        queries.discard("")
        words = sorted(queries)
        position = {word: i for i, word in enumerate(words)}
        pairs = sorted((position[w], index) for index, ws in words_of.items() for w in ws if w in position)
        return words, [w for w, _ in pairs], [index for _, index in pairs]

    def _captions_of(self, language: str, images: Collection[int] | None) -> Iterable[tuple[int, list[str]]]:
        return (
            (index, captions)
            for index, captions in self.captions[language].items()
            if images is None or index in images
        )

    def issues_of(self, kinds: Iterable[str]) -> list[Issue]:
        kinds = set(kinds)
        return [i for i in self.issues if i.kind in kinds]


def _dataset_name(root: Path) -> str:
    meta = root / "dataset.json"
    if not meta.is_file():
        return DEFAULT_NAME
    try:
        name = json.loads(meta.read_text(encoding="utf-8")).get("name")
    except (ValueError, AttributeError) as err:
        raise FileFormatError(meta, f"not a JSON object with a 'name' ({err})") from err
    if not isinstance(name, str) or not name:
        raise FileFormatError(meta, "'name' must be a non-empty string")
    return name


def _valid_key(key: object) -> bool:
    # The key names a file under images/, so it may not reach outside that directory.
    return (
        isinstance(key, str) and bool(key) and "/" not in key and "\\" not in key and not key.startswith(".")
    )


def _records(path: Path, issues: list[Issue]) -> Iterator[tuple[int, dict]]:
    """The JSON objects of the file's lines with their line numbers; other lines become issues."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as err:
                reason = f"not a valid JSON line (truncated?): {err}"
                issues.append(Issue("bad_line", f"{path.name}:{lineno}", reason))
                continue
            if not isinstance(record, dict):
                issues.append(Issue("bad_line", f"{path.name}:{lineno}", "not a JSON object"))
                continue
            yield lineno, record


def _captions_of(record: dict, key: str, where: str, issues: list[Issue]) -> Iterator[tuple[str, list[str]]]:
    """Each language block of a line and its usable (non-empty) captions, possibly none; a block
    that is not a list of strings, and empty captions, become issues."""
    for lang, block in record.items():
        if lang == "image/key" or not isinstance(block, dict):
            continue
        texts = block.get("caption")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            reason = f"image {key!r}, language {lang!r}: 'caption' is not a list of strings"
            issues.append(Issue("bad_captions", where, reason))
            continue
        usable = [t for t in texts if t.strip()]
        if len(usable) < len(texts):
            reason = f"image {key!r}, language {lang!r}: {len(texts) - len(usable)} empty caption(s) left out"
            issues.append(Issue("empty_captions", where, reason))
        if not usable:
            reason = f"image {key!r}, language {lang!r}: no captions; image left out of this language"
            issues.append(Issue("empty_captions", where, reason))
        yield lang, usable


def _selected_languages(
    captions: dict[str, dict[int, list[str]]], languages: Sequence[str] | None, file: str, issues: list[Issue]
) -> list[str]:
    """The languages asked for (default: every one with captions); one asked for but absent is an issue."""
    available = sorted(captions)
    if languages is None:
        return [lang for lang in available if captions[lang]]
    selected = []
    for lang in dict.fromkeys(languages):
        if captions.get(lang):
            selected.append(lang)
        else:
            reason = f"not in {file} (present: {', '.join(available) or 'none'}); skipped"
            issues.append(Issue("unknown_language", f"language {lang!r}", reason))
    return selected


def load(
    directory: str | Path, languages: Sequence[str] | None = None, split: str | None = None
) -> CaptionDataset:
    """Read `<directory>/captions.jsonl` and find each image; see the module docstring for the format.

    `languages`: codes to keep (default: every code present). `split`: keep only lines whose
    "split" field equals it (Emoji-36 has "train"/"test").
    """
    root = Path(directory)
    path = root / CAPTIONS_FILE
    if not path.is_file():
        raise FileFormatError(path, "missing; download the dataset first (pixglot data xm3600 download DIR)")
    images_dir = root / IMAGES_DIR
    image_files = {p.name for p in images_dir.iterdir()} if images_dir.is_dir() else set()
    where = path.name

    issues: list[Issue] = []
    keys: list[str] = []
    image_paths: list[Path] = []
    captions: dict[str, dict[int, list[str]]] = {}
    seen: set[str] = set()
    splits_seen = False
    for lineno, record in _records(path, issues):
        key = record.get("image/key")
        if not _valid_key(key):
            issues.append(Issue("bad_key", f"{where}:{lineno}", f"missing or unusable 'image/key': {key!r}"))
            continue
        splits_seen = splits_seen or "split" in record
        if split is not None and record.get("split") != split:
            continue
        if key in seen:
            issues.append(
                Issue("duplicate_key", f"{where}:{lineno}", f"image {key!r} already listed; line ignored")
            )
            continue
        seen.add(key)
        filename = next((key + s for s in IMAGE_SUFFIXES if key + s in image_files), None)
        if filename is None:
            reason = f"image {key!r}: no {IMAGES_DIR}/{key}.jpg or .png; image left out"
            issues.append(Issue("missing_image", f"{where}:{lineno}", reason))
            continue
        index = len(keys)
        keys.append(key)
        image_paths.append(images_dir / filename)
        for lang, usable in _captions_of(record, key, f"{where}:{lineno}", issues):
            if usable:
                captions.setdefault(lang, {})[index] = usable
            else:
                captions.setdefault(lang, {})

    if split is not None and not splits_seen:
        raise InputError(f"{path}: no line has a 'split' field, so --split {split!r} selects nothing")
    available = sorted(captions)
    selected = _selected_languages(captions, languages, path.name, issues)
    name = _dataset_name(root)
    return CaptionDataset(
        root=root,
        name=f"{name}/{split}" if split else name,
        keys=keys,
        image_paths=image_paths,
        captions=captions,
        languages=selected,
        available_languages=available,
        issues=issues,
        split=split,
    )
