"""The unifont renderer against the rules of big_vision's `render_unifont` op, derived independently.

A slow reference below follows the rules one glyph at a time in plain Python, decoding the Unifont
`.hex` text itself; the fast renderer must agree with it pixel for pixel.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import pickle
import random
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pytest

from ground.errors import FileFormatError, InputError
from rendering import get_renderer, render, render_with_report, renderer_from_config, unifont_font
from rendering.unifont import UnifontRenderer

GOLDEN = Path(__file__).parent / "data" / "unifont_op_golden.json"
BACKGROUND = 127
INK = 0
# Unifont's own hex lines for a few glyphs, as the tests decode them by hand.
HEX_A = "0000000018242442427E424242420000"  # U+0041, 8 wide: ink in columns 1..6
HEX_M = "00000000000076494949494949490000"  # U+006D, 8 wide: ink in columns 1..7


def plane0_hex_path() -> Path:
    path = next((p for p in unifont_font.PLANE0_HEX_FILES if p.is_file()), None)
    if path is None:
        pytest.fail("GNU Unifont's unifont.hex is not installed (Debian package 'unifont')")
    return path


@lru_cache(maxsize=1)
def hex_lines() -> dict[int, str]:
    path = plane0_hex_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="ascii") as f:
        return {int(code, 16): bits for code, bits in (line.strip().split(":") for line in f if ":" in line)}


def decode_hex(bits: str) -> list[list[int]]:
    """16 rows x 16 columns of 0/1 from a hex glyph: each row is len/16 hex digits, leftmost bit first."""
    digits = len(bits) // 16
    grid = []
    for r in range(16):
        value = int(bits[r * digits : (r + 1) * digits], 16)
        row = [(value >> (digits * 4 - 1 - x)) & 1 for x in range(digits * 4)]
        grid.append(row + [0] * (16 - len(row)))
    return grid


@cache
def reference_bitmap(cp: int) -> tuple[tuple[int, ...], ...]:
    if cp < 0x10000:
        bits = hex_lines().get(cp)
        grid = decode_hex(bits) if bits else [[0] * 16 for _ in range(16)]
    else:
        # No upper-plane .hex to decode by hand: take the loader's bitmap (its rasteriser is checked
        # against the hex file separately below) and keep the rules here independent.
        grid = unifont_font.all_glyphs().bitmap(cp).tolist()
    return tuple(tuple(row) for row in grid)


def reference_render(text: str, size: int = 224) -> np.ndarray:
    """The op's rules, one glyph at a time (CLIPPO's settings)."""
    text = text[:768]
    text = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)
    cells = []
    for ch in text:
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        grid = reference_bitmap(cp)
        inked = [x for x in range(16) if any(grid[y][x] for y in range(16))]
        first, last = (inked[0], inked[-1]) if inked else (0, 0)
        start = max(first - 1, 0)
        end = min(max(last + 1, start + 4), 16)
        cells.append([row[start:end] for row in grid])
    image = [[BACKGROUND] * size for _ in range(size)]
    if cells:
        div = size - max(len(cell[0]) for cell in cells)
        running, x, current = 0, 0, 0
        for cell in cells:
            w = len(cell[0])
            running += w
            row = running // div
            if row != current:
                current, x = row, 0
            if row >= size // 16:
                break
            for dy in range(16):
                for dx in range(w):
                    if cell[dy][dx]:
                        image[16 * row + dy][x + dx] = INK
            x += w
    return np.repeat(np.asarray(image, np.uint8)[:, :, None], 3, axis=2)


def ink_mask(image: np.ndarray) -> np.ndarray:
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    return image[..., 0] == INK


def ink_columns(image: np.ndarray, row: int = 0) -> np.ndarray:
    return np.flatnonzero(ink_mask(image)[16 * row : 16 * (row + 1)].any(axis=0))


@pytest.fixture()
def font_caches():
    """Forget loaded glyph tables before and after, for tests that change where glyphs come from."""

    def clear():
        unifont_font.plane0_glyphs.cache_clear()
        unifont_font.all_glyphs.cache_clear()
        unifont_font.trimmed.cache_clear()
        reference_bitmap.cache_clear()

    clear()
    yield
    clear()


# --- glyphs -------------------------------------------------------------------------------------


def test_the_hex_file_holds_the_glyphs_these_tests_decode_by_hand():
    assert hex_lines()[0x41] == HEX_A
    assert hex_lines()[0x6D] == HEX_M


def test_capital_a_is_its_hex_line_decoded_by_hand():
    image = render("A", style="unifont", lower=False)
    # Rows are bytes, most significant bit leftmost; ink spans columns 1..6, so the trimmed cell is
    # columns 0..6 (one column of spacing before the first ink, none after the last).
    rows = [int(HEX_A[2 * r : 2 * r + 2], 16) for r in range(16)]
    expected = np.array([[(byte >> (7 - x)) & 1 for x in range(7)] for byte in rows])
    assert (ink_mask(image)[:16, :7] == expected.astype(bool)).all()
    assert not ink_mask(image)[:, 7:].any() and not ink_mask(image)[16:].any()


def test_parse_hex_reads_narrow_wide_and_upper_plane_lines(tmp_path):
    wide = "8001" + "0000" * 14 + "FFFF"  # 16 wide: corners of the top row, full bottom row
    text = f"0041:{HEX_A}\n4E00:{wide}\n01F600:{HEX_M}\n"
    plain = tmp_path / "tiny.hex"
    plain.write_text(text)
    packed = tmp_path / "tiny.hex.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        glyphs = unifont_font.parse_hex(path)
        assert sorted(glyphs) == [0x41, 0x4E00, 0x1F600]
        assert glyphs[0x41].tolist() == decode_hex(HEX_A)
        assert glyphs[0x1F600].tolist() == decode_hex(HEX_M)
        assert glyphs[0x4E00][0].tolist() == [1] + [0] * 14 + [1]
        assert glyphs[0x4E00][15].tolist() == [1] * 16


@pytest.mark.parametrize("line", ["0041:ABC", "zz:" + HEX_A, "0041" + HEX_A, "0041:" + "G" * 32])
def test_parse_hex_names_the_file_of_a_bad_line(tmp_path, line):
    path = tmp_path / "broken.hex"
    path.write_text(f"0042:{HEX_A}\n{line}\n")
    with pytest.raises(FileFormatError, match="broken.hex"):
        unifont_font.parse_hex(path)


def test_otf_rasteriser_reproduces_the_hex_glyphs():
    """The upper planes come from Unifont's OTF; the same conversion on plane 0 must give the hex back."""
    otf = Path(unifont_font.UPPER_OTF_FILES[0]).with_name("unifont.otf")
    if not otf.is_file():
        pytest.fail("fonts-unifont's unifont.otf is not installed")
    from_otf = unifont_font.rasterise_pixel_font(otf, first=0)
    from_hex = unifont_font.parse_hex(plane0_hex_path())
    # Combining marks are excluded: the OTF moves them out of their cell and loses where it was.
    spacing = [cp for cp in from_hex if unicodedata.category(chr(cp)) not in ("Mn", "Mc", "Me")]
    assert len(spacing) > 50_000
    different = [f"U+{cp:04X}" for cp in spacing if not np.array_equal(from_otf[cp], from_hex[cp])]
    assert different == []


