"""The evaluation tab: stored retrieval runs, one run's Recall@k per language, two runs compared."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from app import state
from evaluation.metrics import DIRECTIONS
from evaluation.reports import DIRECTION_LABELS
from evaluation.runs import RunRecord, compare_runs, list_runs
from ground import db

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator


def render(settings: state.Settings) -> None:
    runs = list_runs(engine=db.connect(settings.db_url))
    if not runs:
        st.info(
            "No evaluation runs yet. Evaluate a model, then reload this page:\n\n"
            "`pixglot eval emoji36 --model NAME` or `pixglot eval xm3600 --model NAME`"
        )
        return
    by_id = {run.id: run for run in runs}
    st.dataframe(_runs_table(runs), hide_index=True)

    k = st.selectbox("Recall@k", _ks(runs[-1]), index=0, key="eval_k")

    st.subheader("Per language")
    run = _pick_run(st, "Run", by_id, len(runs) - 1, "eval_run")
    languages = list(run.metrics["languages"])
    chart = {"language": languages}
    for direction in DIRECTIONS:
        chart[DIRECTION_LABELS[direction]] = [_recall(run, lang, direction, k) for lang in languages]
    st.bar_chart(chart, x="language", stack=False, y_label=f"Recall@{k}", sort=False)

    st.subheader("Two runs compared")
    if len(runs) < 2:
        st.caption("Comparing needs two runs.")
        return
    left, right = st.columns(2)
    a = _pick_run(left, "Run A", by_id, len(runs) - 2, "eval_a")
    b = _pick_run(right, "Run B", by_id, len(runs) - 1, "eval_b")
    if a.dataset != b.dataset or a.protocol != b.protocol:
        st.warning("These runs differ in dataset or protocol; their numbers are not comparable.")
    direction = st.radio(
        "Direction", DIRECTIONS, format_func=DIRECTION_LABELS.get, horizontal=True, key="eval_direction"
    )
    rows = compare_runs(a, b, ks=(k,))
    column = f"{direction}/recall@{k}"
    names = (f"A #{a.id}", f"B #{b.id}")
    st.bar_chart(
        {
            "language": [row["language"] for row in rows],
            names[0]: [row[column][0] or 0.0 for row in rows],
            names[1]: [row[column][1] or 0.0 for row in rows],
        },
        x="language",
        stack=False,
        y_label=f"{DIRECTION_LABELS[direction]} R@{k}",
        sort=False,
    )
    st.dataframe(
        [
            {
                "language": row["language"],
                names[0]: _pct(row[column][0]),
                names[1]: _pct(row[column][1]),
                "change (points)": None if row[column][2] is None else round(100 * row[column][2], 1),
            }
            for row in rows
        ],
        hide_index=True,
    )


def _pick_run(
    where: DeltaGenerator, label: str, by_id: dict[int, RunRecord], index: int, key: str
) -> RunRecord:
    """A selectbox of the runs in `where` (the page or a column)."""
    ids = list(by_id)
    return by_id[where.selectbox(label, ids, index=index, format_func=lambda i: _label(by_id[i]), key=key)]


def _ks(run: RunRecord) -> list[int]:
    return sorted(int(name.split("@")[1]) for name in run.metrics["mean"][DIRECTIONS[0]])


def _recall(run: RunRecord, language: str, direction: str, k: int) -> float:
    return run.recall(language, direction, k) or 0.0


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _label(run: RunRecord) -> str:
    return f"#{run.id} · {run.model} on {run.dataset} ({run.protocol}, {run.created_at:%Y-%m-%d %H:%M})"


def _runs_table(runs: list[RunRecord]) -> list[dict]:
    rows = []
    for run in reversed(runs):
        row = {
            "run": run.id,
            "date (UTC)": f"{run.created_at:%Y-%m-%d %H:%M}",
            "model": run.model,
            "dataset": run.dataset,
            "protocol": run.protocol,
            "languages": len(run.languages),
        }
        for direction in DIRECTIONS:
            for k in _ks(run):
                row[f"{DIRECTION_LABELS[direction]} R@{k} %"] = _pct(run.recall("mean", direction, k))
        rows.append(row)
    return rows
