"""big_vision .npz checkpoints -> Pixglot models, checked against a NumPy forward pass written
here from big_vision's ViT / one-tower maths (flax parameter layout, nothing shared with model/)."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from http_support import FileServer

import model
from ground.download import DownloadError, download
from ground.errors import InputError
from model.convert import CheckpointError, convert
from model.pull import BASE_URL_ENV, pull
from pixglot.cli import main

WIDTH, DEPTH, HEADS, MLP, PATCH, GRID, OUT = 32, 2, 4, 48, 16, 4, 24
IMAGE = PATCH * GRID


def flax_params(seed: int = 0, pool: str = "map") -> dict[str, np.ndarray]:
    """Random parameters with big_vision's names and shapes (one-tower CLIPPO, `params/` prefix)."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    hd = WIDTH // HEADS
    p = {"img/embedding/kernel": r(PATCH, PATCH, 3, WIDTH, scale=0.05), "img/embedding/bias": r(WIDTH)}
    p["img/pos_embedding"] = r(1, GRID * GRID, WIDTH)

    def attention(prefix: str) -> None:
        for name in ("query", "key", "value"):
            p[f"{prefix}/{name}/kernel"] = r(WIDTH, HEADS, hd)
            p[f"{prefix}/{name}/bias"] = r(HEADS, hd)
        p[f"{prefix}/out/kernel"] = r(HEADS, hd, WIDTH)
        p[f"{prefix}/out/bias"] = r(WIDTH)

    def mlp(prefix: str) -> None:
        p[f"{prefix}/Dense_0/kernel"], p[f"{prefix}/Dense_0/bias"] = r(WIDTH, MLP), r(MLP)
        p[f"{prefix}/Dense_1/kernel"], p[f"{prefix}/Dense_1/bias"] = r(MLP, WIDTH), r(WIDTH)

    def norm(prefix: str) -> None:
        p[f"{prefix}/scale"], p[f"{prefix}/bias"] = 1 + r(WIDTH), r(WIDTH)

    for i in range(DEPTH):
        block = f"img/Transformer/encoderblock_{i}"
        norm(f"{block}/LayerNorm_0")
        attention(f"{block}/MultiHeadDotProductAttention_0")
        norm(f"{block}/LayerNorm_1")
        mlp(f"{block}/MlpBlock_0")
    norm("img/Transformer/encoder_norm")
    if pool == "map":
        p["img/MAPHead_0/probe"] = r(1, 1, WIDTH)
        attention("img/MAPHead_0/MultiHeadDotProductAttention_0")
        norm("img/MAPHead_0/LayerNorm_0")
        mlp("img/MAPHead_0/MlpBlock_0")
    p["img/head/kernel"], p["img/head/bias"] = r(WIDTH, OUT), r(OUT)
    p["t"] = np.array([np.log(10.0)], np.float32)
    return {f"params/{k}": v for k, v in p.items()}