def test_trimming_widths():
    glyphs, trim = unifont_font.trimmed(False, 1, 4)

    def width(ch):
        return int(trim.width[glyphs.index[ord(ch)]])

    assert width(" ") == 4  # blank: start 0, end max(0 + 1, 0 + 4)
    assert width("\ue000") == 4  # not in the font: a blank cell
    assert width("m") == 8  # ink in columns 1..7
    assert width("i") < width("m")
    assert width("猫") > 8
    # In an image: "i" then "m", the "m" begins right after the trimmed "i".
    image = render("im", style="unifont")
    assert ink_columns(image).max() == width("i") + width("m") - 1


def test_lower_cases_ascii_only():
    for upper, lower in [("A", "a"), ("Z", "z")]:
        assert (render(upper, style="unifont") == render(lower, style="unifont")).all()
    for upper, lower in [("Ä", "ä"), ("Σ", "σ"), ("Ж", "ж"), ("İ", "i"), ("Ａ", "ａ")]:
        assert not (render(upper, style="unifont") == render(lower, style="unifont")).all(), upper
    assert not (render("A", style="unifont", lower=False) == render("a", style="unifont")).all()


# --- layout -------------------------------------------------------------------------------------


def test_wrapping_follows_the_running_width_rule():
    # Every "m" is 8 wide, so div = 224 - 8 = 216 and glyph i (from 1) goes to row floor(8 i / 216):
    # row 0 holds 26 glyphs (ink up to x = 207), later rows 27 (ink up to x = 215).
    result = render_with_report("m" * 300, style="unifont")
    assert ink_columns(result.image, 0).max() == 26 * 8 - 1
    assert ink_columns(result.image, 1).max() == 27 * 8 - 1
    assert ink_columns(result.image, 1).min() == 1
    assert result.report.lines == 300 // 27 + 1
    assert result.report.truncated == ""
    # One 16-wide glyph (a control character's box has ink in all 16 columns) anywhere changes div
    # to 208 for the whole text: row 0 holds 25 glyphs.
    mixed = render("m" * 100 + "\n", style="unifont")
    assert ink_columns(mixed, 0).max() == 25 * 8 - 1


