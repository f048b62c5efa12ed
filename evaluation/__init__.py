"""Retrieval evaluation: how well a model finds captions' images and images' captions.

It stands above the model (it encodes with one) and the datasets (it reads them).
- `evaluation.metrics`: image->text and text->image Recall@k with big_vision's protocol (no model needed).
- `evaluation.retrieval`: a model on a captions dataset -> per-language metrics, cached embeddings,
  Parquet/Markdown/HTML reports and an `eval_runs` row in the database.
- `evaluation.reports`, `evaluation.runs`, `evaluation.embedding_cache`: those reports, the stored
  runs and their comparison, the embeddings cache.
"""
