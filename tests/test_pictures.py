"""One picture per file on every path: training and evaluation (model.images), indexing
(indexer.decode) and the web page's uploads read the same pixels, upright by EXIF orientation,
transparency on white, 16-bit grey scaled; each checked against a reference derived from the rules."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from indexer.decode import load_for_model
from model.images import open_image

SIZE = 64  # the model size given to the indexing path: the test pictures are below it, never shrunk


def encoded(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def every_path(data: bytes) -> dict[str, np.ndarray]:
    return {
        "training and evaluation": np.asarray(open_image(data)),
        "indexing": np.asarray(load_for_model(data, SIZE)),
        "indexing, a file": np.asarray(load_for_model(Image.open(io.BytesIO(data)), SIZE)),
    }


def pattern() -> np.ndarray:
    """3 x 5 pixels, each its own colour: any turn or mirror moves some of them."""
    return np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5


# EXIF's words for each orientation, as numpy operations on the stored pixels (rot90 turns
# counter-clockwise; "rotate 90 CW" is k = -1).
EXIF_RULES = {
    1: lambda a: a,
    2: np.fliplr,  # mirror horizontal
    3: lambda a: np.rot90(a, 2),  # rotate 180
    4: np.flipud,  # mirror vertical
    5: lambda a: np.rot90(np.fliplr(a), 1),  # mirror horizontal and rotate 270 CW
    6: lambda a: np.rot90(a, -1),  # rotate 90 CW
    7: lambda a: np.rot90(np.fliplr(a), -1),  # mirror horizontal and rotate 90 CW
    8: lambda a: np.rot90(a, 1),  # rotate 270 CW
}


@pytest.mark.parametrize("turn", sorted(EXIF_RULES))
def test_every_exif_orientation_turns_the_pixels_as_the_standard_says(turn: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = turn
    data = encoded(Image.fromarray(pattern()), exif=exif.tobytes())
    expected = EXIF_RULES[turn](pattern())
    for path, pixels in every_path(data).items():
        assert np.array_equal(pixels, expected), (turn, path)


def on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What a viewer shows of `colour` with coverage `alpha` (0..255) on a white page."""
    cover = alpha[..., None] / 255
    return colour * cover + 255 * (1 - cover)


def test_transparency_is_composited_onto_white_on_every_path() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # transparent black: a viewer shows the white page
    rgba[0, 2] = (0, 0, 200, 128)  # half-covering blue
    rgba[1] = (10, 200, 10, 0)  # transparent green
    grey = np.array([[[30, 255], [30, 0], [30, 64]]], np.uint8)
    palette = Image.new("P", (3, 1), 1)
    palette.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    palette.putpixel((0, 0), 0)  # index 0: black, marked transparent below
    cases = [
        (encoded(Image.fromarray(rgba, "RGBA")), on_white(rgba[..., :3], rgba[..., 3])),
        (encoded(Image.fromarray(grey, "LA")), on_white(np.repeat(grey[..., :1], 3, 2), grey[..., 1])),
        (encoded(palette, transparency=0), np.array([[[255, 255, 255], [250, 20, 20], [250, 20, 20]]])),
    ]
    for data, expected in cases:
        for path, pixels in every_path(data).items():
            assert np.abs(pixels - expected).max() <= 1, (path, pixels)


def test_16_bit_grey_is_scaled_from_its_full_range_on_every_path() -> None:
    wide = np.array([[0, 256, 257 * 128, 65535]], np.uint16)
    for path, pixels in every_path(encoded(Image.fromarray(wide))).items():
        assert pixels[0, :, 0].tolist() == [0, 1, 128, 255], path
        assert (pixels == pixels[..., :1]).all(), path  # grey stays grey


@pytest.mark.parametrize(
    ("size", "shrunk"),
    [((200, 130), (67, 65)), ((130, 64), (65, 64)), ((64, 130), (64, 65)), ((127, 127), (127, 127))],
)
def test_indexing_shrinks_a_big_picture_by_a_whole_factor_per_side(
    size: tuple[int, int], shrunk: tuple[int, int]
) -> None:
    # A side of at least twice the model's size (64) is divided by the whole number of times it
    # holds 64, rounded up: 200 holds it 3 times, and ceil(200 / 3) = 67. A shorter side is kept.
    colour = (30, 140, 220)
    data = encoded(Image.new("RGB", size, colour))
    for picture in (load_for_model(data, SIZE), load_for_model(Image.open(io.BytesIO(data)), SIZE)):
        assert picture.size == shrunk
        assert (np.asarray(picture) == colour).all()  # a box filter keeps a flat colour
