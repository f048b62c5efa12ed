"""How far could a model trained on Emoji-36's train split get on its test split? A vocabulary oracle.

    python bench/emoji36_ceiling.py EMOJI36_DIR [--protocol all|first]

The held-out test emoji were never seen in any form, so a query can only be answered through
what it shares with the training data. The oracle is a perfect reader of the test pictures: it
knows every word of each test emoji's own captions (names and keywords), as if it recognised
every concept drawn. But of the query it may use only the words that occur in the training
captions of the same language; a word never seen in training carries nothing that a model
trained from scratch could have learnt. It ranks the test pictures by the summed IDF of the
seen query words they share and breaks ties at random, and reports the expected text->image
Recall@k per language, like `pixglot eval emoji36 --split test`.

It is generous (the picture side is perfect, and a shared word like "animal" counts even when
nothing in the picture shows it), so it is an upper bound for the held-out numbers of
data/assets/models/demo/EVAL.md, not a prediction of them. Words are whitespace-separated
letters, marks and digits; Chinese, Japanese and Thai, written without spaces, are read as
characters and character pairs.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.captions import CaptionDataset, load
from evaluation.metrics import CAPTION_PROTOCOLS

KS = (1, 5, 10)
UNSPACED = {"ja", "th", "zh"}


def units(text: str, language: str) -> set[str]:
    """The words of `text` (characters and character pairs for unspaced scripts), lower-cased."""
    keep = "".join(c if unicodedata.category(c)[0] in "LMN" else " " for c in text.lower())
    if language not in UNSPACED:
        return set(keep.split())
    chars = [c for word in keep.split() for c in word]
    return set(chars) | {a + b for a, b in zip(chars, chars[1:], strict=False)}


def expected_recall(scores: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...] = KS) -> np.ndarray:
    """Mean over query rows of the chance that the relevant column is in the top k, ties random."""
    own = scores[np.arange(len(scores)), relevant][:, None]
    above = (scores > own).sum(axis=1)[:, None]
    level = (scores == own).sum(axis=1)[:, None]
    return np.clip((np.array(ks)[None, :] - above) / level, 0.0, 1.0).mean(axis=0)


def oracle_recall(train: CaptionDataset, test: CaptionDataset, language: str, protocol: str) -> np.ndarray:
    seen = set().union(*(units(c, language) for cs in train.captions[language].values() for c in cs))
    images = sorted(test.captions[language])
    image_units = [set().union(*(units(c, language) for c in test.captions[language][i])) for i in images]
    vocabulary = sorted(set().union(*image_units))
    column = {u: j for j, u in enumerate(vocabulary)}
    incidence = np.zeros((len(images), len(vocabulary)))
    for row, image_words in enumerate(image_units):
        incidence[row, [column[u] for u in image_words]] = 1.0
    idf = np.log(len(images) / incidence.sum(axis=0))
    texts, owners = test.pairs(language, protocol)
    queries = np.zeros((len(texts), len(vocabulary)))
    for row, text in enumerate(texts):
        queries[row, [column[u] for u in units(text, language) & seen if u in column]] = 1.0
    position = {image: row for row, image in enumerate(images)}
    return expected_recall(queries @ (incidence * idf).T, np.array([position[o] for o in owners]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("emoji36", type=Path, help="a built Emoji-36 directory (pixglot data emoji36 build)")
    parser.add_argument(
        "--protocol",
        choices=CAPTION_PROTOCOLS,
        default="all",
        help="every caption a query (all), or each emoji's name only (first)",
    )
    args = parser.parse_args()
    train, test = load(args.emoji36, split="train"), load(args.emoji36, split="test")
    recall = {lang: oracle_recall(train, test, lang, args.protocol) for lang in test.languages}
    print(f"Vocabulary oracle, {len(test.keys)} test emoji, protocol {args.protocol!r}: text->image R@k, %")
    print("| language | " + " | ".join(f"R@{k}" for k in KS) + " |")
    print("| --- |" + " ---: |" * len(KS))
    for lang, values in sorted(recall.items(), key=lambda item: item[1][1]):
        print(f"| {lang} | " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    mean = np.mean(list(recall.values()), axis=0)
    print("| **mean** | " + " | ".join(f"**{100 * v:.1f}**" for v in mean) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
