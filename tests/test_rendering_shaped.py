"""The shaped renderer: properties that fail when shaping, bidi, fallback or wrapping are off."""

from __future__ import annotations

import unicodedata
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rendering import get_renderer
from rendering.fontstack import default_stack
from rendering.shaped import ShapedRenderer
from rendering.text import bidi_levels, graphemes, normalize, normalize_many, reorder_runs

BACKGROUND = 255


@pytest.fixture(scope="module")
def renderer() -> ShapedRenderer:
    return get_renderer("shaped")


def font_id(index: int) -> str:
    return default_stack().fonts[index].id


def line_glyphs(
    renderer: ShapedRenderer, text: str, language: str | None = None
) -> list[tuple[int, int, int]]:
    layout = renderer.layout(text, language)
    assert len(layout.lines) == 1, f"{text!r} should fit one line"
    return layout.glyphs(0)


def ink_rows(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero((image[:, :, 0] < BACKGROUND).any(axis=1))


def ink_columns(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero((image[:, :, 0] < BACKGROUND).any(axis=0))


# -- shaping -------------------------------------------------------------------------------------


def test_arabic_letters_take_joined_forms(renderer):
    word = "بيت"
    joined = {gid for _, _, gid in line_glyphs(renderer, word)}
    isolated = {line_glyphs(renderer, letter)[0][2] for letter in word}
    assert joined.isdisjoint(isolated), "every letter of a joined word has a contextual form"
    assert {font_id(f) for _, f, _ in line_glyphs(renderer, word)} == {"arabic"}


def test_lam_alef_is_one_ligature(renderer):
    glyphs = line_glyphs(renderer, "لا")
    assert len(glyphs) == 1
    assert glyphs[0][2] not in {line_glyphs(renderer, c)[0][2] for c in "لا"}


def test_persian_uses_arabic_shaping(renderer):
    word = "فارسی"
    joined = [gid for _, _, gid in line_glyphs(renderer, word)]
    isolated = [line_glyphs(renderer, c)[0][2] for c in word]
    assert sorted(joined) != sorted(isolated)
    assert line_glyphs(renderer, "ی")[0][2] != line_glyphs(renderer, "ي")[0][2]  # Farsi yeh is its own letter


def test_hebrew_reads_right_to_left_and_digits_keep_their_order(renderer):
    text = "שלום 123"
    clusters = [c for c, _, _ in line_glyphs(renderer, text)]
    # Visual order, left to right: the number first (in its own order), then the word reversed.
    assert clusters == [5, 6, 7, 4, 3, 2, 1, 0]
    image = renderer.render(text)
    assert ink_columns(image).max() >= 218, "a right-to-left paragraph is right-aligned"


def test_mixed_left_to_right_paragraph_with_embedded_hebrew(renderer):
    text = "abc שלום def"
    clusters = [c for c, _, _ in line_glyphs(renderer, text)]
    assert clusters == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert ink_columns(renderer.render(text)).min() <= 2, "a left-to-right paragraph is left-aligned"


def darkness_profile(image: np.ndarray) -> np.ndarray:
    """Ink per column, from the first inked column to the last."""
    ink = (BACKGROUND - image[:, :, 0].astype(np.int64)).sum(axis=0)
    columns = np.flatnonzero(ink)
    return ink[columns[0] : columns[-1] + 1]


def test_an_all_right_to_left_line_draws_its_first_word_rightmost(renderer):
    # Three runs (Arabic, emoji, Arabic), all right to left: drawn in reverse logical order.
    text = "مرحبا 🐱 بالعالم"
    clusters = [c for c, _, _ in line_glyphs(renderer, text)]
    assert clusters == sorted(clusters, reverse=True)
    # In the pixels: a right-to-left paragraph is right-aligned, so its right end is exactly the first
    # word drawn alone, and not the last.
    line = darkness_profile(renderer.render(text))
    first, last = (darkness_profile(renderer.render(word)) for word in ("مرحبا", "بالعالم"))
    assert np.array_equal(line[-len(first) :], first)
    assert not np.array_equal(line[-len(last) :], last)
    assert not np.array_equal(line[: len(first)], first)


def test_a_right_to_left_stretch_of_several_runs_in_a_left_to_right_line_is_drawn_reversed(renderer):
    # After "abc ", three runs (Arabic, emoji, Arabic) at level 1: drawn as one stretch, in reverse
    # logical order, so the first Arabic word ends up rightmost.
    text = "abc مرحبا 🐱 بالعالم"
    clusters = [c for c, _, _ in line_glyphs(renderer, text)]
    assert clusters == [0, 1, 2, 3, *range(len(text) - 1, 3, -1)]


def test_a_zwnj_inside_a_right_to_left_word_keeps_the_word_whole(renderer):
    # ZWNJ is dropped by the bidi algorithm (rule X9): it takes the level of the letter before it,
    # so the Persian word stays one right-to-left stretch instead of two swapped halves.
    text = "ok می\u200cخواهم"
    clusters = [c for c, _, _ in line_glyphs(renderer, text)]
    assert clusters == [0, 1, 2, *range(len(text) - 1, 2, -1)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("،!", (0, [0, 0])),  # no strong character (P3): level 0, even in Arabic punctuation
        ("שלום 123", (1, [1, 1, 1, 1, 1, 2, 2, 2])),  # digits in a right-to-left paragraph: I2
        ("مرحبا 123", (1, [1, 1, 1, 1, 1, 1, 2, 2, 2])),  # after Arabic letters, digits are AN (W2)
        ("a می\u200cخواهم", (0, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])),  # the ZWNJ takes the level before it
    ],
)
def test_bidi_levels_of_worked_examples(text, expected):
    assert bidi_levels(text) == expected


