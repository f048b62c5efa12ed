"""The batched resize on the model's device equals `preprocess.resize` of each picture, bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import model
from ground.errors import InputError
from model.device_resize import resize_batch
from model.preprocess import resize

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]


@st.composite
def pictures(draw: st.DrawFn) -> tuple[list[np.ndarray], int]:
    """A batch of pictures of mixed sizes (smaller, equal to and larger than the target) and the
    target size."""
    size = draw(st.integers(1, 40))
    sides = st.one_of(st.integers(1, 3 * size + 2), st.just(size))
    shapes = draw(st.lists(st.tuples(sides, sides), min_size=1, max_size=5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    batch = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    return batch, size


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=200, deadline=None)
@given(batch=pictures())
def test_a_batch_resizes_as_each_picture_alone(device: str, batch: tuple[list[np.ndarray], int]) -> None:
    images, size = batch
    out = resize_batch(images, size, device)
    assert out.device.type == device and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.cpu().numpy(), np.stack([resize(image, size) for image in images]))


@pytest.mark.parametrize("device", DEVICES)
def test_pictures_already_at_size_come_back_unchanged(device: str) -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_array_equal(resize_batch(images, 16, device).cpu().numpy(), np.stack(images))
    assert resize_batch([], 16, device).shape == (0, 16, 16, 3)


def test_a_picture_that_is_not_rgb_uint8_is_named() -> None:
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match=r"picture #1: expected H x W x 3 uint8, got uint8 \(8, 8\)"):
        resize_batch([good, np.zeros((8, 8), np.uint8)], 4, "cpu")
    with pytest.raises(InputError, match="picture #0: .* got float32"):
        resize_batch([good.astype(np.float32)], 4, "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_pictures_in_memory_encode_as_the_same_files_do(device: str) -> None:
    """The encoder resizes pictures already decoded in batches on its device, and files in worker
    code on the host; both give the same pixels, so the same vectors."""
    encoder = model.create("tiny-test", seed=0, device=device, precision="fp32")
    rng = np.random.default_rng(7)
    shapes = [(40, 70), (encoder.image_size,) * 2, (9, 13), (100, 33), (64, 64)]
    images = [Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)) for shape in shapes]
    as_files = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        as_files.append(buffer.getvalue())
    in_memory = encoder.encode_images_tolerant(images, batch_size=3)
    assert in_memory.ok == list(range(len(images))) and not in_memory.failures
    np.testing.assert_allclose(in_memory.vectors, encoder.encode_images(as_files, batch_size=3), atol=1e-6)
