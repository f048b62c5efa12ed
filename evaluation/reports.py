"""Reports of an evaluation run: a Parquet table, a Markdown summary and a self-contained HTML page.

Everything is built from a `RunRecord` (what the database stores), so a report can be rebuilt from
the database alone. The HTML has no external resources: styles inline, charts as inline SVG.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.metrics import DIRECTIONS, PROTOCOL_DESCRIPTIONS, TIE_RULE_DESCRIPTION
from evaluation.runs import RunRecord
from ground.atomic import write_atomic, write_bytes_atomic

DIRECTION_LABELS = {"image_to_text": "image → text", "text_to_image": "text → image"}
_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_MAX_LISTED_ISSUES = 200


def _ks(run: RunRecord) -> list[int]:
    return [int(name.split("@")[1]) for name in run.metrics["mean"]["image_to_text"]]


def result_rows(run: RunRecord) -> list[dict]:
    """One row per language (and "mean"), direction and k."""
    rows = []
    blocks = dict(run.metrics["languages"])
    blocks["mean"] = run.metrics["mean"]
    for language, block in blocks.items():
        for direction in DIRECTIONS:
            for k in _ks(run):
                name = f"recall@{k}"
                rows.append(
                    {
                        "run_id": run.id,
                        "dataset": run.dataset,
                        "model": run.model,
                        "protocol": run.protocol,
                        "tie_rule": run.metrics["tie_rule"],
                        "language": language,
                        "direction": direction,
                        "k": k,
                        "recall": block[direction][name],
                        "recall_optimistic": block["optimistic"][direction][name],
                        "n_images": block.get("n_images"),
                        "n_texts": block.get("n_texts"),
                    }
                )
    return rows


_SCHEMA = pa.schema(
    [
        ("run_id", pa.int64()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("protocol", pa.string()),
        ("tie_rule", pa.string()),
        ("language", pa.string()),
        ("direction", pa.string()),
        ("k", pa.int32()),
        ("recall", pa.float64()),
        ("recall_optimistic", pa.float64()),
        ("n_images", pa.int64()),
        ("n_texts", pa.int64()),
    ]
)


def write_parquet(run: RunRecord, path: Path) -> None:
    table = pa.Table.from_pylist(result_rows(run), schema=_SCHEMA)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _title(run: RunRecord) -> str:
    return f"{run.model} on {run.dataset}"


def _facts(run: RunRecord) -> list[tuple[str, str]]:
    m = run.metrics
    return [
        ("Run", "not stored" if run.id is None else str(run.id)),
        ("Model", f"{run.model} (weights {m.get('model_fingerprint', '?')[:16]})"),
        ("Dataset", f"{run.dataset} (data {m.get('data_fingerprint', '?')[:16]})"),
        ("Protocol", PROTOCOL_DESCRIPTIONS[run.protocol]),
        ("Ties", TIE_RULE_DESCRIPTION),
        ("Mean", "unweighted mean over languages"),
        ("Date", f"{run.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("Code revision", run.code_revision or "unknown"),
        ("Data issues", str(m.get("n_issues", 0))),
    ]


def _table_rows(run: RunRecord) -> tuple[list[str], list[list[str]]]:
    ks = _ks(run)
    header = ["language", "images", "captions"] + [
        f"{DIRECTION_LABELS[d]} R@{k}" for d in DIRECTIONS for k in ks
    ]
    body = []
    blocks = list(run.metrics["languages"].items()) + [("mean", run.metrics["mean"])]
    for language, block in blocks:
        cells = [language, str(block.get("n_images", "")), str(block.get("n_texts", ""))]
        cells += [_pct(block[d][f"recall@{k}"]) for d in DIRECTIONS for k in ks]
        body.append(cells)
    chance = run.metrics["mean"].get("chance")
    if chance:  # protocol "words": what a random ranking would reach, word by word
        body.append(
            ["chance (mean)", "", ""] + [_pct(chance[d][f"recall@{k}"]) for d in DIRECTIONS for k in ks]
        )
    return header, body


def markdown_report(run: RunRecord) -> str:
    header, body = _table_rows(run)
    lines = [f"# Retrieval: {_title(run)}", ""]
    lines += [f"- **{name}**: {value}" for name, value in _facts(run)]
    lines += ["", "Recall@k in %.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    issues = run.metrics.get("issues", [])
    if issues:
        lines += ["", f"## Data issues ({run.metrics.get('n_issues', len(issues))})", ""]
        lines += [f"- {issue}" for issue in issues[:_MAX_LISTED_ISSUES]]
        if run.metrics.get("n_issues", len(issues)) > _MAX_LISTED_ISSUES:
            lines.append(f"- … {run.metrics['n_issues'] - _MAX_LISTED_ISSUES} more")
    return "\n".join(lines) + "\n"


def svg_bar_chart(categories: Sequence[str], series: dict[str, Sequence[float]], title: str) -> str:
    """Grouped bars of values in [0, 1] (shown in %), one group per category, one colour per series.

    The axis ends at the smallest of 1%, 5%, 10%, 25%, 50%, 100% that holds every value, so the weak
    recalls of an early model remain visible; the axis labels say which.
    """
    n_series = max(1, len(series))
    peak = max((float(v) for values in series.values() for v in values), default=0.0)
    scale = next(s for s in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0) if peak <= s or s == 1.0)
    bar, gap, left, top, plot_h, bottom = 9, 8, 44, 28, 180, 56
    group = n_series * bar + gap
    width = left + max(1, len(categories)) * group + 16
    height = top + plot_h + bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for quarter in range(5):
        y = top + plot_h - plot_h * quarter / 4
        out.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{100 * scale * quarter / 4:g}%"
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>')
    for c, category in enumerate(categories):
        x0 = left + c * group + gap / 2
        for s, (name, values) in enumerate(series.items()):
            h = plot_h * min(1.0, max(0.0, float(values[c]) / scale))
            x = x0 + s * bar
            colour = _SERIES_COLOURS[s % len(_SERIES_COLOURS)]
            label = html.escape(f"{category} {name}: {100 * float(values[c]):.1f}%")
            out.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1}" height="{h:.1f}" '
                f'fill="{colour}"><title>{label}</title></rect>'
            )
        cx, cy = x0 + n_series * bar / 2, top + plot_h + 10
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" text-anchor="end" '
            f'transform="rotate(-60 {cx:.1f} {cy:.1f})">{html.escape(category)}</text>'
        )
    lx = left
    for s, name in enumerate(series):
        colour = _SERIES_COLOURS[s % len(_SERIES_COLOURS)]
        out.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{height - 3}" font-size="11">{html.escape(name)}</text>')
        lx += 14 + 8 * len(name) + 16
    out.append("</svg>")
    return "\n".join(out)


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _comparison_section(run: RunRecord, earlier: Sequence[RunRecord]) -> str:
    if not earlier:
        return f"<p>No earlier runs on {html.escape(run.dataset)}.</p>"
    ks = _ks(run)
    runs = [*earlier, run]
    header = ["run", "date", "model", "protocol"] + [
        f"{DIRECTION_LABELS[d]} R@{k}" for d in DIRECTIONS for k in ks
    ]
    body = []
    for r in runs:
        cells = [
            str(r.id) if r.id is not None else "this",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            r.model,
            r.protocol,
        ]
        cells += [_pct(r.recall("mean", d, k)) for d in DIRECTIONS for k in ks]
        body.append(cells)
    labels = [f"#{r.id} {r.model}" if r is not run else f"#{r.id} (this) {r.model}" for r in runs]
    k = ks[0]
    chart = svg_bar_chart(
        labels,
        {f"{DIRECTION_LABELS[d]} R@{k}": [r.recall("mean", d, k) or 0.0 for r in runs] for d in DIRECTIONS},
        f"Mean Recall@{k} of runs on {run.dataset}",
    )
    note = (
        ""
        if all(r.protocol == run.protocol for r in earlier)
        else ("<p class=warn>Some earlier runs used another protocol; compare like with like.</p>")
    )
    return note + _html_table(header, body) + f'<div class="chart">{chart}</div>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
dt { font-weight: bold; float: left; clear: left; width: 9em; }
dd { margin-left: 10em; margin-bottom: .3em; }
.chart { overflow-x: auto; margin: 1em 0; }
.warn { color: #a40; }
"""


