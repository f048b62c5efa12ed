"""big_vision checkpoints (.npz) -> Pixglot model directories (model.safetensors + config.json).

A big_vision .npz holds a flat mapping of '/'-separated parameter paths, e.g.
`params/img/Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel`. Two layouts exist: one entry
per encoder block (`encoderblock_N`) or, for models trained with `scan=True`, one `encoderblock`
entry per parameter with the layers stacked along a leading axis. The architecture (width, depth,
heads, MLP size, patch, image size, pooling, embedding size) is read off the shapes.
"""

from __future__ import annotations

import datetime
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ground.download import sha256_file
from ground.errors import FileFormatError, InputError
from model.encoder import Encoder, save
from model.preprocess import DEFAULT_PREPROCESSING
from model.vit import ViT, VitConfig
from rendering.unifont import DEFAULTS as UNIFONT_DEFAULTS

# The unifont renderer's defaults are big_vision's render_unifont settings of the published CLIPPO models.
CLIPPO_RENDERER = {"style": "unifont", **UNIFONT_DEFAULTS}
_BLOCK = "Transformer/encoderblock"
# Reads one parameter of a block: (key under the block, expected shape) -> the array.
Getter = Callable[[str, tuple[int, ...]], np.ndarray]
_FLAT_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")


class CheckpointError(FileFormatError):
    """A checkpoint whose layout or shapes Pixglot cannot convert; names the file and the key."""


