"""Any text renders: both renderers take arbitrary Unicode (unassigned, private use, controls, lone
surrogates, mixed right-to-left and left-to-right with digits and brackets) and return an image and a
well-formed report, the same in a batch as alone."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rendering import get_renderer
from rendering.base import RenderReport

# Code points of every kind, and the ones bidi and shaping find hardest, drawn often.
HARD = (
    "אבג مرحبا ١٢٣ 0123 ()[]{}<> "
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200d\u0897\u1c89\u0558"
)
CHARACTERS = st.one_of(st.integers(0, 0x10FFFF).map(chr), st.sampled_from(HARD))
TEXTS = st.lists(st.text(CHARACTERS, max_size=60), min_size=1, max_size=4)
RENDERERS = {style: get_renderer(style, image_size=64) for style in ("shaped", "unifont")}


def check_report(report: RenderReport, text: str) -> None:
    info = report.as_dict()
    keys = {"complete", "missing", "truncated", "truncated_chars", "replaced", "lines", "rows_used"}
    assert set(info) == keys and info["truncated_chars"] == len(report.truncated)
    assert 0 <= report.rows_used <= 4 and report.lines >= 0
    drawn = text + unicodedata.normalize("NFC", text)  # the shaped renderer reports what it normalised
    assert all(c in drawn for c in report.missing)  # missing characters are the text's own
    assert all(c in text for c in report.replaced)
    assert info["complete"] == (not (report.missing or report.truncated or report.replaced))
    if report.truncated:  # text is cut only when the canvas is full
        assert report.rows_used == 4


@pytest.mark.parametrize("style", sorted(RENDERERS))
@settings(max_examples=300, deadline=None)
@given(texts=TEXTS)
def test_any_text_renders_alone_and_in_a_batch_alike(style: str, texts: list[str]) -> None:
    renderer = RENDERERS[style]
    images, reports = renderer.render_many(texts)
    assert images.shape == (len(texts), 64, 64, 3) and images.dtype == np.uint8
    for text, image, report in zip(texts, images, reports, strict=True):
        check_report(report, text)
        alone = renderer.render_with_report(text)
        assert np.array_equal(alone.image, image)
        assert alone.report == report


@pytest.mark.parametrize("text", ["\u0897", "\u0558\u05d0", "\u1c89 \u0628", "abc \u0897"])
def test_code_points_newer_than_pythons_tables_render(text: str) -> None:
    # Assigned in newer Unicode than Python's unicodedata knows: the bidi step once failed on them.
    rendering = RENDERERS["shaped"].render_with_report(text)
    assert rendering.image.shape == (64, 64, 3)