def test_rows_below_the_canvas_are_dropped_and_reported():
    text = "m" * 700
    result = render_with_report(text, style="unifont")
    drawn = 14 * 27 - 1  # glyph i is on row floor(i / 27) < 14
    assert result.report.truncated == text[drawn:]
    assert result.report.lines == 14 and result.report.rows_used == 14
    assert ink_columns(result.image, 13).max() == (drawn - 13 * 27 + 1) * 8 - 1


def test_a_rectangular_canvas_wraps_at_its_width():
    renderer = get_renderer("unifont", image_size=[64, 120])
    text = "Pixglot renders every caption the way CLIPPO was trained to read it."
    assert renderer.render(text).shape == (64, 120, 3)
    assert (renderer.render(text) == reference_render(text, size=120)[:64]).all()


def test_a_partial_last_row_is_cut_by_the_canvas():
    # 200 px: div = 192, rows of 24 glyphs, 13 rows reach the canvas, the last one only half.
    result = render_with_report("m" * 700, style="unifont", image_size=200, patch_size=20)
    assert result.image.shape == (200, 200, 3)
    assert result.report.truncated == "m" * (700 - (13 * 24 - 1))
    assert result.report.lines == 13 and result.report.rows_used == 10
    assert ink_mask(result.image)[192:].any()


def test_text_is_cut_to_768_code_points():
    text = "." * 1000  # "." is 4 wide: 768 of them fit in 14 rows of 55
    result = render_with_report(text, style="unifont")
    assert result.report.truncated == "." * 232
    assert result.report.lines == 768 // 55 + 1
    huge = "." * 1_000_000
    result = render_with_report(huge, style="unifont")
    assert len(result.report.truncated) == 1_000_000 - 768
    assert (result.image == render(text, style="unifont")).all()


def test_arabic_is_drawn_in_logical_order_unshaped():
    word = "سلام"
    image = render(word, style="unifont")
    glyphs, trim = unifont_font.trimmed(False, 1, 4)
    x = 0
    for ch in word:  # each letter's isolated Unifont glyph, left to right
        w = int(trim.width[glyphs.index[ord(ch)]])
        alone = render(ch, style="unifont")
        assert (image[:16, x : x + w] == alone[:16, :w]).all(), ch
        x += w
    assert not ink_mask(image)[:, x:].any()


def test_controls_newlines_and_combining_marks_get_their_own_cells():
    result = render_with_report("a\nb", style="unifont")
    assert result.report.lines == 1 and ink_mask(result.image)[16:].sum() == 0
    assert ink_mask(render("\n", style="unifont")).any()  # Unifont's control picture box
    assert ink_mask(render("\x00", style="unifont")).any()
    one = render("e\u0301", style="unifont")
    glyphs, trim = unifont_font.trimmed(False, 1, 4)
    e_width = int(trim.width[glyphs.index[ord("e")]])
    assert ink_columns(one).max() >= e_width  # the accent sits in a cell after the "e"


# --- values, reports, bad input --------------------------------------------------------------------


def test_empty_and_blank_text_are_background_only():
    for text in ["", " ", "     ", "\u3000"]:
        result = render_with_report(text, style="unifont")
        assert result.image.shape == (224, 224, 3) and result.image.dtype == np.uint8
        assert (result.image == BACKGROUND).all()
        assert result.report.truncated == "" and result.report.missing == []
    assert render_with_report("", style="unifont").report.rows_used == 0
    assert render_with_report("  ", style="unifont").report.rows_used == 1


