"""Evaluation runs in the database (table `eval_runs`): record, list, fetch and compare them."""

from __future__ import annotations

import importlib.metadata
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, insert, select

from evaluation.metrics import DIRECTIONS
from ground.db import connect, eval_runs
from ground.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy import Row

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunRecord:
    id: int | None  # None for a run that was not stored
    model: str
    dataset: str
    protocol: str
    languages: list[str]
    created_at: datetime
    code_revision: str | None
    metrics: dict  # {"mean": ..., "languages": {lang: retrieval_metrics(...)}, "issues": [...], ...}
    report_dir: str | None

    def recall(self, language: str, direction: str, k: int) -> float | None:
        block = self.metrics["mean"] if language == "mean" else self.metrics["languages"].get(language)
        if not block:
            return None
        return block[direction].get(f"recall@{k}")


def code_revision() -> str:
    """`git rev-parse HEAD` of the source checkout Pixglot runs from, else the package version."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=_SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        if len(top) == 2 and Path(top[0]).resolve() == _SOURCE_ROOT:
            return top[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return f"pixglot {importlib.metadata.version('pixglot')}"


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(row: Row) -> RunRecord:
    return RunRecord(
        id=row.id,
        model=row.model,
        dataset=row.dataset,
        protocol=row.protocol,
        languages=list(row.languages),
        created_at=_as_utc(row.created_at),
        code_revision=row.code_revision,
        metrics=row.metrics,
        report_dir=row.report_dir,
    )


def record_run(
    *,
    model: str,
    dataset: str,
    protocol: str,
    languages: list[str],
    metrics: dict,
    created_at: datetime,
    code_revision: str | None,
    report_dir: str | None,
    engine: Engine | None = None,
) -> int:
    engine = engine or connect()
    with engine.begin() as conn:
        result = conn.execute(
            insert(eval_runs).values(
                model=model,
                dataset=dataset,
                protocol=protocol,
                languages=languages,
                created_at=created_at,
                code_revision=code_revision,
                metrics=metrics,
                report_dir=report_dir,
            )
        )
        return int(result.inserted_primary_key[0])


def delete_run(run_id: int, engine: Engine | None = None) -> None:
    engine = engine or connect()
    with engine.begin() as conn:
        conn.execute(delete(eval_runs).where(eval_runs.c.id == run_id))


def list_runs(dataset: str | None = None, engine: Engine | None = None) -> list[RunRecord]:
    """All runs, oldest first; only those of `dataset` when given."""
    engine = engine or connect()
    query = select(eval_runs).order_by(eval_runs.c.id)
    if dataset is not None:
        query = query.where(eval_runs.c.dataset == dataset)
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(query)]


def get_run(run_id: int, engine: Engine | None = None) -> RunRecord:
    engine = engine or connect()
    with engine.connect() as conn:
        row = conn.execute(select(eval_runs).where(eval_runs.c.id == run_id)).first()
    if row is None:
        raise InputError(f"no evaluation run with id {run_id} (see: pixglot eval list)")
    return _record(row)


def compare_runs(a: RunRecord, b: RunRecord, ks: tuple[int, ...] = (1, 5, 10)) -> list[dict]:
    """One row per language (both runs' languages, then "mean"): each Recall@k of a and b and b - a."""
    languages = sorted(set(a.languages) | set(b.languages)) + ["mean"]
    rows = []
    for language in languages:
        row: dict = {"language": language}
        for direction in DIRECTIONS:
            for k in ks:
                va, vb = a.recall(language, direction, k), b.recall(language, direction, k)
                row[f"{direction}/recall@{k}"] = (va, vb, None if va is None or vb is None else vb - va)
        rows.append(row)
    return rows


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _delta(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}"


def format_comparison(a: RunRecord, b: RunRecord, ks: tuple[int, ...] = (1, 5, 10)) -> str:
    """A Markdown table: Recall@k (in %) of run a -> run b and the change, per language."""
    lines = [
        f"Run {a.id}: {a.model} on {a.dataset}, protocol {a.protocol}, {a.created_at:%Y-%m-%d %H:%M} UTC",
        f"Run {b.id}: {b.model} on {b.dataset}, protocol {b.protocol}, {b.created_at:%Y-%m-%d %H:%M} UTC",
    ]
    if a.dataset != b.dataset or a.protocol != b.protocol:
        lines.append("Warning: the runs differ in dataset or protocol; their numbers are not comparable.")
    short = {"image_to_text": "i→t", "text_to_image": "t→i"}
    header = ["language"] + [f"{short[d]} R@{k}" for d in DIRECTIONS for k in ks]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in compare_runs(a, b, ks):
        cells = [row["language"]]
        for direction in DIRECTIONS:
            for k in ks:
                va, vb, d = row[f"{direction}/recall@{k}"]
                cells.append(f"{_pct(va)} → {_pct(vb)} ({_delta(d)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
