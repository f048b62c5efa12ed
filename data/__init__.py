"""Datasets: Crossmodal-3600, the offline Emoji-36 benchmark, COCO-35L, CC3M-35L, training shards. A
dataset knows nothing about models (the `evaluation` package measures models on them).

- `data.xm3600`: download and unpack Crossmodal-3600 (resumable, safe unpacking).
- `data.captions`: the loader of the XM3600 layout (`captions.jsonl` + `images/<key>.jpg|png`) that
  both benchmarks share, with every bad line, image or language counted and reported.
- `data.emoji36`: the Emoji-36 benchmark, built offline from Noto Color Emoji and CLDR annotations.
- `data.shards`: training shards (Parquet) from a captions dataset.
- `data.translated_captions`: COCO-35L and CC3M-35L, the authors' machine translations of the COCO
  and CC3M captions: download, and parsing into caption shards (key, text, language, source).
- `data.coco35l`, `data.cc3m35l`: their training shards, over the user's COCO images or over CC3M
  images fetched from the web (`data.web_images`), grouped by image (`data.pair_shards`).
- `data.picture_names`: what people call a dataset's pictures (an emoji's CLDR name).
"""
