"""The Encoder API on the shipped tiny-test model: shapes, norms, trimming, batching, bad images,
save/load, precision options."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import model
import model.encoder as encoder_module
from ground.errors import FileFormatError, InputError, PixglotError
from model.preprocess import to_value_range
from model.vit import ViT

TEXTS = ["a cat", "кошка на диване", "", "猫", "a longer caption that wraps " * 6]


@pytest.fixture(scope="module")
def tiny() -> model.Encoder:
    return model.create("tiny-test")


def image_bytes(seed: int, size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def unit_rows(z: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5))


def test_tiny_test_model_follows_the_contract(tiny):
    assert tiny.name == "tiny-test" and tiny.dim == 32
    assert tiny.config["renderer"]["style"] == "shaped" and tiny.config["text_trim"] is True
    assert tiny.renderer.style == "shaped"
    assert len(tiny.fingerprint) == 64 and int(tiny.fingerprint, 16) >= 0
    assert model.create("tiny-test", seed=0).fingerprint == tiny.fingerprint
    assert model.create("tiny-test", seed=1).fingerprint != tiny.fingerprint


def test_encode_texts_shapes_and_norms(tiny):
    z = tiny.encode_texts(TEXTS)
    assert z.shape == (len(TEXTS), 32) and z.dtype == np.float32 and unit_rows(z)
    assert tiny.encode_texts([]).shape == (0, 32)
    # Grouping by row count must not reorder: one at a time gives the same rows.
    singles = np.concatenate([tiny.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(z, singles, atol=1e-6)
    with pytest.raises(InputError, match="text #1"):
        tiny.encode_texts(["ok", 3])


def test_text_trimming_reads_only_the_rows_with_text(tiny):
    text = "a short query"
    rendering = tiny.renderer.render_with_report(text)
    rows = max(1, rendering.report.rows_used)
    assert rows < 14
    np.testing.assert_array_equal(tiny.render_query(text), rendering.image)
    cropped = to_value_range(rendering.image[None, : rows * 16])
    trimmed = tiny.encode_texts([text])
    np.testing.assert_allclose(trimmed, tiny.embed_pixels(cropped, rows=rows), atol=1e-6)
    # Other rows' pixels do not matter once they are trimmed...
    scribbled = rendering.image.copy()
    scribbled[rows * 16 :] = 0
    np.testing.assert_allclose(
        trimmed, tiny.embed_pixels(to_value_range(scribbled[None]), rows=rows), atol=1e-6
    )
    # ...and reading the full canvas is a different computation.
    full = tiny.embed_pixels(to_value_range(rendering.image[None]))
    assert not np.allclose(trimmed, full, atol=1e-3)


@pytest.mark.parametrize("trim", [True, False])
def test_texts_read_from_the_rendered_text_cache_encode_as_rendered_ones(tiny, trim):
    encoder = model.create({**tiny.config, "text_trim": trim}) if not trim else tiny
    texts = ["a cat", "кошка", "猫", "a cat", "a longer query " * 4, ""]
    expected = encoder.encode_texts(texts, batch_size=2)
    np.testing.assert_allclose(encoder.encode_texts(texts, batch_size=2, cached=True), expected, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_texts(texts[::-1], cached=True), expected[::-1], atol=1e-6)


def test_without_text_trim_the_full_canvas_is_read(tiny):
    config = {**tiny.config, "text_trim": False}
    untrimmed = model.Encoder(tiny.net, config)
    text = "a short query"
    full = untrimmed.embed_pixels(to_value_range(untrimmed.render_query(text)[None]))
    np.testing.assert_allclose(untrimmed.encode_texts([text]), full, atol=1e-6)


def test_encode_images_from_paths_bytes_and_pil(tiny, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes(0, fmt="JPEG"))
    pil = Image.open(io.BytesIO(image_bytes(1)))
    z = tiny.encode_images([path, str(path), image_bytes(1), pil, path.read_bytes()])
    assert z.shape == (5, 32) and unit_rows(z)
    np.testing.assert_allclose(z[0], z[1], atol=1e-6)
    np.testing.assert_allclose(z[2], z[3], atol=1e-6)
    np.testing.assert_allclose(z[0], z[4], atol=1e-6)
    assert tiny.encode_images([]).shape == (0, 32)
    with pytest.raises(InputError, match="wrap it in a list"):
        tiny.encode_images(str(path))


def test_bad_images_strict_and_tolerant(tiny, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes(2))
    cut = tmp_path / "cut.png"
    data = image_bytes(3, size=(64, 64))
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    batch = [good, cut, text, image_bytes(4)]

    with pytest.raises(model.BadImageError) as err:
        tiny.encode_images(batch)
    assert err.value.path == str(cut)

    result = tiny.encode_images_tolerant(batch)
    assert result.ok == [0, 3]
    assert [i for i, _ in result.failures] == [1, 2]
    assert str(cut) in result.failures[0][1] and "not an image" in result.failures[1][1]
    np.testing.assert_allclose(result.vectors, tiny.encode_images([good, image_bytes(4)]), atol=1e-6)


def test_worker_processes_give_the_same_results(tiny, tmp_path, monkeypatch):
    sources = [image_bytes(i, size=(20 + i, 30)) for i in range(10)] + [b"junk"]
    in_process = tiny.encode_images_tolerant(sources)
    texts = [f"caption {i}" for i in range(20)] + TEXTS
    texts_in_process = tiny.encode_texts(texts)
    monkeypatch.setattr(encoder_module, "_MIN_IMAGES_FOR_WORKERS", 2)
    monkeypatch.setattr(encoder_module, "_MIN_TEXTS_FOR_WORKERS", 2)
    pooled = tiny.encode_images_tolerant(sources)
    assert pooled.ok == in_process.ok and pooled.failures == in_process.failures
    np.testing.assert_allclose(pooled.vectors, in_process.vectors, atol=1e-6)
    np.testing.assert_allclose(tiny.encode_texts(texts), texts_in_process, atol=1e-6)


def test_save_load_round_trip(tiny, tmp_path):
    directory = model.save(tiny, tmp_path / "saved")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    loaded = model.load(directory)
    assert loaded.fingerprint == tiny.fingerprint and loaded.config == tiny.config
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.embed_pixels(pixels), tiny.embed_pixels(pixels))
    np.testing.assert_array_equal(loaded.encode_texts(TEXTS), tiny.encode_texts(TEXTS))


def test_load_by_name_from_pixglot_home(tiny, pixglot_home):
    model.save(tiny, pixglot_home / "models" / "mine")
    assert model.load("mine").fingerprint == tiny.fingerprint
    assert model.installed_models() == ["mine"]
    with pytest.raises(PixglotError, match="no model 'other'.*installed: mine, demo"):
        model.load("other")


def test_load_reports_damaged_model_directories(tiny, tmp_path):
    directory = model.save(tiny, tmp_path / "m")
    (directory / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(FileFormatError, match="model.safetensors: unreadable weights"):
        model.load(directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileFormatError, match="no weights"):
        model.load(directory)

    wider = model.create({**tiny.config, "architecture": {**tiny.config["architecture"], "mlp_dim": 64}})
    model.save(wider, directory)
    config = json.loads((directory / "config.json").read_text())
    config["architecture"]["mlp_dim"] = 128
    (directory / "config.json").write_text(json.dumps(config))
    mismatch = r"'blocks\.0\.mlp\.fc1\.bias' has shape \(64,\).*needs \(128,\)"
    with pytest.raises(FileFormatError, match=mismatch):
        model.load(directory)

    (directory / "config.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="config.json: unreadable model config"):
        model.load(directory)


def test_create_checks_its_config():
    with pytest.raises(InputError, match="no shipped model config 'nope'.*tiny-test"):
        model.create("nope")
    config = model.encoder.read_shipped_config("tiny-test")
    with pytest.raises(InputError, match="renderer patch_size 8 differs"):
        model.create({**config, "renderer": {**config["renderer"], "patch_size": 8}})
    with pytest.raises(InputError, match="unknown architecture keys"):
        model.create({**config, "architecture": {**config["architecture"], "wdth": 3}})
    for knows in ("photos", ["photos", ""], [3]):
        with pytest.raises(InputError, match=r'"knows" lists the kinds of pictures'):
            model.create({**config, "knows": knows})
    assert model.create({**config, "knows": ["photos"]}).knows == ("photos",)


def test_shipped_configs_build(tiny):
    for name in model.encoder.shipped_configs():
        arch = model.encoder.complete_config(model.encoder.read_shipped_config(name))["architecture"]
        assert arch["image_size"] == 224 and arch["width"] % arch["heads"] == 0


def test_vit_rows_crop_matches_full_input_and_checks_bounds():
    net = ViT({"width": 32, "depth": 1, "heads": 2, "mlp_dim": 32, "image_size": 64, "pool": "gap"}).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x, rows=2), net(x[:, :, :32], rows=2))
        assert not torch.allclose(net(x, rows=2), net(x))
    with pytest.raises(InputError, match="rows=5"):
        net(x, rows=5)


def test_vit_gradients_under_cpu_bf16_autocast_follow_fp32():
    # Under CPU autocast the attention runs in fp32 (PyTorch's bf16 CPU attention backward is
    # slow); the step must still be a bf16 step whose gradients point where fp32's do.
    torch.manual_seed(0)
    net = ViT({"width": 64, "depth": 2, "heads": 4, "mlp_dim": 128, "image_size": 64, "pool": "map"})
    x = torch.randn(4, 3, 64, 64)

    def gradient(bf16: bool) -> torch.Tensor:
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = net(x)
        (z.float() @ z.float().T).logsumexp(1).sum().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    fp32, bf16 = gradient(False), gradient(True)
    assert torch.isfinite(bf16).all() and not torch.equal(fp32, bf16)  # bf16 did run
    assert torch.nn.functional.cosine_similarity(fp32, bf16, dim=0) > 0.99


def test_precision_and_int8_options_stay_close(tiny):
    texts = tiny.encode_texts(TEXTS)
    for options in ({"precision": "bf16"}, {"quantize": "int8"}):
        other = model.Encoder(tiny.net, tiny.config, **options)
        z = other.encode_texts(TEXTS)
        assert unit_rows(z)
        assert np.min(np.sum(z * texts, axis=1)) > 0.98
        assert other.fingerprint == tiny.fingerprint
    with pytest.raises(InputError, match="precision"):
        model.Encoder(tiny.net, tiny.config, precision="fp8")


def test_an_encoder_sent_to_another_process_embeds_as_it_did(tiny):
    # How a Ray actor receives the model: pickled as fp32 weights and config, rebuilt there.
    import pickle

    images = [image_bytes(seed) for seed in range(5)]
    for options in ({}, {"quantize": "int8"}):
        sent = model.Encoder(tiny.net, tiny.config, **options)
        received = pickle.loads(pickle.dumps(sent))
        same = ("name", "quantize", "fingerprint")
        assert [getattr(received, a) for a in same] == [getattr(sent, a) for a in same]
        np.testing.assert_allclose(received.encode_images(images), sent.encode_images(images), atol=1e-6)
        np.testing.assert_allclose(received.encode_texts(TEXTS), sent.encode_texts(TEXTS), atol=1e-6)


def test_prepared_pixels_encode_as_the_images_they_came_from(tiny):
    images = [image_bytes(seed, size=(50 + seed, 30)) for seed in range(7)]
    size, preprocessing = tiny.image_size, tiny.config["preprocessing"]
    pixels = np.stack([encoder_module.prepare_for_model(b, size, preprocessing)[0] for b in images])
    np.testing.assert_allclose(
        tiny.encode_prepared(pixels, batch_size=3), tiny.encode_images(images), atol=1e-6
    )
    for wrong in (pixels.astype(np.float32), pixels[:, :-1], pixels[..., :1]):
        with pytest.raises(InputError, match=f"expects N x {size} x {size} x 3 uint8"):
            tiny.encode_prepared(wrong)


def test_sincos_position_embeddings_follow_the_mocov3_layout():
    from model.vit import posemb_sincos_2d

    pe = posemb_sincos_2d(2, 3, 8)  # width 8: omega = 1 / 10000 ** [0, 1] = [1, 1e-4]
    assert pe.shape == (1, 6, 8)
    y, x = 1, 2  # row-major: token 1 * 3 + 2
    expected = [np.sin(x), np.sin(x * 1e-4), np.cos(x), np.cos(x * 1e-4)]
    expected += [np.sin(y), np.sin(y * 1e-4), np.cos(y), np.cos(y * 1e-4)]
    np.testing.assert_allclose(pe[0, 5].numpy(), expected, atol=1e-6)
    net = ViT(
        {
            "width": 32,
            "depth": 1,
            "heads": 2,
            "mlp_dim": 32,
            "image_size": 32,
            "posemb": "sincos2d",
            "pool": "tok",
            "out_dim": None,
        }
    ).eval()
    assert "pos_embedding" not in net.state_dict()  # fixed, so not stored with the weights
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_making_an_encoder_leaves_pytorchs_thread_count_alone(tiny):
    # PyTorch sizes its pool by the cores this process may use; an encoder has no business changing
    # a setting of the whole process.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(before + 3)
        model.Encoder(tiny.net, tiny.config, device="cpu")
        assert torch.get_num_threads() == before + 3
    finally:
        torch.set_num_threads(before)