class _Params:
    """The image-model parameters of a checkpoint, read lazily, each key checked and ticked off."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.npz = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CheckpointError(path, "no such file") from None
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise CheckpointError(path, f"not a NumPy .npz checkpoint ({err})") from None
        if not hasattr(self.npz, "files"):  # np.load gave a plain array
            raise CheckpointError(path, "holds a single array, not a .npz checkpoint of named parameters")
        keys = list(self.npz.files)
        self.prefix = next(
            (p for p in ("params/img/", "img/", "params/", "") if f"{p}embedding/kernel" in keys), None
        )
        if self.prefix is None:
            raise CheckpointError(
                path,
                "no 'params/img/embedding/kernel': not a big_vision ViT or CLIPPO "
                f"checkpoint (first keys: {', '.join(keys[:5]) or 'none'})",
            )
        self.outer = self.prefix[: -len("img/")] if self.prefix.endswith("img/") else self.prefix
        if any(k.startswith(f"{self.outer}txt/") for k in keys):
            raise CheckpointError(
                path,
                f"has a separate text model ('{self.outer}txt/...'): a two-tower checkpoint, not a "
                "one-tower CLIPPO model that reads text as pixels",
            )
        self.keys = {k[len(self.prefix) :]: k for k in keys if k.startswith(self.prefix)}
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.keys

    def full_key(self, key: str) -> str:
        return self.keys.get(key, self.prefix + key)

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self.keys:
            raise CheckpointError(self.path, f"missing key {self.prefix + key!r}")
        value = self.npz[self.keys[key]]
        if value.dtype.kind != "f":
            raise CheckpointError(
                self.path, f"key {self.keys[key]!r} has dtype {value.dtype}, expected floats"
            )
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise CheckpointError(
                self.path, f"key {self.keys[key]!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
            )
        self.used.add(key)
        return value.astype(np.float32)

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.keys:
            raise CheckpointError(self.path, f"missing key {self.prefix + key!r}")
        return tuple(self.npz[self.keys[key]].shape)

    def temperature(self) -> np.ndarray | None:
        key = f"{self.outer}t"
        if self.outer == self.prefix or key not in self.npz.files:
            return None
        value = self.npz[key]
        if value.shape != (1,) or value.dtype.kind != "f":
            raise CheckpointError(
                self.path,
                f"key {key!r} has shape {value.shape} and dtype {value.dtype}, "
                "expected one float (the log temperature)",
            )
        return value.astype(np.float32)

    def unused(self) -> list[str]:
        return sorted(self.keys[k] for k in self.keys if k not in self.used)


def _layout(params: _Params) -> tuple[str, int]:
    """('flat' | 'scan', depth)."""
    flat = {int(m.group(1)) for k in params.keys if (m := _FLAT_BLOCK.match(k))}
    scan = any(k.startswith(f"{_BLOCK}/") for k in params.keys)
    if flat and scan:
        raise CheckpointError(params.path, "has both 'encoderblock_N' and stacked 'encoderblock' keys")
    if scan:
        depth = params.shape(f"{_BLOCK}/LayerNorm_0/scale")[0]
        return "scan", depth
    if not flat:
        raise CheckpointError(params.path, f"no encoder blocks under {params.prefix + 'Transformer/'!r}")
    depth = max(flat) + 1
    if flat != set(range(depth)):
        missing = sorted(set(range(depth)) - flat)
        raise CheckpointError(params.path, f"encoder blocks {missing} are missing (found {sorted(flat)})")
    return "flat", depth


def infer_architecture(params: _Params) -> tuple[VitConfig, str]:
    layout, depth = _layout(params)
    kernel = params.shape("embedding/kernel")
    if len(kernel) != 4 or kernel[0] != kernel[1] or kernel[2] != 3:
        raise CheckpointError(
            params.path,
            f"key {params.full_key('embedding/kernel')!r} has shape {kernel}, "
            "expected (patch, patch, 3, width)",
        )
    patch, width = kernel[0], kernel[3]
    block = f"{_BLOCK}/" if layout == "scan" else f"{_BLOCK}_0/"
    lead = 1 if layout == "scan" else 0
    query = params.shape(f"{block}MultiHeadDotProductAttention_0/query/kernel")[lead:]
    if len(query) != 3 or query[0] != width or query[1] * query[2] != width:
        raise CheckpointError(
            params.path,
            f"attention query kernel has shape {query}, expected ({width}, heads, {width} / heads)",
        )
    heads = query[1]
    mlp_dim = params.shape(f"{block}MlpBlock_0/Dense_0/kernel")[-1]

    if params.has("pos_embedding"):
        posemb, tokens = "learn", params.shape("pos_embedding")[1]
        grid = math.isqrt(tokens)
        if grid * grid != tokens:
            raise CheckpointError(
                params.path,
                f"key {params.full_key('pos_embedding')!r} holds {tokens} positions, not a square grid",
            )
    else:
        raise CheckpointError(
            params.path,
            f"missing key {params.full_key('pos_embedding')!r}; checkpoints "
            "with fixed sin-cos position embeddings do not say their image size",
        )
    pool = "map" if params.has("MAPHead_0/probe") else "tok" if params.has("cls") else "gap"
    out_dim = params.shape("head/kernel")[-1] if params.has("head/kernel") else None
    if any(k.startswith("pre_logits/") for k in params.keys):
        raise CheckpointError(params.path, "has a 'pre_logits' layer, which Pixglot's ViT does not support")
    config = VitConfig(
        width=width,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        patch_size=patch,
        image_size=grid * patch,
        posemb=posemb,
        pool=pool,
        out_dim=out_dim,
    )
    return config, layout


def _attention(get: Getter, prefix: str, width: int, heads: int) -> dict[str, np.ndarray]:
    """flax MultiHeadDotProductAttention -> PyTorch Linear weights (out x in)."""
    hd = width // heads
    out = {}
    for name in ("query", "key", "value"):
        out[f"{name}.w"] = get(f"{prefix}/{name}/kernel", (width, heads, hd)).reshape(width, width).T
        out[f"{name}.b"] = get(f"{prefix}/{name}/bias", (heads, hd)).reshape(width)
    out["out.w"] = get(f"{prefix}/out/kernel", (heads, hd, width)).reshape(width, width).T
    out["out.b"] = get(f"{prefix}/out/bias", (width,))
    return out


def _mlp(get: Getter, prefix: str, width: int, mlp_dim: int, dest: str) -> dict[str, np.ndarray]:
    return {
        f"{dest}.fc1.weight": get(f"{prefix}/Dense_0/kernel", (width, mlp_dim)).T,
        f"{dest}.fc1.bias": get(f"{prefix}/Dense_0/bias", (mlp_dim,)),
        f"{dest}.fc2.weight": get(f"{prefix}/Dense_1/kernel", (mlp_dim, width)).T,
        f"{dest}.fc2.bias": get(f"{prefix}/Dense_1/bias", (width,)),
    }


def _layer_norm(get: Getter, prefix: str, width: int, dest: str) -> dict[str, np.ndarray]:
    return {
        f"{dest}.weight": get(f"{prefix}/scale", (width,)),
        f"{dest}.bias": get(f"{prefix}/bias", (width,)),
    }


def state_dict_from_params(params: _Params, config: VitConfig, layout: str) -> dict[str, torch.Tensor]:
    c, w = config, config.width
    sd: dict[str, np.ndarray] = {
        "stem.weight": params.get("embedding/kernel", (c.patch_size, c.patch_size, 3, w)).transpose(
            3, 2, 0, 1
        ),
        "stem.bias": params.get("embedding/bias", (w,)),
        "pos_embedding": params.get("pos_embedding", (1, c.grid * c.grid, w)),
    }
    if c.pool == "tok":
        sd["cls"] = params.get("cls", (1, 1, w))

    stacked: dict[str, np.ndarray] = {}

    def block_getter(i: int) -> Getter:
        if layout == "flat":
            return lambda key, shape: params.get(f"{_BLOCK}_{i}/{key}", shape)

        def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
            if key not in stacked:
                stacked[key] = params.get(f"{_BLOCK}/{key}", (c.depth, *shape))
            return stacked[key][i]

        return get

    for i in range(c.depth):
        get, dest = block_getter(i), f"blocks.{i}"
        sd.update(_layer_norm(get, "LayerNorm_0", w, f"{dest}.norm1"))
        sd.update(_layer_norm(get, "LayerNorm_1", w, f"{dest}.norm2"))
        att = _attention(get, "MultiHeadDotProductAttention_0", w, c.heads)
        sd[f"{dest}.attn.qkv.weight"] = np.concatenate([att["query.w"], att["key.w"], att["value.w"]])
        sd[f"{dest}.attn.qkv.bias"] = np.concatenate([att["query.b"], att["key.b"], att["value.b"]])
        sd[f"{dest}.attn.out.weight"], sd[f"{dest}.attn.out.bias"] = att["out.w"], att["out.b"]
        sd.update(_mlp(get, "MlpBlock_0", w, c.mlp_dim, f"{dest}.mlp"))
    sd.update(_layer_norm(params.get, "Transformer/encoder_norm", w, "encoder_norm"))

    if c.pool == "map":
        sd["map_head.probe"] = params.get("MAPHead_0/probe", (1, 1, w))
        att = _attention(params.get, "MAPHead_0/MultiHeadDotProductAttention_0", w, c.heads)
        sd["map_head.q.weight"], sd["map_head.q.bias"] = att["query.w"], att["query.b"]
        sd["map_head.kv.weight"] = np.concatenate([att["key.w"], att["value.w"]])
        sd["map_head.kv.bias"] = np.concatenate([att["key.b"], att["value.b"]])
        sd["map_head.out.weight"], sd["map_head.out.bias"] = att["out.w"], att["out.b"]
        sd.update(_layer_norm(params.get, "MAPHead_0/LayerNorm_0", w, "map_head.norm"))
        sd.update(_mlp(params.get, "MAPHead_0/MlpBlock_0", w, c.mlp_dim, "map_head.mlp"))
    if c.out_dim:
        sd["head.weight"] = params.get("head/kernel", (w, c.out_dim)).T
        sd["head.bias"] = params.get("head/bias", (c.out_dim,))
    t = params.temperature()
    sd["t"] = t if t is not None else np.full((1,), math.log(c.temperature_init), np.float32)

    unused = params.unused()
    if unused:
        shown = ", ".join(repr(k) for k in unused[:5])
        raise CheckpointError(
            params.path,
            f"unexpected keys the ViT has no place for: {shown}"
            + (f" and {len(unused) - 5} more" if len(unused) > 5 else ""),
        )
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def load_checkpoint(path: str | Path) -> tuple[ViT, dict]:
    """A big_vision .npz as a ViT (fp32, eval mode) and the model config that describes it."""
    path = Path(path)
    params = _Params(path)
    try:
        arch, layout = infer_architecture(params)
        net = ViT(arch)
        state = state_dict_from_params(params, arch, layout)
        has_temperature = params.temperature() is not None
    finally:
        params.npz.close()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:  # a mapping bug, not a user error: the shapes were already checked
        raise RuntimeError(f"converter mapping incomplete: missing {missing}, unexpected {unexpected}")
    renderer = {**CLIPPO_RENDERER, "image_size": arch.image_size, "patch_size": arch.patch_size}
    config = {
        "name": path.stem,
        "architecture": arch.to_dict(),
        "preprocessing": dict(DEFAULT_PREPROCESSING),
        "renderer": renderer,
        # The official models saw every text on the full canvas: reading fewer rows would change them.
        "text_trim": False,
        "provenance": {
            "source": path.name,
            "sha256": sha256_file(path),
            "format": "big_vision npz",
            "layout": layout,
            "temperature_in_checkpoint": has_temperature,
            "converted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }
    return net.eval(), config


def convert(
    path: str | Path,
    out: str | Path,
    name: str | None = None,
    overwrite: bool = False,
    provenance: dict | None = None,
    knows: Sequence[str] = (),
) -> Path:
    """Convert a big_vision .npz into the model directory `out`; returns `out`. `knows`: the kinds of
    pictures the checkpoint learnt, e.g. ("photos",), which the indexer compares with a folder's."""
    out = Path(out)
    if (out / "config.json").exists() and not overwrite:
        raise InputError(f"{out} already holds a model; choose another directory or overwrite it")
    net, config = load_checkpoint(path)
    config["name"] = name or out.name
    config["provenance"].update(provenance or {})
    if knows:
        config["knows"] = list(knows)
    save(Encoder(net, config), out)
    return out
