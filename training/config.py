"""Training configs: a TOML (or JSON) file checked against a schema and resolved to a complete dict.

Every key has a default except `steps` and `data.train`; a key the schema does not know, a value
of the wrong type or outside its range is an InputError that names the key (e.g.
`optimizer.lr: expected a number > 0, got -1`). Relative paths are read relative to the config
file's directory. The resolved dict (all defaults written out, paths absolute) is what a trained
model's config.json stores under `training`, so every model says how it was made.

Schema (section.key = default: meaning):

    seed = 0                      seed of initialisation, data order and text/text pairing
    steps                         optimizer steps (required)
    name = ""                     model name in config.json (default: the output directory's name)
    description = ""
    knows = []                    kinds of pictures the data shows, e.g. ["photos"] or ["emoji"]:
                                  the indexer warns when a folder holds other kinds
    out = ""                      output directory (the CLI's --out overrides)

    [model]                       the network: a shipped config, a model directory, or inline
    base = ""                     shipped config (model/configs/<name>.json), e.g. "clippo-ti16"
    init_from = ""                model directory or installed name whose weights start training
    architecture = {}             overrides of the architecture (a full one without base/init_from)
    renderer = {}                 overrides of the renderer, e.g. {style = "shaped"}
    preprocessing = {}            overrides of the image preprocessing
    text_trim = true              read only the patch rows that hold text (min 1)

    [data]
    train                         directory of *.parquet shards or one file, or a list (--data)
    eval = ""                     held-out shards evaluated with Recall@k during training (--eval-data)
    eval_fraction = 0.0           or: hold out this fraction of the training images (by key hash)
    eval_max_images = 1000        cap on held-out images (the first by key hash)
    eval_seen_images = 0          also evaluate on this many training images (the first by key
                                  hash), logged as "eval_seen": how well the run fits what it sees
    languages = []                keep only these language codes (empty: all)
    batch_size = 256              captions per micro-batch (the contrastive batch)
    captions_per_image = 1        1: rows drawn at random; k > 1: batch_size / k images with k captions
                                  each, every image encoded once (needs cached images)
    text_pairs = 0.0              fraction of the captions paired with another caption of the same
                                  image (co-training) instead of with the image
    text_pair_partner = "other_language"   the partner caption: in another language (translation
                                  pairs) or "same_language" (e.g. a name and its keywords)
    single_keywords = 0.0         fraction of the word lists (captions "a, b, c", as CLDR keywords
                                  are) shown as one of their words, drawn at random: one-word queries
    workers = 2                   data worker processes (0: in the training process)
    cache_images = "auto"         true: images held in memory by key; false: read per row group;
                                  "auto": true up to cache_max_images distinct keys
    cache_max_images = 200000
    shuffle_window = 16           row groups shuffled together when images are not cached
    resident = "auto"             hold the decoded images and rendered texts on the training device:
                                  true, false (host memory), "auto" (when they take at most half
                                  of its free memory)

    [loss]
    kind = "softmax"              "softmax" (CLIP/CLIPPO) or "sigmoid" (SigLIP, learned bias)
    temperature_init = 0.0        > 0: set the learned temperature at the start (0: the model's own)
    max_temperature = 100.0       the temperature is clipped to at most this
    bias_init = -10.0             sigmoid only

    [optimizer]
    name = "adamw"                "adamw" or "adafactor"
    lr = 0.001                    peak learning rate
    weight_decay = 0.0001         decoupled; matrices only (not biases, norms, embeddings, temperature)
    beta1 = 0.9                   adamw
    beta2 = 0.999                 adamw
    eps = 1e-08                   adamw
    grad_clip = 1.0               global gradient norm clip (0: off)
    accumulate = 1                micro-batches per optimizer step (each its own contrastive batch)

    [schedule]
    kind = "cosine"               "cosine", "rsqrt" or "constant", after a linear warmup
    warmup_steps = 0
    end_lr_fraction = 0.0         cosine: the final lr as a fraction of the peak
    rsqrt_timescale = 0           rsqrt: lr * sqrt(t / max(step, t)); 0 means warmup_steps

    [run]
    device = "auto"               "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    precision = "auto"            "auto" (bf16 autocast on CUDA and on CPUs with native bf16, i.e.
                                  AVX512-BF16 or AMX; fp32 on other CPUs), "fp32" or "bf16"
    threads = 0                   CPU threads of the training process (0: on CPU the cores the data
                                  workers leave, at least 1; on CUDA 1)
    log_every = 10                steps between log lines
    checkpoint_every = 500        steps between checkpoints (0: only at the end)
    keep_checkpoints = 2
    eval_every = 0                steps between held-out evaluations (0: only at the end)
    grad_checkpointing = false    recompute activations in the backward pass (less memory)
    text_chunks = "auto"          how a batch's texts are read: 0, one call per text height; n, n
                                  calls of equal size, shorter texts padded and masked (few shapes,
                                  for GPUs); "auto": 4 on CUDA, 0 elsewhere

    [distill]                     learn from a teacher's stored embeddings (training.distill,
                                  training.teacher; `pixglot distill train`); off while texts and
                                  images are empty and image_target is "teacher"
    texts = []                    teacher text embeddings: Parquet (text, language,
                                  teacher_text_emb), files or directories
    images = []                   teacher image embeddings: Parquet (key, teacher_image_emb), the
                                  keys of data.train's images
    image_target = "teacher"      the image term's target: "teacher" (distill.images) or "self" (the
                                  student's own image vectors at the start: they stay put)
    loss = "cosine"               "cosine" (1 - cos) or "mse" (raw head output vs the stored vector)
    text_weight = 1.0             weight of the text term
    image_weight = 1.0            weight of the image term
    contrastive_weight = 0.0      weight of the contrastive loss on data.train's pairs (0: none)
    text_batch = 256              teacher texts per micro-batch
    image_batch = 256             images per micro-batch
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground.errors import FileFormatError, InputError


@dataclass(frozen=True)
class Key:
    default: Any
    check: Callable[[str, Any], Any]  # (dotted name, value) -> normalised value, or InputError


REQUIRED = object()


def _type_name(value: Any) -> str:
    return type(value).__name__


def _integer(low: int | None = None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name}: expected an integer, got {value!r} ({_type_name(value)})")
        if low is not None and value < low:
            raise InputError(f"{name}: expected an integer >= {low}, got {value}")
        return value

    return check


def _number(
    low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"{name}: expected a number, got {value!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise InputError(
                f"{name}: expected a number {' and '.join(p for p in (lo, hi) if p)}, got {value}"
            )
        return float(value)

    return check


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise InputError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value

    return check


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name}: expected a string, got {value!r} ({_type_name(value)})")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected true or false, got {value!r}")
    return value


def _table(name: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected a table (dict), got {value!r}")
    return copy.deepcopy(value)


def _strings(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{name}: expected a list of non-empty strings, got {value!r}")
    return list(value)


def _auto_or(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """`check`, or the string "auto"."""

    def auto_or(name: str, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return check(name, value)
        except InputError as err:
            raise InputError(f'{err}; or "auto"') from None

    return auto_or


def _device(name: str, value: Any) -> str:
    value = _string(name, value)
    if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
        raise InputError(f'{name}: expected "auto", "cpu", "cuda" or "cuda:N", got {value!r}')
    return value


SCHEMA: dict[str, Key | dict[str, Key]] = {
    "seed": Key(0, _integer(0)),
    "steps": Key(REQUIRED, _integer(1)),
    "name": Key("", _string),
    "description": Key("", _string),
    "knows": Key([], _strings),
    "out": Key("", _string),
    "model": {
        "base": Key("", _string),
        "init_from": Key("", _string),
        "architecture": Key({}, _table),
        "renderer": Key({}, _table),
        "preprocessing": Key({}, _table),
        "text_trim": Key(True, _boolean),
    },
    "data": {
        "train": Key(REQUIRED, _strings),
        "eval": Key([], _strings),
        "eval_fraction": Key(0.0, _number(0, 1, high_open=True)),
        "eval_max_images": Key(1000, _integer(1)),
        "eval_seen_images": Key(0, _integer(0)),
        "languages": Key([], _strings),
        "batch_size": Key(256, _integer(2)),
        "text_pairs": Key(0.0, _number(0, 1, high_open=True)),
        "captions_per_image": Key(1, _integer(1)),
        "text_pair_partner": Key("other_language", _choice("other_language", "same_language")),
        "single_keywords": Key(0.0, _number(0, 1)),
        "workers": Key(2, _integer(0)),
        "cache_images": Key("auto", _auto_or(_boolean)),
        "cache_max_images": Key(200_000, _integer(0)),
        "shuffle_window": Key(16, _integer(1)),
        "resident": Key("auto", _auto_or(_boolean)),
    },
    "loss": {
        "kind": Key("softmax", _choice("softmax", "sigmoid")),
        "temperature_init": Key(0.0, _number(0)),
        "max_temperature": Key(100.0, _number(0, low_open=True)),
        "bias_init": Key(-10.0, _number()),
    },
    "optimizer": {
        "name": Key("adamw", _choice("adamw", "adafactor")),
        "lr": Key(1e-3, _number(0, low_open=True)),
        "weight_decay": Key(1e-4, _number(0)),
        "beta1": Key(0.9, _number(0, 1, high_open=True)),
        "beta2": Key(0.999, _number(0, 1, high_open=True)),
        "eps": Key(1e-8, _number(0, low_open=True)),
        "grad_clip": Key(1.0, _number(0)),
        "accumulate": Key(1, _integer(1)),
    },
    "schedule": {
        "kind": Key("cosine", _choice("cosine", "rsqrt", "constant")),
        "warmup_steps": Key(0, _integer(0)),
        "end_lr_fraction": Key(0.0, _number(0, 1)),
        "rsqrt_timescale": Key(0, _integer(0)),
    },
    "run": {
        "device": Key("auto", _device),
        "precision": Key("auto", _choice("auto", "fp32", "bf16")),
        "threads": Key(0, _integer(0)),
        "log_every": Key(10, _integer(1)),
        "checkpoint_every": Key(500, _integer(0)),
        "keep_checkpoints": Key(2, _integer(1)),
        "eval_every": Key(0, _integer(0)),
        "grad_checkpointing": Key(False, _boolean),
        "text_chunks": Key("auto", _auto_or(_integer(0))),
    },
    "distill": {
        "texts": Key([], _strings),
        "images": Key([], _strings),
        "image_target": Key("teacher", _choice("teacher", "self")),
        "loss": Key("cosine", _choice("cosine", "mse")),
        "text_weight": Key(1.0, _number(0)),
        "image_weight": Key(1.0, _number(0)),
        "contrastive_weight": Key(0.0, _number(0)),
        "text_batch": Key(256, _integer(1)),
        "image_batch": Key(256, _integer(1)),
    },
}

# Keys that may differ between a run and its resumption: they change neither the batches nor the maths.
RESUMABLE_CHANGES = {
    "out",
    "data.workers",
    "run.log_every",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.threads",
}


def read_config_file(path: str | Path) -> dict:
    """The raw dict of a .toml or .json training config."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FileFormatError(path, f"cannot read the training config ({err.strerror or err})") from None
    try:
        config = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise FileFormatError(
            path, f"not a valid {'JSON' if path.suffix == '.json' else 'TOML'} file ({err})"
        ) from None
    if not isinstance(config, dict):
        raise FileFormatError(path, "a training config must be a table of sections")
    return config