@pytest.mark.parametrize(
    ("levels", "visual"),
    [
        ([0, 0, 0], [0, 1, 2]),  # a left-to-right line stays in logical order
        ([0, 1, 1], [0, 2, 1]),  # two right-to-left runs after a left-to-right one swap
        ([1, 2, 2, 1], [3, 1, 2, 0]),  # level 2 reversed, then everything at level >= 1
        ([0, 2, 2], [0, 1, 2]),  # level 2 is left to right inside right to left: order kept (L2)
    ],
)
def test_reorder_runs_of_worked_examples(levels, visual):
    assert reorder_runs(levels) == visual


def test_devanagari_conjunct_reph_and_pre_base_matra(renderer):
    ksha = line_glyphs(renderer, "क्ष")
    assert len(ksha) == 1, "क + ् + ष form one conjunct glyph"
    reph = line_glyphs(renderer, "र्क")
    assert len(reph) == 2 and reph[0][2] != line_glyphs(renderer, "र")[0][2]
    ki = line_glyphs(renderer, "कि")
    ka = line_glyphs(renderer, "क")[0][2]
    assert [g for _, _, g in ki].index(ka) == 1, "the i-matra is drawn before (left of) its consonant"
    assert {font_id(f) for _, f, _ in ki} == {"devanagari"}


def test_bengali_pre_base_vowel_and_conjunct(renderer):
    ki = [g for _, _, g in line_glyphs(renderer, "কি")]
    assert ki.index(line_glyphs(renderer, "ক")[0][2]) == 1
    assert len(line_glyphs(renderer, "ক্ষ")) == 1


def test_telugu_consonant_cluster_is_shaped(renderer):
    cluster = line_glyphs(renderer, "క్ష")
    separate = [line_glyphs(renderer, c)[0][2] for c in "క్ష"]
    assert [g for _, _, g in cluster] != separate
    assert {font_id(f) for _, f, _ in cluster} == {"telugu"}


def test_thai_stacked_marks_are_drawn_above_and_not_clipped(renderer):
    plain = renderer.render("ท")
    stacked = renderer.render("ที่")
    assert ink_rows(stacked).min() < ink_rows(plain).min(), "vowel and tone mark stack above the consonant"
    assert ink_rows(stacked).max() < 16, "one line stays in its patch row"
    assert len(line_glyphs(renderer, "ที่")) == 3


