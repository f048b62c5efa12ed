"""Emoji-36: a multilingual image<->text benchmark built offline from system data.

Images: the colour bitmaps of Noto Color Emoji, one per emoji the font draws as a single glyph
(code points, ZWJ sequences, skin tones, flags, keycaps), flattened on white into a square PNG.
Captions: the CLDR annotations of that emoji in the 36 XM3600 languages: the short name and the
keywords joined by ", " (two captions, or one when they coincide). An emoji without an annotation
in a language has no captions there, so languages have different image counts.

Layout (the XM3600 one, so the XM3600 evaluator runs on it unchanged):
    images/<key>.png     key = "u" + code points in hex joined by "_" (U+FE0F left out), e.g. u1f431
    captions.jsonl       {"image/key", "emoji", "split", "<lang>": {"caption": [...]}, ...}
    splits.json          {"train": [...], "test": [...], "base_of": {key: base key}, ...}
    dataset.json         {"name": "emoji36", ...}; DATASET.md: the dataset card with counts

Split, by base emoji: skin tones, variation selectors, hair components and gender signs are
stripped, gendered people are mapped to their neutral form (man/woman -> person, boy/girl -> child,
...), and a hash of what remains decides: sha256("emoji36-split-v1:" + base) read as a fraction
below `test_fraction` (0.2) is test. All variants of one emoji therefore land on the same side.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data import cldr
from data.captions import WORD_SEPARATOR
from data.emoji_font import EmojiFont, find_emoji_font
from data.xm3600 import LANGUAGES
from ground.atomic import write_bytes_atomic
from ground.errors import InputError
from ground.home import datasets_dir

NAME = "emoji36"
SPLIT_SALT = "emoji36-split-v1:"
TEST_FRACTION = 0.2

ZWJ = "\u200d"
_DROPPED = {0xFE0E, 0xFE0F, *range(0x1F3FB, 0x1F400)}  # variation selectors, skin tones
_DROPPED_COMPONENTS = {"\u2640", "\u2642", *map(chr, range(0x1F9B0, 0x1F9B4))}  # gender signs, hair
# Gendered people -> their neutral form, per component of a ZWJ sequence.
_NEUTRAL = {
    "\U0001f468": "\U0001f9d1",
    "\U0001f469": "\U0001f9d1",  # man, woman -> person
    "\U0001f466": "\U0001f9d2",
    "\U0001f467": "\U0001f9d2",  # boy, girl -> child
    "\U0001f474": "\U0001f9d3",
    "\U0001f475": "\U0001f9d3",  # old man, old woman -> older person
    "\U0001f934": "\U0001fac5",
    "\U0001f478": "\U0001fac5",  # prince, princess -> person with crown
    "\U0001fac3": "\U0001fac4",
    "\U0001f930": "\U0001fac4",  # pregnant man, woman -> pregnant person
    "\U0001f57a": "\U0001f483",  # man dancing -> woman dancing (no neutral form exists)
}
# Single emoji that are gendered forms of a ZWJ sequence.
_NEUTRAL_WHOLE = {
    "\U0001f385": "\U0001f9d1\u200d\U0001f384",
    "\U0001f936": "\U0001f9d1\u200d\U0001f384",  # Santa, Mrs Claus
    "\U0001f46b": "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",  # woman and man holding hands
    "\U0001f46c": "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
    "\U0001f46d": "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
    "\U0001f48f": "\U0001f9d1\u200d\u2764\u200d\U0001f48b\u200d\U0001f9d1",  # kiss
    "\U0001f491": "\U0001f9d1\u200d\u2764\u200d\U0001f9d1",  # couple with heart
    "\U0001faf1\u200d\U0001faf2": "\U0001f91d",  # handshake with two skin tones
}


def default_directory() -> Path:
    return datasets_dir() / NAME


def key_of(emoji: str) -> str:
    return "u" + "_".join(f"{ord(c):04x}" for c in emoji if ord(c) not in (0xFE0E, 0xFE0F))


def emoji_of_key(key: str) -> str:
    if not key.startswith("u"):
        raise InputError(f"{key!r} is not an emoji key (expected e.g. u1f431)")
    try:
        return "".join(chr(int(part, 16)) for part in key[1:].split("_"))
    except ValueError as err:
        raise InputError(f"{key!r} is not an emoji key (expected e.g. u1f431)") from err


def base_emoji(emoji: str) -> str:
    """The emoji with skin tone, hair, gender and presentation variants removed (see module docstring)."""
    stripped = "".join(c for c in emoji if ord(c) not in _DROPPED)
    stripped = _NEUTRAL_WHOLE.get(stripped, stripped)
    parts = [_NEUTRAL.get(p, p) for p in stripped.split(ZWJ) if p and p not in _DROPPED_COMPONENTS]
    joined = ZWJ.join(parts) or stripped
    return _NEUTRAL_WHOLE.get(joined, joined)


def split_of(emoji: str, test_fraction: float = TEST_FRACTION) -> str:
    digest = hashlib.sha256((SPLIT_SALT + key_of(base_emoji(emoji))).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def captions_of(annotation: cldr.Annotation) -> list[str]:
    captions = [annotation.name] if annotation.name else []
    if annotation.keywords:
        phrase = WORD_SEPARATOR.join(annotation.keywords)
        if phrase not in captions:
            captions.append(phrase)
    return captions


@dataclass
class BuildSummary:
    directory: Path
    emoji: int
    splits: dict[str, int]  # split -> emoji
    captions: int
    per_language: dict[str, dict[str, dict[str, int]]]  # lang -> split -> {"images", "captions"}
    locales: dict[str, str]  # XM3600 code -> CLDR locale used
    missing_languages: list[str]
    skipped: dict[str, int]  # reason -> how many CLDR emoji strings were left out
    seconds: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)


def _normalise_only(only: Iterable[str]) -> list[str]:
    wanted = []
    for item in only:
        emoji = emoji_of_key(item) if item.isascii() and item.startswith("u") else item
        wanted.append("".join(c for c in emoji if ord(c) not in (0xFE0E, 0xFE0F)))
    return wanted


def build(
    directory: str | Path | None = None,
    *,
    languages: Sequence[str] = LANGUAGES,
    only: Iterable[str] | None = None,
    limit: int | None = None,
    font_path: str | Path | None = None,
    cldr_dir: str | Path | None = None,
    test_fraction: float = TEST_FRACTION,
    progress: bool = False,
) -> BuildSummary:
    """Build Emoji-36 into `directory`. `only` (emoji or keys) and `limit` build a small subset."""
    started = time.perf_counter()
    directory = Path(directory) if directory else default_directory()
    cldr_root = cldr.find_cldr_dir(cldr_dir)
    font = EmojiFont(find_emoji_font(font_path))

    locales, missing, tables = {}, [], {}
    for language in languages:
        locale = cldr.locale_for(language, cldr_root)
        if locale is None:
            missing.append(language)
            continue
        locales[language] = locale
        tables[language] = cldr.annotations(locale, cldr_root)
    if not tables:
        raise InputError(f"none of the languages {', '.join(languages)} has CLDR annotations in {cldr_root}")

    candidates = sorted({cp for table in tables.values() for cp in table}, key=lambda s: [ord(c) for c in s])
    if only is not None:
        wanted = _normalise_only(only)
        known = set(candidates)
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise InputError(f"no CLDR annotation for {', '.join(map(repr, unknown))}")
        candidates = [c for c in candidates if c in set(wanted)]

    skipped = {"text_symbol": 0, "not_one_glyph": 0, "no_bitmap": 0}
    # Glyph -> the emoji it draws; some share one picture (e.g. the flags of Spain and of Ceuta &
    # Melilla): the first in code point order gives the key, all give captions.
    by_glyph: dict[int, list[str]] = {}
    for emoji in candidates:
        if len(emoji) == 1 and ord(emoji) < 0x80:
            skipped["text_symbol"] += 1  # '#', '*', digits: keycap bases, drawn as plain text
            continue
        glyph = font.glyph(emoji)
        if glyph is None:
            skipped["not_one_glyph"] += 1  # not an emoji of this font (punctuation, arrows, ...)
            continue
        if glyph not in by_glyph and limit is not None and len(by_glyph) >= limit:
            continue
        by_glyph.setdefault(glyph, []).append(emoji)

    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines, splits, base_of = [], {"train": [], "test": []}, {}
    per_language = {lang: {s: {"images": 0, "captions": 0} for s in ("train", "test")} for lang in tables}
    n_captions = 0
    for glyph, group in tqdm(by_glyph.items(), desc="emoji", unit="emoji", disable=not progress, leave=False):
        picture = font.picture(glyph)
        if picture is None:
            skipped["no_bitmap"] += len(group)
            continue
        emoji = group[0]
        key = key_of(emoji)
        split = split_of(emoji, test_fraction)
        record: dict = {"image/key": key, "emoji": emoji, "split": split}
        if len(group) > 1:
            record["same_picture"] = group[1:]
        for language, table in tables.items():
            captions = list(dict.fromkeys(c for e in group if e in table for c in captions_of(table[e])))
            if captions:
                record[language] = {"caption": captions}
                per_language[language][split]["images"] += 1
                per_language[language][split]["captions"] += len(captions)
                n_captions += len(captions)
        write_bytes_atomic(images / f"{key}.png", picture)
        lines.append(json.dumps(record, ensure_ascii=False))
        splits[split].append(key)
        base_of[key] = key_of(base_emoji(emoji))

    summary = BuildSummary(
        directory=directory,
        emoji=len(lines),
        splits={s: len(k) for s, k in splits.items()},
        captions=n_captions,
        per_language=per_language,
        locales=locales,
        missing_languages=missing,
        skipped=skipped,
        sources={
            "font": f"{font.path.name} ({font.version})",
            "cldr": f"CLDR {cldr.cldr_version(cldr_root)}",
        },
    )
    write_bytes_atomic(directory / "captions.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    split_doc = {
        "rule": f"sha256('{SPLIT_SALT}' + base key) < {test_fraction} -> test",
        "test_fraction": test_fraction,
        **splits,
        "base_of": base_of,
    }
    write_bytes_atomic(directory / "splits.json", json.dumps(split_doc, indent=1).encode("utf-8"))
    meta = {
        "name": NAME,
        "version": 1,
        "sources": summary.sources,
        "locales": locales,
        "missing_languages": missing,
        "test_fraction": test_fraction,
        "emoji": summary.emoji,
        "subset": only is not None or limit is not None,
    }
    write_bytes_atomic(
        directory / "dataset.json", json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8")
    )
    summary.seconds = time.perf_counter() - started
    write_bytes_atomic(directory / "DATASET.md", dataset_card(summary).encode("utf-8"))
    return summary


def dataset_card(summary: BuildSummary) -> str:
    skipped = ", ".join(f"{reason.replace('_', ' ')}: {n}" for reason, n in summary.skipped.items())
    lines = [
        "# Emoji-36",
        "",
        "A multilingual image<->text retrieval benchmark built offline: the pictures of Noto Color Emoji "
        "and their Unicode CLDR names and keywords in the 36 languages of Crossmodal-3600 (XM3600), in the "
        "XM3600 layout (`captions.jsonl`, `images/<key>.png`).",
        "",
        f"- Sources: {summary.sources.get('font')}; {summary.sources.get('cldr')} annotations and derived "
        "annotations.",
        f"- Emoji: {summary.emoji} (train {summary.splits['train']}, test {summary.splits['test']}); "
        f"captions: {summary.captions}.",
        "- Images: the font's largest colour bitmap of each emoji that it draws as one glyph, centred on "
        "white in a square, as PNG.",
        '- Captions per language: the CLDR short name and the keywords joined by ", " (one caption when '
        "they coincide). An emoji without a CLDR annotation in a language has no captions there. Emoji "
        "that the font draws with the same picture (a few flags) share one image and all their captions.",
        "- Split: by base emoji (skin tones, hair, gender signs, variation selectors removed; man/woman -> "
        "person etc.), sha256 of the base key, ~20% test, so all variants of an emoji share a side.",
        "- Language codes: XM3600 `quz` (Cusco Quechua) uses CLDR `qu` (Quechua); `no` uses CLDR `no` "
        "(older CLDR: `nb`).",
        f"- Languages without CLDR annotations (left out): {', '.join(summary.missing_languages) or 'none'}.",
        f"- CLDR strings left out: {skipped}.",
        "- Licences: Noto Color Emoji, SIL Open Font License 1.1; CLDR data, Unicode License.",
        "",
        "| language | CLDR locale | train images | train captions | test images | test captions |",
        "|---|---|---|---|---|---|",
    ]
    for language, counts in summary.per_language.items():
        tr, te = counts["train"], counts["test"]
        lines.append(
            f"| {language} | {summary.locales[language]} | {tr['images']} | {tr['captions']} | "
            f"{te['images']} | {te['captions']} |"
        )
    return "\n".join(lines) + "\n"
