"""Retrieval evaluation of a model on a captions dataset in the XM3600 layout (XM3600, Emoji-36).

For each language: the images that have captions in it and could be decoded, all of their captions
(or the first, with protocol "first"), and `evaluation.metrics.retrieval_metrics`. The run goes to the
database (`eval_runs`) and to a report directory (results.parquet, report.md, report.html).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine

from data import captions as captions_io
from data.captions import CaptionDataset, Issue
from evaluation.embedding_cache import cached_metrics, image_embeddings, text_embeddings
from evaluation.metrics import (
    DEFAULT_KS,
    PROTOCOLS,
    TIE_RULE,
    mean_over_languages,
    retrieval_metrics,
    word_retrieval_metrics,
)
from evaluation.reports import write_reports
from evaluation.runs import RunRecord, code_revision, delete_run, list_runs, record_run
from ground.db import connect
from ground.errors import InputError, PixglotError
from ground.home import subdir

if TYPE_CHECKING:
    from model import Encoder
    from model.encoder import EncodedImages

_STORED_ISSUES = 1000  # issues kept in the database row; the count is always exact


class DataIssuesError(PixglotError):
    """Strict mode: the data has problems, so no metrics are produced."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        shown = "; ".join(str(i) for i in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"{len(self.issues)} data issue(s) and strict mode is on: {shown}{more}")


@dataclass
class Evaluation:
    run: RunRecord
    issues: list[Issue]
    reports: dict[str, Path] = field(default_factory=dict)


def resolve_model(model_or_name: Encoder | str | Path) -> Encoder:
    if isinstance(model_or_name, str | Path):
        return importlib.import_module("model").load(str(model_or_name))
    return model_or_name