def to_scan(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The `scan=True` layout: one `encoderblock` entry per parameter, layers stacked on axis 0."""
    out, stacked = {}, {}
    for key, value in params.items():
        head, sep, rest = key.partition("/Transformer/encoderblock_")
        if not sep:
            out[key] = value
            continue
        layer, _, name = rest.partition("/")
        stacked.setdefault(f"{head}/Transformer/encoderblock/{name}", {})[int(layer)] = value
    for key, layers in stacked.items():
        out[key] = np.stack([layers[i] for i in range(len(layers))])
    return out


def write_npz(path: Path, params: dict[str, np.ndarray]) -> Path:
    np.savez(path, **params)
    return path


# --- the reference: big_vision's maths on flax-layout parameters, float64 ---------------------


def _ln(x, p, prefix):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * p[f"{prefix}/scale"] + p[f"{prefix}/bias"]


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _mha(q_in, kv_in, p, prefix):
    def proj(x, name):
        return np.einsum("nld,dhk->nlhk", x, p[f"{prefix}/{name}/kernel"]) + p[f"{prefix}/{name}/bias"]

    q, k, v = proj(q_in, "query"), proj(kv_in, "key"), proj(kv_in, "value")
    logits = np.einsum("nqhk,nmhk->nhqm", q, k) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    o = np.einsum("nhqm,nmhk->nqhk", weights, v)
    return np.einsum("nqhk,hkd->nqd", o, p[f"{prefix}/out/kernel"]) + p[f"{prefix}/out/bias"]


def _mlp(x, p, prefix):
    h = _gelu(x @ p[f"{prefix}/Dense_0/kernel"] + p[f"{prefix}/Dense_0/bias"])
    return h @ p[f"{prefix}/Dense_1/kernel"] + p[f"{prefix}/Dense_1/bias"]


def reference_forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """x: N x H x W x 3 in [-1, 1] -> normalised embeddings, as big_vision's one-tower model."""
    p = {k.removeprefix("params/img/"): v.astype(np.float64) for k, v in params.items()}
    n, h, w, _ = x.shape
    kernel = p["embedding/kernel"]
    patch = kernel.shape[0]
    patches = x.reshape(n, h // patch, patch, w // patch, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    tokens = patches.reshape(n, -1, patch * patch * 3) @ kernel.reshape(-1, kernel.shape[-1])
    tokens = tokens + p["embedding/bias"] + p["pos_embedding"]
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}"
        y = _ln(tokens, p, f"{b}/LayerNorm_0")
        tokens = tokens + _mha(y, y, p, f"{b}/MultiHeadDotProductAttention_0")
        tokens = tokens + _mlp(_ln(tokens, p, f"{b}/LayerNorm_1"), p, f"{b}/MlpBlock_0")
    tokens = _ln(tokens, p, "Transformer/encoder_norm")
    if "MAPHead_0/probe" in p:
        probe = np.tile(p["MAPHead_0/probe"], (n, 1, 1))
        pooled = _mha(probe, tokens, p, "MAPHead_0/MultiHeadDotProductAttention_0")
        pooled = pooled + _mlp(_ln(pooled, p, "MAPHead_0/LayerNorm_0"), p, "MAPHead_0/MlpBlock_0")
        pooled = pooled[:, 0]
    else:
        pooled = tokens.mean(1)
    z = pooled @ p["head/kernel"] + p["head/bias"]
    return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-8)


def random_pixels(n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, IMAGE, IMAGE, 3)).astype(np.float32)