def test_tall_tibetan_stack_is_kept_whole_in_its_row(renderer):
    text = "བསྒྲུབས་པོ་ཀྵྨྱོ"
    tall = ShapedRenderer({"patch_size": 64, "baseline": 40, "image_size": 256}).render(text)
    natural_height = np.ptp(ink_rows(tall)) + 1
    assert natural_height > 16, "the stack is taller than a patch row"
    image = renderer.render(text)
    rows = ink_rows(image)
    assert rows.min() >= 0 and rows.max() < 16
    assert (image[:16, :, 0] < 128).sum() > 20, "the shrunk line still has ink"


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("直す", None, "cjk-jp"),
        ("直", "ja", "cjk-jp"),
        ("直", "zh", "cjk-sc"),
        ("直", "zh-Hant", "cjk-tc"),
        ("직", None, "cjk-kr"),
    ],
)
def test_cjk_face_follows_language(renderer, text, language, expected):
    fonts = {font_id(f) for _, f, _ in line_glyphs(renderer, text, language)}
    assert fonts == {expected}


def test_han_variants_differ_between_japanese_and_chinese(renderer):
    assert not np.array_equal(renderer.render("直", "ja"), renderer.render("直", "zh"))


@pytest.mark.parametrize("text", ["Μια μαύρη γάτα", "Чёрная кошка", "Một con mèo đen"])
def test_greek_cyrillic_vietnamese_use_the_latin_stack_font(renderer, text):
    layout = renderer.layout(text)
    assert layout.report.complete
    assert {font_id(f) for _, f, _ in layout.glyphs(0)} == {"latin"}


