"""The rendered-text cache: cached pixels are a fresh render's, and a changed renderer never reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rendering
from ground.errors import FileFormatError
from rendering import fontstack, text_cache
from rendering.text_cache import TextCache, cache_key

SHAPED = {"style": "shaped", "image_size": 64, "patch_size": 16}
UNIFONT = {"style": "unifont", "image_size": 64, "patch_size": 16}
# Letters, marks, digits, punctuation, symbols and spaces of Python's Unicode tables, RTL and emoji
# included. (Code points Python's tables leave unassigned can crash the shaped renderer's bidi step:
# a renderer bug of its own, not the cache's.)
TEXT = st.text(st.characters(categories=("L", "M", "N", "P", "S", "Zs")), max_size=40)
SAMPLES = ["a cat", "кошка", "猫", "قطة سوداء", "बिल्ली", "gato 🐈", "", " ", "a " * 60]


def fresh(config: dict, texts: list[str], trim: bool = True) -> list[np.ndarray]:
    renderer = rendering.renderer_from_config(config)
    return [image for image, _ in renderer.render_for_model(texts, trim)]


def assert_equal_to_fresh(
    cached: text_cache.RenderedTexts, config: dict, texts: list[str], trim: bool
) -> None:
    assert len(cached) == len(texts)
    for i, expected in enumerate(fresh(config, texts, trim)):
        assert np.array_equal(cached.image(i), expected), texts[i]


@pytest.mark.parametrize("config", [SHAPED, UNIFONT], ids=["shaped", "unifont"])
@pytest.mark.parametrize("trim", [True, False])
def test_cached_texts_are_what_the_renderer_draws(config: dict, trim: bool) -> None:
    cache = TextCache(config, trim)
    assert_equal_to_fresh(cache.get(SAMPLES), config, SAMPLES, trim)
    again = cache.get([SAMPLES[3], SAMPLES[0], SAMPLES[3]])  # read back from disk, in the order asked
    assert_equal_to_fresh(again, config, [SAMPLES[3], SAMPLES[0], SAMPLES[3]], trim)
    assert len(list(cache.directory.glob("*.parquet"))) == 1  # nothing was drawn twice


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TEXT, min_size=1, max_size=6))
def test_any_texts_read_back_pixel_for_pixel(texts: list[str]) -> None:
    for config in (SHAPED, UNIFONT):
        assert_equal_to_fresh(TextCache(config, True).get(texts), config, texts, True)


def test_texts_from_several_segments_are_gathered_in_order() -> None:
    cache = TextCache(SHAPED, True)
    cache.get(SAMPLES[:4])
    mixed = [SAMPLES[5], SAMPLES[1], "new text", SAMPLES[0]]
    assert_equal_to_fresh(cache.get(mixed), SHAPED, mixed, True)
    assert len(list(cache.directory.glob("*.parquet"))) == 2
    assert np.array_equal(cache.get(mixed).rows[0], cache.get(SAMPLES[:1]).rows[0])  # row 0: blank


def test_worker_processes_draw_what_the_process_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_cache, "_CHUNK", 3)
    monkeypatch.setattr(text_cache, "_MIN_TEXTS_FOR_WORKERS", 4)
    monkeypatch.setattr(text_cache, "available_cores", lambda: 2)
    texts = [f"{word} {i}" for i, word in enumerate(SAMPLES * 2)]
    assert_equal_to_fresh(TextCache(SHAPED, True).get(texts), SHAPED, texts, True)


def test_the_key_covers_config_trimming_and_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shaped = rendering.renderer_from_config(SHAPED)
    key = cache_key(shaped, True)
    assert key == cache_key(rendering.renderer_from_config(dict(SHAPED)), True)
    assert cache_key(shaped, False) != key
    assert cache_key(rendering.renderer_from_config({**SHAPED, "font_size": 10}), True) != key
    assert cache_key(rendering.renderer_from_config({**SHAPED, "image_size": 48}), True) != key
    assert cache_key(rendering.renderer_from_config(UNIFONT), True) != key
    code = tmp_path / "rendering"
    shutil.copytree(Path(rendering.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(text_cache, "_CODE", code)
    assert cache_key(shaped, True) == key
    layout = code / "shaped.py"
    layout.write_text(layout.read_text() + "\n# a change to the layout code\n")
    assert cache_key(shaped, True) != key


def test_a_changed_font_file_never_reads_the_old_pixels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    latin = next(f.path for f in fontstack.default_stack().fonts if f.id == "latin")
    shutil.copy(latin, fonts / latin.name)
    monkeypatch.setenv(fontstack.FONT_PATH_ENV, str(fonts))
    # The font path is read once per process: start from fresh renderers that read the copy.
    fontstack.default_stack.cache_clear()
    rendering._shared.cache_clear()
    try:
        before = TextCache(SHAPED, True)
        before.get(["a cat"])
        with open(fonts / latin.name, "ab") as f:
            f.write(b"\0")  # trailing bytes: the font still loads, its file is no longer the same
        after = TextCache(SHAPED, True)
        assert after.directory != before.directory and not list(after.directory.glob("*"))
        after.get(["a cat"])
        assert len(list(after.directory.glob("*.parquet"))) == 1
    finally:
        fontstack.default_stack.cache_clear()
        rendering._shared.cache_clear()


def test_an_unfinished_segment_is_ignored_and_a_damaged_one_named() -> None:
    cache = TextCache(SHAPED, True)
    (cache.directory / "unfinished.rows").write_bytes(b"\0" * 100)  # killed before its index was written
    assert_equal_to_fresh(cache.get(SAMPLES[:2]), SHAPED, SAMPLES[:2], True)
    index = next(cache.directory.glob("*.parquet"))
    index.write_bytes(b"not parquet")
    with pytest.raises(FileFormatError, match=rf"{index.name}: damaged rendered-text cache segment"):
        cache.get(SAMPLES[:2])