def _resolve_section(raw: dict, schema: dict, prefix: str) -> dict:
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        names = ", ".join(f"{prefix}{k}" for k in unknown)
        raise InputError(
            f"unknown training config key(s) {names}; known in this section: {', '.join(schema)}"
        )
    out: dict = {}
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            section = raw.get(key, {})
            if not isinstance(section, dict):
                raise InputError(f"{name}: expected a section (table), got {section!r}")
            out[key] = _resolve_section(section, spec, f"{name}.")
        elif key in raw:
            out[key] = spec.check(name, raw[key])
        elif spec.default is REQUIRED:
            raise InputError(f"training config lacks the required key {name}")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _absolute(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p.resolve())


def resolve(raw: dict, base_dir: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The complete training config: defaults filled in, values checked, paths absolute.

    `overrides` maps dotted keys to values (the CLI's --data, --eval-data, --out) applied before
    checking. `base_dir` is where relative paths in `raw` start (the config file's directory);
    override paths are taken relative to the current directory.
    """
    raw = copy.deepcopy(raw)
    base = Path(base_dir).resolve() if base_dir is not None else None
    cwd_paths: set[str] = set()
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        target = raw
        if section:
            target = raw.setdefault(section, {})
            if not isinstance(target, dict):
                raise InputError(f"{section}: expected a section (table), got {target!r}")
        target[key] = value
        cwd_paths.add(dotted)
    config = _resolve_section(raw, SCHEMA, "")
    for dotted in ("data.train", "data.eval", "distill.texts", "distill.images"):
        section, key = dotted.split(".")
        start = None if dotted in cwd_paths else base
        config[section][key] = [_absolute(p, start) for p in config[section][key]]
    if config["out"]:
        config["out"] = _absolute(config["out"], None if "out" in cwd_paths else base)
    init_from = config["model"]["init_from"]
    if init_from and base is not None and (base / init_from).is_dir():
        config["model"]["init_from"] = str((base / init_from).resolve())
    _check_consistency(config)
    return config


def _check_consistency(config: dict) -> None:
    model, data = config["model"], config["data"]
    if not data["train"]:
        raise InputError(
            "data.train is empty: give the training shards (a directory of *.parquet, or --data DIR)"
        )
    if model["base"] and model["init_from"]:
        raise InputError("model.base and model.init_from exclude each other: init_from brings its own config")
    if not (model["base"] or model["init_from"] or model["architecture"]):
        raise InputError("model: give base (a shipped config), init_from (a model directory) or architecture")
    if data["eval"] and data["eval_fraction"]:
        raise InputError(
            "data.eval and data.eval_fraction exclude each other: give held-out shards or a fraction"
        )
    pairs = data["batch_size"] - round(data["batch_size"] * data["text_pairs"])
    if data["text_pairs"] and pairs < 1:
        raise InputError(
            f"data.text_pairs={data['text_pairs']} leaves no image/text pair in a batch of "
            f"{data['batch_size']}"
        )
    _check_distill(config)
    schedule = config["schedule"]
    if schedule["warmup_steps"] > config["steps"]:
        raise InputError(f"schedule.warmup_steps={schedule['warmup_steps']} exceeds steps={config['steps']}")


def distilling(config: dict) -> bool:
    """Whether a resolved config's [distill] section names something to learn from."""
    d = config["distill"]
    return bool(d["texts"] or d["images"] or d["image_target"] == "self")


def _check_distill(config: dict) -> None:
    if not distilling(config):
        return
    d = config["distill"]
    if d["text_weight"] and not d["texts"]:
        raise InputError(
            "distill.text_weight > 0 but distill.texts is empty: give the teacher's text embeddings, "
            "or set text_weight = 0"
        )
    if d["image_weight"] and d["image_target"] == "teacher" and not d["images"]:
        raise InputError(
            'distill.image_target = "teacher" but distill.images is empty: give the teacher\'s image '
            'embeddings, use image_target = "self", or set image_weight = 0'
        )
    if not (d["text_weight"] or d["image_weight"] or d["contrastive_weight"]):
        raise InputError("distill: every weight is 0, so nothing would be learnt")


def load(path: str | Path, overrides: dict | None = None) -> dict:
    """Read and resolve a training config file."""
    path = Path(path)
    return resolve(read_config_file(path), path.parent, overrides)


def flatten(config: dict) -> dict[str, Any]:
    """A resolved config as {"section.key": value}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(SCHEMA.get(key), dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _defaults() -> dict[str, Any]:
    return flatten(
        {
            key: {k: v.default for k, v in spec.items()} if isinstance(spec, dict) else spec.default
            for key, spec in SCHEMA.items()
        }
    )


def differences(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved configs; a key that one of them lacks
    (written before the key existed) counts as its default."""
    defaults = _defaults()
    fa, fb = {**defaults, **flatten(a)}, {**defaults, **flatten(b)}
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