@pytest.mark.parametrize("text", ["👩‍👩‍👧", "👍🏽", "🇯🇵", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"])
def test_emoji_sequences_are_single_emoji_glyphs(renderer, text):
    glyphs = line_glyphs(renderer, text)
    assert len(glyphs) == 1
    assert font_id(glyphs[0][1]) == "emoji"
    assert (renderer.render(text)[:16] < BACKGROUND).any()


def test_text_presentation_heart_stays_a_symbol(renderer):
    assert font_id(line_glyphs(renderer, "❤")[0][1]) != "emoji"
    assert font_id(line_glyphs(renderer, "❤️")[0][1]) == "emoji"


# -- wrapping and truncation ---------------------------------------------------------------------


def test_lines_break_at_spaces_and_fit_the_canvas(renderer):
    text = "A brown dog runs across a grassy field chasing a red ball while children watch from a bench."
    layout = renderer.layout(text)
    assert len(layout.lines) > 1
    for start, end in layout.lines:
        assert start == 0 or layout.text[start - 1] == " "
        assert end == len(layout.text) or layout.text[end] == " "
    image = renderer.render(text)
    assert ink_rows(image).max() < 16 * len(layout.lines)
    assert (image[16 * len(layout.lines) :] == BACKGROUND).all()


@pytest.mark.parametrize(
    "text",
    [
        "แมวดำนั่งอยู่บนขอบหน้าต่างและมองออกไปที่ถนนในวันที่แดดจ้ามากและมีลมพัดเย็นสบาย",
        "黒い猫が窓辺に座って、晴れた日に通りを眺めています。子供たちは公園で遊んでいます。",
    ],
)
def test_scripts_without_spaces_break_between_grapheme_clusters(renderer, text):
    layout = renderer.layout(text)
    assert len(layout.lines) > 1
    bounds = set(np.cumsum([len(g) for g in graphemes(layout.text)]).tolist())
    for start, _ in layout.lines[1:]:
        assert start in bounds, "a line never starts inside a grapheme cluster"
        assert unicodedata.category(layout.text[start]) not in ("Po", "Pe"), "no line starts with 。 or 、"


def test_overlong_word_breaks_between_clusters_never_inside_one(renderer):
    text = "e\u0301" * 200  # é as base + combining accent, never split
    layout = renderer.layout(text)
    assert len(layout.lines) > 1
    for start, _ in layout.lines:
        assert layout.text[start] != "\u0301"


def test_text_that_does_not_fit_is_reported_truncated(renderer):
    text = " ".join(f"word{i}" for i in range(400))
    rendering = renderer.render_with_report(text)
    report = rendering.report
    assert report.lines == 14 and report.rows_used == 14
    assert report.truncated.startswith("word") and text.endswith(report.truncated)
    assert not report.complete


def test_megabyte_input_is_bounded(renderer):
    text = "ab " * 350_000
    rendering = renderer.render_with_report(text)
    assert rendering.image.shape == (224, 224, 3)
    assert len(rendering.report.truncated) > 1_000_000 - 2048 - 10


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_and_blank_text_give_a_blank_canvas(renderer, text):
    rendering = renderer.render_with_report(text)
    assert (rendering.image == BACKGROUND).all()
    assert rendering.report.rows_used == 0 and rendering.report.complete


def test_control_characters_and_lone_surrogates_are_replaced_and_reported(renderer):
    rendering = renderer.render_with_report("a\x00b\x07c\ud800d")
    assert rendering.report.replaced == ["\x00", "\x07", "\ud800"]
    layout = renderer.layout("a\x00b\x07c\ud800d")
    assert layout.text == "abc\ufffdd"


def test_white_space_beside_a_removed_control_is_one_space_and_only_spaces_are_trimmed():
    assert normalize("a\tb\x00c") == ("a bc", ["\x00"])
    assert normalize(" \u3000X-ray of a box X\n") == ("X-ray of a box X", [])


@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_information_separators_are_controls_whatever_else_the_text_holds(separator):
    # Python's str.isspace calls U+001C..U+001F white space; Unicode does not: they are controls,
    # removed and reported, alone or beside another control, at an end or inside.
    assert normalize(f"a{separator}") == ("a", [separator])
    assert normalize(f"a{separator}b") == ("ab", [separator])
    assert normalize(f"a{separator}\x00b") == ("ab", [separator, "\x00"])
    assert normalize(f"a\x85{separator}b") == ("a b", [separator])  # NEL is Unicode white space


def test_unassigned_and_uncovered_code_points_are_reported_missing(renderer):
    text = "ok \u0378 \U00010c80"  # unassigned; Old Hungarian, outside the stack
    report = renderer.render_with_report(text).report
    assert report.missing == ["\u0378", "\U00010c80"]
    assert not report.complete


def test_whitespace_is_normalised(renderer):
    assert np.array_equal(renderer.render("a  b\tc\nd"), renderer.render("a b c d"))


def test_nfc_and_nfd_input_render_the_same(renderer):
    text = "Việt Nam, café, Ελληνικά"
    assert np.array_equal(
        renderer.render(unicodedata.normalize("NFD", text)),
        renderer.render(unicodedata.normalize("NFC", text)),
    )


@pytest.mark.parametrize(
    "odd", ["", " lead", "trail ", "two  spaces", "tab\there", "nbsp\u00a0x", "e\u0301", "\u2126", "nul\x00x"]
)
def test_a_batch_is_normalised_as_each_text_alone(odd):
    # A batch of texts already in normal form is recognised by one check of them all; one text
    # that is not must send the batch through the normalisation of each.
    plain = ["a dog on the beach", "собака", "浜辺を走る犬", "\u0301 a mark first"]
    for texts in (plain, [*plain, odd], [odd, *plain]):
        assert normalize_many(texts) == [normalize(text) for text in texts]


def test_zwnj_changes_persian_shaping(renderer):
    assert line_glyphs(renderer, "می\u200cخواهم") != line_glyphs(renderer, "میخواهم")


# -- determinism and batches ---------------------------------------------------------------------


def test_batch_in_worker_processes_equals_in_process(renderer):
    texts = ["кошка", "猫", "قطة", "बिल्ली", "gato", "🐱"] * 30
    alone = np.stack([renderer.render(t) for t in texts])
    batched = renderer.render_batch(texts, workers=2)
    assert batched.shape == (len(texts), 224, 224, 3)
    assert np.array_equal(alone, batched)


# Texts that take every path of the batch drawing: empty, right-to-left and mixed lines, a Tibetan
# stack too tall for its row, a word wider than the canvas, text past the last row, a CJK face chosen
# by language, emoji; and glyphs whose ink reaches past a canvas edge, which must not land in the
# neighbouring text's image.
MIXED_BATCH = [
    ("", None),
    ("שלום 123 עולם " * 4, None),
    ("the word שלום means peace and سلام too " * 3, None),
    ("བསྒྲུབས་པོ་ཀྵྨྱོ " * 8, None),
    ("Donaudampfschifffahrtsgesellschaftskapitän" * 3, None),
    ("a fairly long caption that keeps going " * 30, None),
    ("今日は良い天気です。" * 8, "ja"),
    ("直", "zh"),
    ("👩\u200d👩\u200d👧 🇯🇵 ❤️", None),
    ("ก\u0e31\u0e49" * 40, None),
    ("ẞ͟͟͟͟͟x" + "\u0301" * 12, None),
    ("   ", None),
]


def test_a_batch_draws_each_text_as_it_would_alone(renderer):
    texts, languages = zip(*MIXED_BATCH, strict=True)
    images, reports = renderer.render_many(list(texts), list(languages))
    assert images.shape == (len(texts), 224, 224, 3)
    for text, language, image, report in zip(texts, languages, images, reports, strict=True):
        alone = renderer.render_with_report(text, language)
        assert np.array_equal(image, alone.image), text
        assert report == alone.report, text
    assert reports[3].lines > 1 and reports[5].truncated  # the tall stacks and the cut really ran
    assert (images[3, :16, :, 0] < 128).sum() > 20 and (images[3, 16:32, :, 0] < 128).sum() > 20


def test_custom_canvas_and_brightness():
    small = ShapedRenderer({"image_size": 64, "text_brightness": 0, "background_brightness": 127})
    image = small.render("hello")
    assert image.shape == (64, 64, 3)
    assert image.max() == 127 and image.min() < 60


def test_bidi_isolates_do_not_break_layout(renderer):
    layout = renderer.layout("\u2067isolate\u2069 مرحبا")
    assert layout.report.lines == 1
    assert not layout.report.missing


def test_threads_sharing_a_renderer_from_a_cold_start_draw_what_one_thread_draws(renderer):
    # The UI's sessions are threads; a shared renderer's glyph atlas fills up under all of them.
    texts = [
        "混沌 漢字 テスト",
        "ภาษาไทย ไม่ได้",
        "مرحبا بالعالم 123",
        "क्षत्रिय र्क कि",
        "Ελληνικά κείμενα",
        "한국어 문장",
        "Ünïcödé wörds",
        "👩🏽‍💻 🇯🇵",
    ] * 3
    expected, _ = renderer.render_many(texts)
    shared = ShapedRenderer()  # its own, empty atlas
    batches = [texts[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda batch: shared.render_many(batch)[0], batches * 3))
    for i, images in enumerate(results):
        assert np.array_equal(images, expected[i % 4 :: 4])


def test_renderers_are_kept_per_config_and_draw_as_fresh_ones():
    import rendering

    # `render` costs what a held renderer's call costs: fonts and glyphs stay loaded between calls.
    assert get_renderer("shaped") is get_renderer("shaped") is get_renderer("shaped", **{})
    assert get_renderer("shaped", image_size=64) is not get_renderer("shaped")
    fresh = rendering.renderer_from_config({"style": "shaped"})
    assert fresh is not get_renderer("shaped")
    assert np.array_equal(rendering.render("a black cat"), fresh.render("a black cat"))