def html_report(run: RunRecord, earlier: Sequence[RunRecord] = ()) -> str:
    ks = _ks(run)
    languages = list(run.metrics["languages"])
    facts = "".join(f"<dt>{html.escape(n)}</dt><dd>{html.escape(v)}</dd>" for n, v in _facts(run))
    charts = "".join(
        '<div class="chart">'
        + svg_bar_chart(
            languages,
            {f"R@{k}": [run.metrics["languages"][lang][d][f"recall@{k}"] for lang in languages] for k in ks},
            f"{DIRECTION_LABELS[d]}: Recall@k per language",
        )
        + "</div>"
        for d in DIRECTIONS
    )
    header, body = _table_rows(run)
    issues = run.metrics.get("issues", [])
    issue_html = ""
    if issues:
        items = "".join(f"<li>{html.escape(str(i))}</li>" for i in issues[:_MAX_LISTED_ISSUES])
        issue_html = f"<h2>Data issues ({run.metrics.get('n_issues', len(issues))})</h2><ul>{items}</ul>"
    title = html.escape(f"Retrieval: {_title(run)}")
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1><dl>{facts}</dl>"
        f"<h2>Per language</h2>{charts}{_html_table(header, body)}"
        f"<h2>Earlier runs on {html.escape(run.dataset)}</h2>{_comparison_section(run, earlier)}"
        f"{issue_html}</body></html>\n"
    )


def write_reports(run: RunRecord, directory: Path, earlier: Sequence[RunRecord] = ()) -> dict[str, Path]:
    """results.parquet, report.md and report.html in `directory`; returns their paths by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": directory / "results.parquet",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
    }
    write_parquet(run, paths["parquet"])
    write_bytes_atomic(paths["markdown"], markdown_report(run).encode("utf-8"))
    write_bytes_atomic(paths["html"], html_report(run, earlier).encode("utf-8"))
    return paths