# --- conversion -------------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "pool"), [("flat", "map"), ("scan", "map"), ("flat", "gap")])
def test_converted_model_matches_reference_forward(tmp_path, layout, pool):
    params = flax_params(pool=pool)
    npz = write_npz(tmp_path / "ckpt.npz", to_scan(params) if layout == "scan" else params)
    out = convert(npz, tmp_path / "converted")
    encoder = model.load(out)
    x = random_pixels()
    np.testing.assert_allclose(encoder.embed_pixels(x), reference_forward(params, x), atol=2e-5)

    arch = encoder.config["architecture"]
    expected = {"width": WIDTH, "depth": DEPTH, "heads": HEADS, "mlp_dim": MLP, "patch_size": PATCH}
    assert {k: arch[k] for k in expected} == expected
    assert (arch["image_size"], arch["pool"], arch["out_dim"], encoder.dim) == (IMAGE, pool, OUT, OUT)
    assert encoder.config["renderer"]["style"] == "unifont"
    assert encoder.config["text_trim"] is False
    provenance = encoder.config["provenance"]
    assert provenance["layout"] == layout
    assert provenance["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert encoder.net.temperature.item() == pytest.approx(10.0)


def test_flat_and_scan_layouts_give_identical_weights(tmp_path):
    params = flax_params(seed=3)
    flat = model.load(convert(write_npz(tmp_path / "a.npz", params), tmp_path / "a"))
    scan = model.load(convert(write_npz(tmp_path / "b.npz", to_scan(params)), tmp_path / "b"))
    assert flat.fingerprint == scan.fingerprint


def test_missing_image_model_names_the_file(tmp_path):
    npz = write_npz(tmp_path / "other.npz", {"params/encoder/kernel": np.zeros((2, 2), np.float32)})
    with pytest.raises(CheckpointError, match=r"other\.npz.*params/img/embedding/kernel"):
        convert(npz, tmp_path / "out")


def test_wrong_shape_names_the_key_and_shapes(tmp_path):
    params = flax_params()
    key = "params/img/Transformer/encoderblock_1/MlpBlock_0/Dense_1/kernel"
    params[key] = np.zeros((MLP, WIDTH + 1), np.float32)
    npz = write_npz(tmp_path / "bad.npz", params)
    with pytest.raises(CheckpointError) as err:
        convert(npz, tmp_path / "out")
    message = str(err.value)
    assert "bad.npz" in message and key in message and f"({MLP}, {WIDTH + 1})" in message
    assert not (tmp_path / "out" / "config.json").exists()


def test_missing_block_and_unexpected_keys_are_reported(tmp_path):
    params = flax_params()
    del params["params/img/Transformer/encoderblock_0/LayerNorm_1/bias"]
    with pytest.raises(CheckpointError, match="missing key.*encoderblock_0/LayerNorm_1/bias"):
        convert(write_npz(tmp_path / "a.npz", params), tmp_path / "a")

    params = flax_params()
    params["params/img/extra/kernel"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match="unexpected keys.*params/img/extra/kernel"):
        convert(write_npz(tmp_path / "b.npz", params), tmp_path / "b")

    params = to_scan(flax_params())
    key = "params/img/Transformer/encoderblock/LayerNorm_0/scale"
    params[key] = params[key][:1]  # one layer where the others have two
    with pytest.raises(CheckpointError, match="encoderblock/"):
        convert(write_npz(tmp_path / "c.npz", params), tmp_path / "c")


def test_two_tower_checkpoint_is_refused(tmp_path):
    params = {**flax_params(), "params/txt/Embed_0/embedding": np.zeros((10, WIDTH), np.float32)}
    with pytest.raises(CheckpointError, match="two-tower"):
        convert(write_npz(tmp_path / "siglip.npz", params), tmp_path / "out")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.npz: not a NumPy \.npz"):
        convert(path, tmp_path / "out")


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_convert_end_to_end(tmp_path, capsys):
    params = flax_params(seed=5)
    npz = write_npz(tmp_path / "clippo.npz", to_scan(params))
    out = tmp_path / "my-model"
    assert main(["models", "convert", str(npz), "--out", str(out), "--name", "mine"]) == 0
    encoder = model.load(out)
    assert encoder.name == "mine" and encoder.knows == ()
    x = random_pixels(2, seed=7)
    np.testing.assert_allclose(encoder.embed_pixels(x), reference_forward(params, x), atol=2e-5)

    # An existing model is not overwritten without --force.
    assert main(["models", "convert", str(npz), "--out", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["models", "convert", str(npz), "--out", str(out), "--force", "--knows", "photos"]) == 0
    assert model.load(out).knows == ("photos",)

    assert main(["models", "info", str(out)]) == 0
    assert encoder.fingerprint in capsys.readouterr().out


def test_cli_convert_reports_bad_checkpoint(tmp_path, capsys):
    npz = write_npz(tmp_path / "x.npz", {"params/img/embedding/kernel": np.zeros((16, 16, 3), np.float32)})
    assert main(["models", "convert", str(npz), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixglot: error:") and "x.npz" in err and "Traceback" not in err


# --- pull, from a loopback HTTP server (tests/http_support.py) ------------------------------------


NAME = "clippo_b16_yfcc100m"


@pytest.fixture
def npz_bytes(tmp_path) -> bytes:
    return write_npz(tmp_path / "served.npz", flax_params(seed=9)).read_bytes()


def test_pull_resumes_a_partial_download_and_installs(pixglot_home, npz_bytes, monkeypatch, capsys):
    partial = pixglot_home / "cache" / "downloads" / f"{NAME}.npz.part"
    partial.parent.mkdir(parents=True)
    half = len(npz_bytes) // 2
    partial.write_bytes(npz_bytes[:half])
    with FileServer({f"/{NAME}.npz": npz_bytes}) as server:
        monkeypatch.setenv(BASE_URL_ENV, server.url)
        sha = hashlib.sha256(npz_bytes).hexdigest()
        assert main(["models", "pull", NAME, "--quiet", "--sha256", sha]) == 0
    assert server.requests == [(f"/{NAME}.npz", f"bytes={half}-")]
    encoder = model.load(NAME)
    assert encoder.config["provenance"]["sha256"] == sha
    assert encoder.config["provenance"]["sha256_verified"] is True
    assert encoder.config["provenance"]["url"] == f"{server.url}/{NAME}.npz"
    assert encoder.knows == ("photos",)
    assert not partial.exists() and not partial.with_suffix("").exists()  # download removed after install
    x = random_pixels(1)
    np.testing.assert_allclose(encoder.embed_pixels(x), reference_forward(flax_params(seed=9), x), atol=2e-5)

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^{NAME}\s+installed", listing, re.M)
    assert re.search(r"^clippo_b16_100c4\s+pullable", listing, re.M)
    assert re.search(r"^demo\s+shipped\s+w128 d6 p16 map\s+128\s+shaped\s+yes", listing, re.M)


def test_pull_checksum_mismatch_is_an_error_and_installs_nothing(pixglot_home, npz_bytes):
    with (
        FileServer({f"/{NAME}.npz": npz_bytes}) as server,
        pytest.raises(DownloadError, match="checksum mismatch"),
    ):
        pull(NAME, base=server.url, sha256="0" * 64, progress=False)
    assert not (pixglot_home / "models" / NAME).exists()
    assert not list((pixglot_home / "cache" / "downloads").iterdir())


def test_download_restarts_when_the_server_ignores_range(tmp_path, npz_bytes):
    dest = tmp_path / "file.npz"
    (tmp_path / "file.npz.part").write_bytes(b"stale bytes from another file")
    with FileServer({"/f.npz": npz_bytes}, ranges=False) as server:
        digest = download(f"{server.url}/f.npz", dest, progress=False)
    assert dest.read_bytes() == npz_bytes and digest == hashlib.sha256(npz_bytes).hexdigest()


def test_download_of_a_complete_part_file_and_http_errors(tmp_path, npz_bytes):
    dest = tmp_path / "file.npz"
    (tmp_path / "file.npz.part").write_bytes(npz_bytes)
    with FileServer({"/f.npz": npz_bytes}) as server:
        download(f"{server.url}/f.npz", dest, progress=False)  # 416: nothing left to fetch
        assert dest.read_bytes() == npz_bytes
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"{server.url}/missing.npz", tmp_path / "m.npz", progress=False)


def test_pull_unknown_name(pixglot_home):
    with pytest.raises(InputError, match="unknown checkpoint.*clippo_b16_100c4"):
        pull("clippo_b99", progress=False)


def test_pull_without_a_network_names_the_offline_route(pixglot_home, monkeypatch, capsys):
    # A port nothing listens on: the connection is refused, as it is on a machine without a network.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{port}")
    assert main(["models", "pull", NAME, "--quiet"]) == 2
    error = capsys.readouterr().err
    out = pixglot_home / "models" / NAME
    assert "cannot reach the server" in error
    assert f"`pixglot models convert {NAME}.npz --name {NAME} --knows photos --out {out}`" in error
    assert not out.exists()