def test_values_are_ink_or_background_only():
    image = render("Pixglot: кошка 猫 قطة बिल्ली 😀 " * 10, style="unifont")
    assert set(np.unique(image).tolist()) == {INK, BACKGROUND}
    custom = render("Pixglot", style="unifont", text_brightness=255, background_brightness=10)
    assert set(np.unique(custom).tolist()) == {10, 255}
    assert ((custom == 255) == (render("Pixglot", style="unifont") == INK)).all()


def test_missing_and_replaced_characters_are_reported():
    result = render_with_report("a\ue000b\ue000\ud800", style="unifont")
    assert result.report.missing == ["\ue000"]
    assert result.report.replaced == ["\ud800"]
    assert not result.report.complete
    assert (render("\ud800", style="unifont") == render("\ufffd", style="unifont")).all()
    assert render_with_report("a photo of a cat", style="unifont").report.complete


def test_upper_plane_characters_are_drawn():
    result = render_with_report("😀𝔸", style="unifont")
    assert result.report.missing == []
    assert ink_columns(result.image).max() > 8


@pytest.mark.parametrize(
    "option",
    [
        {"font_size": 24},
        {"image_size": 16},
        {"text_brightness": 256},
        {"spacing": -1},
        {"max_chars": 1.5},
        {"min_width": "4"},
        {"lower": "no"},
        {"image_size": "224"},
        {"image_size": [224]},
    ],
)
def test_bad_options_are_refused(option):
    with pytest.raises(InputError):
        get_renderer("unifont", **option)


def test_non_text_is_refused():
    with pytest.raises(InputError):
        get_renderer("unifont").render(b"bytes")  # type: ignore[arg-type]


def test_config_round_trip_pickling_and_batches():
    renderer = renderer_from_config({"style": "unifont", "image_size": 224})
    assert isinstance(renderer, UnifontRenderer) and renderer.config["style"] == "unifont"
    texts = [f"caption {i}: a dog on a beach, кошка {i}" for i in range(130)]
    clone = pickle.loads(pickle.dumps(renderer))
    batch = renderer.render_batch(texts, workers=2)
    assert batch.shape == (130, 224, 224, 3)
    for i in (0, 64, 129):
        assert (batch[i] == clone.render(texts[i])).all()


def test_font_files_can_be_replaced(tmp_path, monkeypatch, font_caches):
    full = "FFFF" * 16
    (tmp_path / "plane0.hex").write_text(f"0061:{full}\n")
    (tmp_path / "upper.hex").write_text(f"01F600:{HEX_M}\n")
    files = [str(tmp_path / "plane0.hex"), str(tmp_path / "upper.hex")]
    monkeypatch.setenv(unifont_font.FONT_ENV, os.pathsep.join(files))
    result = render_with_report("ab😀", style="unifont")
    assert ink_mask(result.image)[:16, :16].all()  # "a" is now a full 16 x 16 block
    assert result.report.missing == ["b"]
    assert ink_columns(result.image).max() == 16 + 4 + 8 - 1  # block, blank "b", then the "m" bitmap


# --- the fast renderer equals the slow reference ------------------------------------------------------


