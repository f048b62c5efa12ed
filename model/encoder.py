"""Encoders: a ViT, its config, its preprocessing and its renderer, behind one batched API.

    enc = model.load("clippo_b16_yfcc100m")          # or a directory, or model.create("tiny-test")
    texts = enc.encode_texts(["a cat", "кошка"])     # (2, dim) float32, unit rows
    images = enc.encode_images(["cat.jpg", b"..."])  # BadImageError names a file that cannot be read
    done = enc.encode_images_tolerant(paths)         # encodes what it can, lists the failures

Inference runs in `torch.inference_mode`, in batches; texts are grouped by how many patch rows
their rendering fills, so that models with `text_trim` read only those rows and every batch stays
rectangular. Decoding and rendering move to worker processes for large batches.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import rendering
from ground import home
from ground.errors import FileFormatError, InputError, PixglotError
from model.device_resize import resize_batch
from model.images import BadImageError, ImageSource, open_image
from model.preprocess import check_preprocessing, prepare_image
from model.vit import ViT, VitConfig
from model.workers import ordered_map
from rendering.text_cache import RenderedTexts, TextCache

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
CONFIGS_DIR = Path(__file__).with_name("configs")
# Models that ship with Pixglot (e.g. "demo"), looked up after PIXGLOT_HOME/models.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "assets" / "models"
PRECISIONS = ("auto", "fp32", "bf16")
# Below these counts a batch is decoded or rendered in-process: starting workers (once per process,
# a few seconds) and feeding them would cost more. Rendering a text takes well under a millisecond.
_MIN_IMAGES_FOR_WORKERS = 64
_MIN_TEXTS_FOR_WORKERS = 8192
QUANTIZATIONS = (None, "int8")


@dataclass
class EncodedImages:
    vectors: np.ndarray  # (len(ok), dim) float32, unit rows
    ok: list[int]  # input positions of the rows of `vectors`
    failures: list[tuple[int, str]]  # input position and the reason it could not be encoded


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def read_shipped_config(name: str) -> dict:
    path = CONFIGS_DIR / f"{name}.json"
    if not path.is_file():
        raise InputError(f"no shipped model config {name!r}; shipped: {', '.join(shipped_configs())}")
    return json.loads(path.read_text())


def complete_config(config: dict) -> dict:
    """A model config with every default written out, checked for consistency."""
    cfg = dict(config)
    for key in ("architecture", "renderer"):
        if not isinstance(cfg.get(key), dict):
            raise InputError(f"model config lacks the {key!r} dict")
    arch = VitConfig.from_dict(cfg["architecture"])
    cfg["architecture"] = arch.to_dict()
    cfg["preprocessing"] = check_preprocessing(cfg.get("preprocessing", {}))
    renderer = {"image_size": arch.image_size, "patch_size": arch.patch_size, **cfg["renderer"]}
    # The resolved options (the renderer's defaults included) are stored so that a later change of
    # a default cannot change what a saved model reads.
    renderer = rendering.renderer_from_config(renderer).config
    size = renderer["image_size"]
    if (size if isinstance(size, int) else tuple(size)) not in (arch.image_size, (arch.image_size,) * 2):
        raise InputError(f"renderer image_size {size} differs from the model's {arch.image_size}")
    if renderer["patch_size"] != arch.patch_size:
        raise InputError(
            f"renderer patch_size {renderer['patch_size']} differs from the model's {arch.patch_size}"
        )
    cfg["renderer"] = renderer
    cfg["text_trim"] = bool(cfg.get("text_trim", False))
    knows = cfg.get("knows", [])
    if not isinstance(knows, list) or not all(isinstance(kind, str) and kind for kind in knows):
        raise InputError(
            f'"knows" lists the kinds of pictures the model learnt, e.g. ["photos"]; got {knows!r}'
        )
    cfg.setdefault("format_version", FORMAT_VERSION)
    cfg.setdefault("provenance", {})
    return cfg


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_for_model(
    src: ImageSource, size: int, preprocessing: dict, resized: bool = True
) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """The resized image (`resized=False`: the picture as decoded, for `resize_batch`), or None and
    (source, reason): a worker task, and exceptions may not pickle."""
    try:
        if resized:
            return prepare_image(src, size, preprocessing), None
        return np.asarray(open_image(src)), None
    except BadImageError as err:
        return None, (err.path, err.reason)


def _render_for_model(renderer: dict, trim: bool, texts: list[str]) -> list[tuple[np.ndarray, int | None]]:
    """Worker task: texts drawn as one batch, each with the patch rows the model reads (None: the
    whole canvas)."""
    drawn = rendering.shared_renderer(renderer).render_for_model(texts, trim)
    # Copies: a view would keep its whole batch of full canvases alive while it waits to be encoded.
    return [(image.copy(), rows) for image, rows in drawn]


class Encoder:
    """One ViT that embeds photos and rendered text into the same unit sphere."""

    def __init__(
        self,
        net: ViT,
        config: dict,
        name: str | None = None,
        device: str | None = None,
        precision: str = "auto",
        quantize: str | None = None,
    ):
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r}: expected one of {PRECISIONS}")
        if quantize not in QUANTIZATIONS:
            raise InputError(f"quantize {quantize!r}: expected one of {QUANTIZATIONS}")
        self.config = complete_config(config)
        self.name = name or self.config.get("name") or "unnamed"
        self.device = torch.device(device or _default_device())
        if quantize and self.device.type != "cpu":
            raise InputError(f"quantize={quantize!r} runs on the CPU only, not on {self.device}")
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.quantize = quantize
        self.net = net.eval().to(self.device)  # the fp32 weights: what save() writes
        self._runner = _quantized(self.net) if quantize == "int8" else self.net
        self._fingerprint: str | None = None
        self._renderer: rendering.Renderer | None = None

    def __reduce__(self) -> tuple:
        # Sent to another process (a Ray actor) as fp32 weights on the CPU and the config: it runs on
        # that process's default device, whatever this one's is.
        weights = {key: value.detach().cpu() for key, value in self.net.state_dict().items()}
        return _rebuilt, (self.config, weights, self.name, self.quantize)

    def __repr__(self) -> str:
        arch = self.config["architecture"]
        return (
            f"Encoder({self.name!r}, width={arch['width']}, depth={arch['depth']}, dim={self.dim}, "
            f"device={self.device.type}, precision={self.precision}, quantize={self.quantize})"
        )

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def image_size(self) -> int:
        return self.net.config.image_size

    @property
    def description(self) -> str:
        return self.config.get("description", "")

    @property
    def knows(self) -> tuple[str, ...]:
        """The kinds of pictures the model learnt (e.g. "photos", "emoji"); empty when its config does
        not say."""
        return tuple(self.config.get("knows", ()))

    @property
    def renderer(self) -> rendering.Renderer:
        if self._renderer is None:
            self._renderer = rendering.shared_renderer(self.config["renderer"])
        return self._renderer

    @property
    def fingerprint(self) -> str:
        """sha256 over the weights (names, shapes, fp32 bytes): equal weights, equal fingerprint."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for key, value in sorted(self.net.state_dict().items()):
                tensor = value.detach().to("cpu", torch.float32).contiguous()
                digest.update(f"{key}:{tuple(tensor.shape)};".encode())
                digest.update(tensor.numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _default_batch(self, kind: str) -> int:
        if self.device.type == "cuda":
            return 256
        return 16 if kind == "images" else 64

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, x: torch.Tensor, rows: int | None) -> np.ndarray:
        """x: (N, H, W, 3) in the model's value range, any float dtype, on any device."""
        with torch.inference_mode(), self._autocast():
            x = x.to(self.device, torch.float32, non_blocking=True).permute(0, 3, 1, 2)
            z = self._runner(x, rows=rows)
        return z.float().cpu().numpy()

    def _forward_uint8(self, pixels: np.ndarray | torch.Tensor, rows: int | None) -> np.ndarray:
        low, high = self.config["preprocessing"]["value_range"]
        if isinstance(pixels, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(pixels))
        x = pixels.to(self.device)
        # Same arithmetic as preprocess.to_value_range, done on the device (4x less to transfer).
        x = low + (high - low) * (x.to(torch.float32) / 255)
        return self._forward(x, rows)

    def embed_pixels(
        self, x: np.ndarray, rows: int | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """(N, H, W, 3) float32 already in the model's value range -> (N, dim) unit rows.
        `rows` reads only the top patch rows (the input may be full height or cropped)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[3] != 3:
            raise InputError(f"embed_pixels expects N x H x W x 3 pixels, got shape {x.shape}")
        batch_size = batch_size or self._default_batch("images")
        out = np.zeros((len(x), self.dim), np.float32)
        for start in range(0, len(x), batch_size):
            out[start : start + batch_size] = self._forward(
                torch.from_numpy(x[start : start + batch_size]), rows
            )
        return out

    def render_query(self, text: str) -> np.ndarray:
        """The uint8 H x W x 3 image of `text` the model reads (the full canvas; a model with
        `text_trim` reads its top rows that hold text)."""
        return self.renderer.render(_check_text(text, 0))

    def encode_texts(
        self, texts: Sequence[str], batch_size: int | None = None, cached: bool = False
    ) -> np.ndarray:
        """(N, dim) unit rows. `cached`: read the texts' pixels from the rendered-text cache
        (`rendering.text_cache`), drawing there those it lacks: for texts that will be read again,
        such as evaluation queries; the pixels, and so the vectors, are the same."""
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        batch_size = batch_size or self._default_batch("texts")
        if cached:
            return self._encode_rendered(
                TextCache(self.config["renderer"], self.config["text_trim"]).get(texts), batch_size
            )
        out = np.zeros((len(texts), self.dim), np.float32)
        task = functools.partial(_render_for_model, self.config["renderer"], self.config["text_trim"])
        groups: dict[int | None, list[tuple[int, np.ndarray]]] = {}

        def flush(rows: int | None) -> None:
            items = groups.pop(rows)
            index = [i for i, _ in items]
            out[index] = self._forward_uint8(np.stack([image for _, image in items]), rows)

        chunks = [texts[i : i + rendering.BATCH] for i in range(0, len(texts), rendering.BATCH)]
        drawn = ordered_map(task, chunks, min_items=_MIN_TEXTS_FOR_WORKERS // rendering.BATCH, chunk=1)
        for i, (image, rows) in enumerate(itertools.chain.from_iterable(drawn)):
            groups.setdefault(rows, []).append((i, image))
            if len(groups[rows]) >= batch_size:
                flush(rows)
        for rows in list(groups):
            flush(rows)
        return out

    def _encode_rendered(self, rendered: RenderedTexts, batch_size: int) -> np.ndarray:
        out = np.zeros((len(rendered), self.dim), np.float32)
        patch, width = rendered.rows.shape[1:]
        for rows in np.unique(rendered.count).tolist():
            members = np.flatnonzero(rendered.count == rows)
            # A model without text_trim reads the whole canvas, which is what the cache holds then.
            read = rows if self.config["text_trim"] else None
            for chunk in np.array_split(members, -(-len(members) // batch_size)):
                picked = rendered.start[chunk, None] + np.arange(rows)
                gray = rendered.rows[picked].reshape(len(chunk), rows * patch, width)
                out[chunk] = self._forward_uint8(np.repeat(gray[..., None], 3, axis=3), read)
        return out

    def _prepared(
        self, images: list[ImageSource]
    ) -> Iterator[tuple[np.ndarray | None, tuple[str, str] | None]]:
        """Each image decoded, or its failure. Files and bytes are also resized (in worker processes
        for large batches); pictures already in memory (e.g. what indexing workers decoded) are left
        at their size, for `_encode_batches` to resize on the model's device."""
        task = functools.partial(
            prepare_for_model, size=self.image_size, preprocessing=self.config["preprocessing"]
        )
        if all(isinstance(src, Image.Image) for src in images):
            return (task(src, resized=False) for src in images)
        return ordered_map(task, images, min_items=_MIN_IMAGES_FOR_WORKERS)

    def _encode_batches(
        self, prepared: Iterable[tuple[int, np.ndarray]], batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """(positions, vectors) per batch of (position, uint8 picture of any size)."""

        def encoded(batch: list[tuple[int, np.ndarray]]) -> tuple[list[int], np.ndarray]:
            pixels = resize_batch([picture for _, picture in batch], self.image_size, self.device)
            return [i for i, _ in batch], self._forward_uint8(pixels, None)

        batch: list[tuple[int, np.ndarray]] = []
        for item in prepared:
            batch.append(item)
            if len(batch) >= batch_size:
                yield encoded(batch)
                batch = []
        if batch:
            yield encoded(batch)

    def encode_prepared(self, pixels: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 images that `prepare_for_model` made (S: image_size) -> (N, dim) unit rows."""
        size = self.image_size
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (size, size, 3):
            raise InputError(
                f"encode_prepared expects N x {size} x {size} x 3 uint8, got {pixels.dtype} {pixels.shape}"
            )
        out = np.zeros((len(pixels), self.dim), np.float32)
        for index, vectors in self._encode_batches(
            enumerate(pixels), batch_size or self._default_batch("images")
        ):
            out[index] = vectors
        return out

    def encode_images(self, images: Sequence[ImageSource], batch_size: int | None = None) -> np.ndarray:
        """(N, dim) unit rows; raises BadImageError at the first image that cannot be read."""
        sources = _image_list(images)

        def checked() -> Iterator[tuple[int, np.ndarray]]:
            for i, (array, error) in enumerate(self._prepared(sources)):
                if error is not None:
                    raise BadImageError(*error)
                yield i, array

        out = np.zeros((len(sources), self.dim), np.float32)
        for index, vectors in self._encode_batches(checked(), batch_size or self._default_batch("images")):
            out[index] = vectors
        return out

    def encode_images_tolerant(
        self, images: Sequence[ImageSource], batch_size: int | None = None
    ) -> EncodedImages:
        """Encodes every image that can be read; the others are listed with the reason."""
        sources = _image_list(images)
        failures: list[tuple[int, str]] = []

        def readable() -> Iterator[tuple[int, np.ndarray]]:
            for i, (array, error) in enumerate(self._prepared(sources)):
                if error is not None:
                    failures.append((i, str(BadImageError(*error))))
                else:
                    yield i, array

        ok: list[int] = []
        chunks: list[np.ndarray] = []
        for index, vectors in self._encode_batches(readable(), batch_size or self._default_batch("images")):
            ok.extend(index)
            chunks.append(vectors)
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return EncodedImages(vectors, ok, failures)


def _rebuilt(config: dict, weights: dict[str, torch.Tensor], name: str, quantize: str | None) -> Encoder:
    net = ViT(config["architecture"])
    net.load_state_dict(weights)
    return Encoder(net, config, name=name, device="cpu" if quantize else None, quantize=quantize)


def _image_list(images: Sequence[ImageSource]) -> list[ImageSource]:
    if isinstance(images, (str, bytes, Path)):
        raise InputError(
            f"expected a sequence of images, got a single {type(images).__name__}; wrap it in a list"
        )
    return list(images)


def _check_text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise InputError(f"text #{index} is a {type(text).__name__}, not a string")
    return text


def _quantized(net: ViT) -> torch.nn.Module:
    """A copy of `net` whose Linear layers run as int8 (weights per output channel, activations
    quantized on the fly); the fp32 model stays as it is."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # PyTorch announces a future move of this API; it works in the pinned version
        return quantize_dynamic(copy.deepcopy(net).cpu(), {torch.nn.Linear: per_channel_dynamic_qconfig})


def create(config: dict | str, seed: int = 0, device: str | None = None, **options) -> Encoder:
    """A randomly initialised encoder; a str names a shipped config (model/configs/<name>.json)."""
    source = config if isinstance(config, str) else None
    cfg = read_shipped_config(config) if isinstance(config, str) else dict(config)
    cfg = complete_config(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ViT(cfg["architecture"])
    cfg["provenance"] = {
        **cfg.get("provenance", {}),
        "init": "random",
        "seed": seed,
        **({"config": source} if source else {}),
    }
    return Encoder(net, cfg, name=cfg.get("name") or source, device=device, **options)


def model_dir(name_or_path: str | Path) -> Path:
    """The directory of a model given by path or by name (PIXGLOT_HOME/models/<name>, then shipped)."""
    path = Path(name_or_path).expanduser()
    candidates = [path]
    if isinstance(name_or_path, str) and "/" not in name_or_path and os.sep not in name_or_path:
        candidates += [home.models_dir() / name_or_path, SHIPPED_MODELS_DIR / name_or_path]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    installed = ", ".join(installed_models() + shipped_models()) or "none"
    raise PixglotError(
        f"no model {str(name_or_path)!r} (a directory with {CONFIG_FILE} and {MODEL_FILE}, or "
        f"a name in {home.models_dir()}; installed: {installed}); "
        "`pixglot models pull NAME` downloads an official CLIPPO model"
    )


def installed_models() -> list[str]:
    return sorted(p.parent.name for p in home.models_dir().glob(f"*/{CONFIG_FILE}"))


def shipped_models() -> list[str]:
    """Models that come with the source tree (data/assets/models), e.g. the demo model."""
    return sorted(p.parent.name for p in SHIPPED_MODELS_DIR.glob(f"*/{CONFIG_FILE}"))


def read_model_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(path, f"unreadable model config ({err})") from None
    if not isinstance(config, dict):
        raise FileFormatError(path, "model config is not a JSON object")
    return config


def load(
    name_or_path: str | Path, device: str | None = None, precision: str = "auto", quantize: str | None = None
) -> Encoder:
    """An encoder from a model directory or an installed model's name.

    device: "cuda" when available, else "cpu". precision: "auto" (bf16 autocast on CUDA, fp32 on the
    CPU), "fp32", or "bf16" (on a CPU, faster only where it computes bf16 natively, e.g. AVX512-BF16
    or AMX). quantize="int8": Linear layers in int8 on the CPU, about twice the fp32 speed, with
    embeddings slightly off fp32's. Neither option changes the weights or the fingerprint.
    """
    directory = model_dir(name_or_path)
    config = read_model_config(directory)
    try:
        config = complete_config(config)
    except InputError as err:
        raise FileFormatError(directory / CONFIG_FILE, str(err)) from None
    weights = directory / MODEL_FILE
    try:
        state = load_file(weights)
    except FileNotFoundError:
        raise FileFormatError(weights, "missing: the model directory has no weights") from None
    except (OSError, SafetensorError) as err:
        raise FileFormatError(weights, f"unreadable weights ({err})") from None
    net = ViT(config["architecture"])
    expected = net.state_dict()
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise FileFormatError(
                weights,
                f"tensor {key!r} has shape {tuple(value.shape)}, the config's "
                f"architecture needs {tuple(expected[key].shape)}",
            )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise FileFormatError(
            weights,
            f"weights do not match the config's architecture "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})",
        )
    net.load_state_dict(state)
    name = config.get("name") or directory.name
    return Encoder(net, config, name=name, device=device, precision=precision, quantize=quantize)


def save(encoder: Encoder, directory: str | Path) -> Path:
    """Writes `directory`/model.safetensors and config.json (each atomically); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in encoder.net.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{MODEL_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt", "pixglot_format": str(FORMAT_VERSION)})
        os.replace(tmp, directory / MODEL_FILE)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    config = {**encoder.config, "name": encoder.config.get("name") or encoder.name}
    _write_json_atomic(directory / CONFIG_FILE, config)
    return directory


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


__all__ = [
    "EncodedImages",
    "Encoder",
    "create",
    "installed_models",
    "load",
    "model_dir",
    "save",
    "shipped_configs",
]
