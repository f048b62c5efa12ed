"""Reading photos and preprocessing them exactly as big_vision's decode|resize(224)|value_range(-1,1)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ground.errors import FileFormatError, InputError
from model.images import BadImageError, open_image
from model.preprocess import prepare_image, resize, to_value_range


def columns(values: list[int], height: int = 2) -> np.ndarray:
    """An image whose every row is `values` (the same in all three channels)."""
    row = np.array(values, np.uint8)[None, :, None]
    return np.repeat(np.repeat(row, height, axis=0), 3, axis=2)


def png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --- resize: tf.image.resize(bilinear, half-pixel centres, no antialias), then uint8 truncation ----


def test_upsampling_uses_half_pixel_centres_and_truncates():
    # Output x samples the input at (x + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to the
    # edges): 0, 0.75*0 + 0.25*10, 0.25*0 + 0.75*10, 10 = 0, 2.5, 7.5, 10 -> uint8 0, 2, 7, 10.
    out = resize(columns([0, 10], height=2), 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], [[0, 2, 7, 10]] * 4)


def test_downsampling_reads_two_pixels_without_antialiasing():
    # 6 -> 2 columns: samples at (x + 0.5) * 3 - 0.5 = 1.0 and 4.0: exactly pixels 1 and 4, the other
    # four columns are ignored (no antialiasing).
    out = resize(columns([200, 11, 250, 250, 99, 7], height=3), 2)
    np.testing.assert_array_equal(out[:, :, 1], [[11, 99]] * 2)
    # 4 -> 2 rows and columns: samples at 0.5 and 2.5, the mean of each 2 x 2 block;
    # 0.75 (block 0, 1, 1, 1) truncates to 0 where rounding would give 1.
    block = np.array([[0, 1, 40, 41], [1, 1, 41, 41], [100, 100, 7, 8], [100, 101, 8, 8]], np.uint8)
    out = resize(np.repeat(block[:, :, None], 3, axis=2), 2)
    np.testing.assert_array_equal(out[:, :, 2], [[0, 40], [100, 7]])


def test_resize_squashes_to_a_square():
    # 2 x 6 -> 4 x 4: x samples at (x + 0.5) * 1.5 - 0.5 = 0.25, 1.75, 3.25, 4.75 over 0, 10 ... 50.
    out = resize(columns([0, 10, 20, 30, 40, 50], height=2), 4)
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[:, :, 0], [[2, 17, 32, 47]] * 4)


def test_sample_positions_are_float32_like_tensorflow():
    # 2 -> 7 rows: row y samples at (y + 0.5) * float32(2/7) - 0.5. For y = 3 that is exactly 0.5 in
    # float32 (3.5 * 0.2857143 rounds to 1.0), so the output is 179 + (3 - 179) * 0.5 = 91 exactly;
    # a computation that lands on 0.49999997 instead truncates 90.99998 to 90.
    # The other rows: -0.36 and -0.07 clamp to 179; 0.214 -> 141.3; 0.786 -> 40.7; 1.07, 1.36 -> 3.
    image = np.repeat(np.array([[179, 2, 171, 17], [3, 228, 235, 174]], np.uint8)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(resize(image, 7)[:, 0, 0], [179, 179, 141, 91, 40, 3, 3])


def test_resize_agrees_with_torch_bilinear_up_to_rounding():
    # F.interpolate(bilinear, align_corners=False, antialias=False) is the same sampling; it sums
    # weighted pixels in another order, so after truncation a value may differ by one grey level.
    rng = np.random.default_rng(3)
    for shape in ((37, 53, 3), (300, 200, 3), (224, 224, 3)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
        expected = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=False)
        expected = expected[0].permute(1, 2, 0).numpy()
        diff = resize(pixels, 224).astype(np.float32) - expected
        assert diff.max() <= 1e-3 and diff.min() > -1
    same = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize(same, 224), same)


def test_resize_rejects_other_inputs():
    with pytest.raises(InputError, match="uint8"):
        resize(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(InputError, match="antialias"):
        prepare_image(b"", 16, {"antialias": True})


def test_value_range_matches_big_vision():
    x = to_value_range(np.array([0, 127, 255], np.uint8))
    assert x.dtype == np.float32
    expected = -1 + (np.array([0, 127, 255], np.float32) / np.float32(255)) * np.float32(2)
    np.testing.assert_array_equal(x, expected)
    assert x[0] == -1 and x[2] == 1


def test_prepare_image_decodes_and_resizes():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = prepare_image(png_bytes(Image.fromarray(pixels)), 16, {})
    np.testing.assert_array_equal(out, resize(pixels, 16))


# --- open_image ------------------------------------------------------------------------------------


def test_truncated_file(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as err:
        open_image(path)
    assert isinstance(err.value, FileFormatError) and err.value.path == str(path)
    assert "truncated" in str(err.value)


def test_not_an_image_and_missing_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(BadImageError, match=r"notes\.jpg: not an image"):
        open_image(path)
    with pytest.raises(BadImageError, match="no such file"):
        open_image(tmp_path / "absent.png")
    with pytest.raises(BadImageError, match="<5 bytes>"):
        open_image(b"hello")


def test_cmyk_jpeg_becomes_rgb():
    image = open_image(png_bytes(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", quality=95))
    assert image.mode == "RGB" and image.size == (20, 10)
    r, g, b = np.asarray(image).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta and yellow full: red


def test_16_bit_png_is_scaled_not_clipped():
    wide = np.array([[0, 257 * 128, 65535]], np.uint16)
    image = open_image(png_bytes(Image.fromarray(wide)))
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 128, 255])


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    image = open_image(buf.getvalue())
    assert image.mode == "RGB" and tuple(np.asarray(image)[4, 4]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = png_bytes(Image.new("RGB", (40, 20), (9, 9, 9)), "JPEG", exif=exif.tobytes())
    assert open_image(data).size == (20, 40)


def test_palette_alpha_and_grey_images_become_rgb():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    for image in (palette, Image.new("LA", (4, 4), (50, 128)), Image.new("RGBA", (4, 4), (1, 2, 3, 0))):
        out = open_image(png_bytes(image))
        assert out.mode == "RGB"
    assert tuple(np.asarray(open_image(png_bytes(palette)))[0, 0]) == (10, 20, 30)


def test_decompression_bomb_guard_stays_on(monkeypatch):
    data = png_bytes(Image.new("RGB", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x 1000: Pillow refuses
    with pytest.raises(BadImageError, match="too large to decode safely"):
        open_image(data)


def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Training, evaluation and uploads read through the one loader (ground.pictures), which refuses
    # what is not a regular file before opening it for reading (a pipe would wait for a writer).
    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    probe = "import sys; from model.images import open_image; open_image(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(pipe)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"{pipe}: cannot decode: not a regular file (a named pipe)" in done.stderr