def _varied_texts() -> list[str]:
    texts = [
        "",
        "A photo of a cat sitting on a wooden table next to a cup of coffee.",
        "Eine Katze sitzt auf einem Holztisch neben einer Tasse Kaffee. ÄÖÜ äöü ß",
        "Μια γάτα κάθεται σε ένα ξύλινο τραπέζι δίπλα σε ένα φλιτζάνι καφέ.",
        "Кошка сидит на деревянном столе рядом с чашкой кофе. ЁЖИК",
        "قطة تجلس على طاولة خشبية بجانب فنجان قهوة.",
        "חתול יושב על שולחן עץ ליד כוס קפה.",
        "एक बिल्ली कॉफी के कप के बगल में लकड़ी की मेज पर बैठी है।",
        "একটি বিড়াল কাঠের টেবিলে কফির কাপের পাশে বসে আছে।",
        "แมวนั่งอยู่บนโต๊ะไม้ข้างถ้วยกาแฟ",
        "猫がコーヒーカップの隣の木のテーブルに座っている。",
        "一只猫坐在木桌上，旁边是一杯咖啡。",
        "나무 테이블 위에 커피 잔 옆에 고양이가 앉아 있다.",
        "Một con mèo ngồi trên bàn gỗ cạnh tách cà phê.",
        "İstanbul'da bir kedi ahşap masada oturuyor.",
        "ఒక పిల్లి చెక్క బల్ల మీద కాఫీ కప్పు పక్కన కూర్చుంది.",
        "line one\nline two\r\n\ttabbed\x00\x07\x1b[0m\x7f\x85",
        "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 combining \u20dd\u0489",
        "emoji 😀🐈‍⬛👍🏽🇫🇷 and plane one 𝔸𝕓𝒸 𐍈 𓀀 𠀀 \U000e0041",
        "\ud83d\ude00 lone \udc00 surrogates \ud800",
        "\ue000\uf8ff private use \U000f0000 and unassigned \u0378",
        "Ａｂｃ full width ｶﾀｶﾅ ＡＢＣ",
        "m" * 300,
        "m" * 100 + "猫",
        "m" * 100 + "\n",
        "." * 1000,
        "i" * 800,
        "猫" * 400,
        " " * 300 + "end",
        "The quick brown fox jumps over the lazy dog. " * 20,
        "WORD " * 200,
    ]
    rng = random.Random(20250101)
    ranges = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x370, 0x4FF),
        (0x590, 0x6FF),
        (0x900, 0xDFF),
        (0x3040, 0x30FF),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3),
        (0x0, 0x1F),
        (0xD800, 0xDFFF),
        (0x1F300, 0x1FAFF),
        (0x10000, 0x1FFFF),
        (0xE000, 0xF8FF),
    ]
    for _ in range(22):
        picked = rng.sample(ranges, 3)
        length = rng.choice([1, 5, 40, 200, 900])
        chars = []
        for _ in range(length):
            low, high = rng.choice(picked)
            chars.append(chr(rng.randint(low, high)))
        texts.append("".join(chars))
    return texts


VARIED = _varied_texts()


def test_fast_renderer_equals_the_reference_pixel_for_pixel():
    renderer = get_renderer("unifont")
    assert len(VARIED) >= 50
    differing = [
        i for i, text in enumerate(VARIED) if (renderer.render(text) != reference_render(text)).any()
    ]
    assert differing == []


def test_a_batch_draws_each_text_as_the_op_does_alone():
    # One compiled call draws a whole batch, looking glyphs up in the all-planes table as soon as one
    # text needs it: plane-0 texts drawn beside upper-plane ones must come out as they do alone.
    renderer = get_renderer("unifont")
    assert any(ord(c) >= 0x10000 for text in VARIED for c in text)
    images, reports = renderer.render_many(VARIED)
    assert [i for i, text in enumerate(VARIED) if (images[i] != reference_render(text)).any()] == []
    assert reports == [renderer.render_with_report(text).report for text in VARIED]
    assert renderer.render_many([])[0].shape == (0, 224, 224, 3)


def test_reference_agrees_on_a_smaller_canvas():
    renderer = get_renderer("unifont", image_size=96)
    for text in VARIED[1:12]:
        assert (renderer.render(text) == reference_render(text, size=96)).all()


def test_matches_images_drawn_by_big_visions_own_op():
    """Goldens made by running the original TensorFlow op on the same Unifont glyphs."""
    cases = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    glyphs = unifont_font.all_glyphs()
    renderer = get_renderer("unifont")
    for case in cases:
        text = case["text"]
        used = sorted({ord(c) for c in text[:768].translate({c: c + 32 for c in range(65, 91)})})
        fingerprint = hashlib.sha256(b"".join(glyphs.bitmap(cp).tobytes() for cp in used)).hexdigest()
        assert fingerprint == case["glyphs_sha256"], f"installed Unifont glyphs differ for {text[:30]!r}"
        rows = case["rows"] * 16
        ink = np.unpackbits(np.frombuffer(base64.b64decode(case["ink"]), np.uint8))[: rows * 224]
        expected = np.zeros((224, 224), bool)
        expected[:rows] = ink.reshape(rows, 224).astype(bool)
        assert (ink_mask(renderer.render(text)) == expected).all(), text[:30]