def data_fingerprint(dataset: CaptionDataset) -> str:
    h = hashlib.sha256()
    with open(dataset.root / captions_io.CAPTIONS_FILE, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    h.update(f"\0split={dataset.split}".encode())
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def _report_dir(out_dir: str | Path | None, dataset: str, model: str, now: datetime) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    base = subdir("evals") / f"{now:%Y%m%d-%H%M%S}-{_slug(dataset)}-{_slug(model)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def evaluate_retrieval(
    data: str | Path | CaptionDataset,
    model: Encoder | str | Path,
    *,
    languages: Sequence[str] | None = None,
    protocol: str = "all",
    split: str | None = None,
    strict: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    out_dir: str | Path | None = None,
    engine: Engine | None = None,
    record: bool = True,
    reports: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> Evaluation:
    """Evaluate image<->text retrieval per language; store the run and write its reports.

    Data issues (bad lines, missing or undecodable images, unknown languages, empty caption lists)
    are counted, listed in the reports and the run, and left out of the metrics; with `strict`
    they raise DataIssuesError instead.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dataset = data if isinstance(data, CaptionDataset) else captions_io.load(data, languages, split)
    issues = list(dataset.issues)
    if strict and issues:
        raise DataIssuesError(issues)
    if not dataset.languages:
        raise InputError(
            f"{dataset.root}: no language to evaluate ({'; '.join(map(str, issues[-3:])) or 'no captions'})"
        )
    encoder = resolve_model(model)
    timings["load_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    encoded = image_embeddings(encoder, dataset.image_paths, batch_size=batch_size, progress=progress)
    for index, reason in encoded.failures:
        issues.append(
            Issue("bad_image", f"image {dataset.keys[index]!r}", f"cannot be used: {reason}; left out")
        )
    if strict and encoded.failures:
        raise DataIssuesError(issues)
    row_of_image = {image: row for row, image in enumerate(encoded.ok)}
    timings["image_seconds"] = time.perf_counter() - t0

    per_language: dict[str, dict] = {}
    timings["text_seconds"] = timings["metric_seconds"] = 0.0
    for language in dataset.languages:
        scored = _language_metrics(
            encoder, dataset, language, protocol, encoded, row_of_image, batch_size, ks, timings
        )
        if scored is None:
            what = "word lists" if protocol == "words" else "captions"
            issues.append(
                Issue("no_images", f"language {language!r}", f"no usable image has {what}; skipped")
            )
        else:
            per_language[language] = scored
    if not per_language:
        raise PixglotError(
            f"{dataset.root}: nothing left to evaluate; issues: {'; '.join(map(str, issues[:5]))}"
        )

    now = datetime.now(UTC)
    metrics = {
        "mean": mean_over_languages(per_language),
        "languages": per_language,
        "tie_rule": TIE_RULE,
        "model_fingerprint": encoder.fingerprint,
        "data_fingerprint": data_fingerprint(dataset),
        "n_issues": len(issues),
        "issue_counts": {
            kind: sum(i.kind == kind for i in issues) for kind in sorted({i.kind for i in issues})
        },
        "issues": [str(i) for i in issues[:_STORED_ISSUES]],
        "timings": {name: round(seconds, 3) for name, seconds in timings.items()},
    }
    report_dir = _report_dir(out_dir, dataset.name, encoder.name, now) if reports else None
    run = RunRecord(
        id=None,
        model=encoder.name,
        dataset=dataset.name,
        protocol=protocol,
        languages=list(per_language),
        created_at=now,
        code_revision=code_revision(),
        metrics=metrics,
        report_dir=str(report_dir) if report_dir else None,
    )
    written = _store(run, record, engine, report_dir)
    return Evaluation(run=run, issues=issues, reports=written)


def _language_metrics(
    encoder: Encoder,
    dataset: CaptionDataset,
    language: str,
    protocol: str,
    encoded: EncodedImages,
    row_of_image: dict[int, int],
    batch_size: int,
    ks: Sequence[int],
    timings: dict[str, float],
) -> dict | None:
    """Recall@k of one language (None when no usable image has its captions), its time added to
    `timings`."""
    t0 = time.perf_counter()
    if protocol == "words":
        texts, pair_text, pair_image = dataset.word_queries(language, images=row_of_image)
        images = sorted(i for i in dataset.captions[language] if i in row_of_image)
    else:
        texts, owners = dataset.pairs(language, protocol, images=row_of_image)
        images = sorted(set(owners))
    if not texts:
        return None
    text_vectors = text_embeddings(encoder, texts, batch_size=batch_size)
    timings["text_seconds"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    local = {image: i for i, image in enumerate(images)}
    image_vectors = encoded.vectors[[row_of_image[i] for i in images]]
    if protocol == "words":
        relevant = np.array(pair_text, np.int64), np.array([local[i] for i in pair_image], np.int64)
        scored = cached_metrics(word_retrieval_metrics, image_vectors, text_vectors, *relevant, ks=list(ks))
    else:
        text_image = np.array([local[o] for o in owners], dtype=np.int64)
        scored = cached_metrics(
            retrieval_metrics, image_vectors, text_vectors, text_image, ks=list(ks), protocol=protocol
        )
    timings["metric_seconds"] += time.perf_counter() - t0
    return scored


def _store(run: RunRecord, record: bool, engine: Engine | None, report_dir: Path | None) -> dict[str, Path]:
    """The run recorded in the database (its id set) and its reports written; a run whose reports
    could not be written is taken out of the database again."""
    earlier: list[RunRecord] = []
    if record:
        engine = engine or connect()
        earlier = list_runs(run.dataset, engine=engine)
        run.id = record_run(
            model=run.model,
            dataset=run.dataset,
            protocol=run.protocol,
            languages=run.languages,
            metrics=run.metrics,
            created_at=run.created_at,
            code_revision=run.code_revision,
            report_dir=run.report_dir,
            engine=engine,
        )
    if report_dir is None:
        return {}
    try:
        return write_reports(run, report_dir, earlier[-10:])
    except BaseException:
        if run.id is not None:
            delete_run(run.id, engine=engine)  # no run in the database whose reports are missing
        raise
