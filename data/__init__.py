"""Evaluation data and metrics: Crossmodal-3600, the offline Emoji-36 benchmark, retrieval metrics, reports.

- `data.xm3600`: download and unpack Crossmodal-3600 (resumable, safe unpacking).
- `data.captions`: the loader of the XM3600 layout (`captions.jsonl` + `images/<key>.jpg|png`) that
  both benchmarks share, with every bad line, image or language counted and reported.
- `data.metrics`: image->text and text->image Recall@k with big_vision's protocol (no model needed).
- `data.evaluation`: a model on a captions dataset -> per-language metrics, cached embeddings,
  Parquet/Markdown/HTML reports and an `eval_runs` row in the database.
- `data.emoji36`: the Emoji-36 benchmark, built offline from Noto Color Emoji and CLDR annotations.
"""
