"""The training loop: contrastive training of one ViT tower on image/text (and text/text) pairs.

    result = train(config, out="runs/demo")          # config: a resolved dict (training.config)
    encoder = model.encoder.load(result.out)          # the output directory is a model directory

Texts are rendered and trimmed exactly as `Encoder.encode_texts` does at inference (the patch rows
that hold text, at least one), once per run and renderer, by the rendered-text cache
(`rendering.text_cache`); images are decoded once when they fit in memory. Both are then held on
the model's device (`pixels.TrainingPixels`) and each step gathers its batch there from the indices
a worker drew: no rendering or decoding in the step, no pixels between processes, and no wait for
the host inside a step (losses are summed on the device and read at log steps). A batch's texts are
embedded in groups (`data.group_texts`): one per height, or, on GPUs, a few groups of fixed size
whose shorter texts are padded and masked; either way no text is affected by rows it would not
read at inference. The held-out evaluation reads the same cached pixels, with the arithmetic
`Encoder` uses (bf16 on CUDA, fp32 on CPUs).

Output directory: model.safetensors + config.json (with a `training` section: the resolved config
and provenance), train_log.jsonl (one JSON object per line: step, loss, lr, temperature, ...;
evaluations under "eval"), checkpoints/step-NNNNNNN.pt.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from evaluation.metrics import mean_over_languages, retrieval_metrics
from evaluation.runs import code_revision
from ground.atomic import write_atomic
from ground.errors import InputError, PixglotError
from model.encoder import (
    MODEL_FILE,
    Encoder,
    complete_config,
    load,
    model_dir,
    read_shipped_config,
    save,
)
from model.vit import ViT, VitConfig
from model.workers import available_cores
from rendering.text_cache import TextCache
from training import checkpoint as ckpt
from training import config as train_config
from training import data as train_data
from training import distill
from training.losses import ContrastiveLoss
from training.pixels import TrainingPixels, decode_pictures
from training.schedule import scheduler

LOG_FILE = "train_log.jsonl"
# Text groups of a batch on CUDA (`data.group_texts`): few enough calls of the network, little padding.
_GPU_TEXT_CHUNKS = 4
_NO_DECAY = ("pos_embedding", "probe", "cls")
_EVAL_KS = (1, 5, 10)


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    held_out: dict | None  # mean Recall@k over languages of the final evaluation


# ---------------------------------------------------------------- the model


def _merge_renderer(base: dict, override: dict) -> dict:
    """A renderer of another style starts from scratch; the same style is updated key by key. The
    canvas follows the architecture unless the override names it."""
    merged = (
        dict(override)
        if override.get("style", base.get("style")) != base.get("style")
        else {**base, **override}
    )
    for key in ("image_size", "patch_size"):
        if key not in override:
            merged.pop(key, None)
    return merged


# What a base config says about the base itself, not about a model trained from it.
_OF_THE_BASE = ("format_version", "name", "description", "knows", "provenance")


def build_model(config: dict, name: str) -> tuple[ViT, dict]:
    """The network to train and its model config (architecture, preprocessing, renderer, ...)."""
    m = config["model"]
    if m["init_from"]:
        encoder = load(model_dir(m["init_from"]), device="cpu")
        base = {k: v for k, v in encoder.config.items() if k != "training"}
        wanted = VitConfig.from_dict({**base["architecture"], **m["architecture"]}).to_dict()
        changed = sorted(k for k, v in wanted.items() if base["architecture"].get(k) != v)
        if changed:
            raise InputError(
                f"model.architecture: {', '.join(changed)} cannot differ from the weights of "
                f"init_from ({m['init_from']})"
            )
        net = encoder.net
        provenance = {
            "init": "from_model",
            "init_from": str(model_dir(m["init_from"])),
            "init_fingerprint": encoder.fingerprint,
            "init_name": encoder.name,
        }
    else:
        base = read_shipped_config(m["base"]) if m["base"] else {}
        net = None
        provenance = {"init": "random", "seed": config["seed"], **({"base": m["base"]} if m["base"] else {})}
    model_config = {
        **{k: v for k, v in base.items() if k not in _OF_THE_BASE},
        "name": name,
        "architecture": {**base.get("architecture", {}), **m["architecture"]},
        "renderer": _merge_renderer(base.get("renderer", {}), m["renderer"]),
        "preprocessing": {**base.get("preprocessing", {}), **m["preprocessing"]},
        "text_trim": m["text_trim"],
    }
    if config["description"]:
        model_config["description"] = config["description"]
    if config["knows"]:
        model_config["knows"] = config["knows"]
    try:
        model_config = complete_config(model_config)
    except InputError as err:
        raise InputError(f"model: {err}") from None
    if net is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            net = ViT(model_config["architecture"])
    model_config["provenance"] = provenance
    return net.train(), model_config


def _param_groups(net: ViT, loss: ContrastiveLoss, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in [*net.named_parameters(), *loss.named_parameters()]:
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and not any(part in name.split(".") for part in _NO_DECAY)
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(params: list[dict], config: dict, device: torch.device) -> torch.optim.Optimizer:
    o = config["optimizer"]
    if o["name"] == "adafactor":
        return torch.optim.Adafactor(params, lr=o["lr"])
    # On CUDA the fused update is one kernel for all parameters instead of a few per tensor.
    fused = device.type == "cuda"
    return torch.optim.AdamW(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], fused=fused)


# ---------------------------------------------------------------- one batch


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def as_encoder(net: ViT, device: torch.device) -> Iterator[None]:
    """The training network read as `Encoder` reads it: evaluation mode, no gradients, bf16 on CUDA
    and fp32 on the CPU whatever the training's arithmetic; its mode given back after."""
    training = net.training
    net.eval()
    try:
        with torch.inference_mode(), autocast(device, "bf16" if device.type == "cuda" else "fp32"):
            yield
    finally:
        net.train(training)


class BatchRunner:
    """Gathers a batch's pixels on the device from the indices a worker drew, and embeds them.

    The embedding methods run under their caller's `autocast`: one context for all of a step's
    network calls casts the weights to bf16 once per step, not once per call."""

    def __init__(self, net: ViT, loss: ContrastiveLoss, pixels: TrainingPixels, precision: str):
        self.net, self.loss, self.pixels = net, loss, pixels
        self.device, self.precision = pixels.device, precision

    def embed_texts(
        self, ids: Tensor, groups: Tensor | np.ndarray, slots: Tensor | np.ndarray, normalize: bool = True
    ) -> Tensor:
        """Texts given by cache number in `data.group_texts` order; returned in slot order."""
        parts, start = [], 0
        for end, rows, padded in groups.tolist():
            part = ids[start:end]
            counts = self.pixels.row_counts(part) if padded else None
            pixels = self.pixels.texts(part, rows)
            parts.append(self.net(pixels, rows=rows, row_counts=counts, normalize=normalize))
            start = end
        return torch.cat(parts)[torch.as_tensor(slots).to(self.device, non_blocking=True)]

    def embed_images(self, batch: dict) -> Tensor:
        if "images" in batch:  # decoded by a worker: the images are not held in memory
            return self.net(self.pixels.to_model(torch.as_tensor(batch["images"])))
        return self.net(self.pixels.pictures(torch.as_tensor(batch["image_keys"])))

    def __call__(self, batch: dict) -> Tensor:
        def device(name: str) -> Tensor:
            return torch.as_tensor(batch[name]).to(self.device, non_blocking=True)

        with autocast(self.device, self.precision):
            images = self.embed_images(batch)
            texts = self.embed_texts(device("text_ids"), batch["text_groups"], batch["text_slots"])
        n_left = len(batch["left_text_keys"])
        left = torch.cat([images, texts[:n_left]])
        left_keys = torch.cat([device("image_keys"), device("left_text_keys")])
        return self.loss(left, texts[n_left:], left_keys, device("right_keys"), self.net.t)


# ---------------------------------------------------------------- evaluation


class Evaluator:
    """Recall@1/5/10 both ways per language, and their mean over languages, on a set of images and
    their captions (`data.HeldOut`), from the run's cached pixels."""

    def __init__(
        self, runner: BatchRunner, held: train_data.HeldOut, pictures: np.ndarray, text_ids: dict[str, int]
    ):
        self.runner, self.held, self.pictures, self.text_ids = runner, held, pictures, text_ids

    def _embed(self, batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        runner = self.runner
        images = [
            runner.net(runner.pixels.to_model(torch.from_numpy(self.pictures[i : i + batch_size])))
            for i in range(0, len(self.pictures), batch_size)
        ]
        texts = {}
        for language, (captions, _) in self.held.captions.items():
            ids = np.array([self.text_ids[t] for t in captions], np.int64)
            parts = []
            for i in range(0, len(ids), batch_size):
                order, groups, slots = train_data.group_texts(
                    runner.pixels.text_count[ids[i : i + batch_size]], 0
                )
                parts.append(
                    runner.embed_texts(
                        torch.from_numpy(ids[i : i + batch_size][order]), groups, torch.from_numpy(slots)
                    )
                )
            texts[language] = torch.cat(parts).float().cpu().numpy()
        return torch.cat(images).float().cpu().numpy(), texts

    def __call__(self, batch_size: int = 1024) -> dict:
        with as_encoder(self.runner.net, self.runner.device):
            vectors, text_vectors = self._embed(batch_size)
        per_language = {}
        for language, (_, owners) in self.held.captions.items():
            images = sorted(set(owners))
            local = {image: i for i, image in enumerate(images)}
            per_language[language] = retrieval_metrics(
                vectors[images], text_vectors[language], np.array([local[o] for o in owners]), ks=_EVAL_KS
            )
        mean = mean_over_languages(per_language)
        directions = ("text_to_image", "image_to_text")
        return {
            "mean": {d: mean[d] for d in directions},
            "languages": {lang: {d: m[d] for d in directions} for lang, m in per_language.items()},
            "n_images": len(self.held.images),
            "n_texts": self.held.n_texts,
        }


# ---------------------------------------------------------------- files


def _write_json_lines(path: Path, records: list[dict]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomic(path, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill is dropped
            records.append(json.loads(line))
    return records


class Log:
    """train_log.jsonl: appended line by line, flushed, so a killed run keeps what it logged."""

    def __init__(self, path: Path, on_record: Callable[[dict], None] | None):
        self.path = path
        self.on_record = on_record

    def truncate(self, step: int) -> None:
        """Drop what was logged after `step` (a resumed run logs those steps again)."""
        _write_json_lines(self.path, [r for r in _read_log(self.path) if r.get("step", 0) <= step])

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.on_record:
            self.on_record(record)


def _output_dir(config: dict, resume: bool) -> tuple[Path, list[tuple[int, Path]]]:
    if not config["out"]:
        raise InputError('no output directory: give --out DIR or out = "DIR" in the training config')
    out = Path(config["out"])
    found = ckpt.list_checkpoints(out)
    if not resume and (found or (out / MODEL_FILE).exists() or (out / LOG_FILE).exists()):
        at = f" (checkpoint at step {found[-1][0]})" if found else ""
        raise InputError(
            f"{out} already holds a training run{at}; pass --resume to continue it, or "
            "choose another output directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out, found


def _default_threads(device: torch.device) -> int:
    """On CUDA the training process only launches kernels: more threads would spin against the data
    workers for the same cores. On CPU the model gets every core: the workers only draw indices."""
    return 1 if device.type == "cuda" else available_cores()


def _cpu_has_native_bf16() -> bool:
    # AVX512-BF16 or AMX: there bf16 matmuls run at about 3x fp32 and a demo-recipe step takes 0.94 s
    # instead of 1.33 s (bench/RESULTS.md); other CPUs emulate bf16, which would slow training down.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _device(config: dict) -> tuple[torch.device, str]:
    run = config["run"]
    name = run["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"run.device={name!r}, but PyTorch sees no CUDA device")
    device = torch.device(name)
    precision = run["precision"]
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" or _cpu_has_native_bf16() else "fp32"
    return device, precision


def _data(config: dict) -> tuple[train_data.PairIndex, train_data.PairIndex | None]:
    d = config["data"]
    index = train_data.read_index(d["train"], d["languages"])
    held_index = None
    if d["eval"]:
        held_index = train_data.read_index(d["eval"], d["languages"])
    elif d["eval_fraction"]:
        index, held_index = index.split_by_key(d["eval_fraction"])
        if not len(held_index) or not len(index):
            raise InputError(
                f"data.eval_fraction={d['eval_fraction']} leaves "
                f"{'no held-out' if not len(held_index) else 'no training'} image"
            )
    return index, held_index


def _present_keys(index: train_data.PairIndex) -> set[str]:
    """The keys of the index's rows (a split index shares its key table with its other half)."""
    return {index.keys[k] for k in np.unique(index.key_id)}


def _describe_data(
    index: train_data.PairIndex,
    held: train_data.HeldOut | None,
    held_index: train_data.PairIndex | None,
    terms: distill.DistillTerms | None,
    teacher_fingerprint: str,
) -> dict:
    info = {
        "fingerprint": index.fingerprint,
        "shards": [p.name for p in index.files],  # the fingerprint says what they held
        "pairs": len(index),
        "images": index.n_images,
        "languages": sorted({index.languages[i] for i in np.unique(index.language_id)}),
    }
    if held is not None and held_index is not None:
        info["held_out"] = {
            "fingerprint": held_index.fingerprint,
            "images": len(held.images),
            "texts": held.n_texts,
            "languages": sorted(held.captions),
        }
    if terms is not None:
        info["distill"] = {**terms.describe(), "teacher_fingerprint": teacher_fingerprint}
    return info


# ---------------------------------------------------------------- the run


class Trainer:
    """One training run: everything built from a resolved config, then `run()`."""

    def __init__(
        self,
        config: dict,
        resume: bool = False,
        on_record: Callable[[dict], None] | None = None,
        progress: bool = False,
    ):
        self.started = time.perf_counter()
        self.config = config
        self.out, self.found = _output_dir(config, resume)
        self.device, self.precision = _device(config)
        run, o = config["run"], config["optimizer"]
        self.name = config["name"] or self.out.name

        self.index, held_index = _data(config)
        self.teacher = None
        if train_config.distilling(config):
            # Captions of held-out images would teach the student what it is then tested on.
            held_out = set()
            if held_index is not None:
                held_out = _present_keys(held_index) - _present_keys(self.index)
            self.teacher = distill.read_teacher(config, held_out)
        self.net, self.model_config = build_model(config, self.name)
        if self.teacher is not None and self.teacher.dim is not None:
            self.net = distill.head_for(self.net, self.teacher.dim, config["seed"])
            self.model_config["architecture"]["out_dim"] = self.teacher.dim
        self.net.to(self.device)
        self.net.grad_checkpointing = run["grad_checkpointing"]
        loss = config["loss"]
        self.loss = ContrastiveLoss(loss["kind"], loss["bias_init"], loss["max_temperature"]).to(self.device)
        if loss["temperature_init"]:
            with torch.no_grad():
                self.net.t.fill_(math.log(loss["temperature_init"]))
        params = _param_groups(self.net, self.loss, o["weight_decay"])
        self.optimizer = make_optimizer(params, config, self.device)
        self.schedule = scheduler(self.optimizer, config["schedule"], config["steps"])

        # A distillation run weighs the contrastive loss as its config says (0: not computed).
        self.contrastive_weight = config["distill"]["contrastive_weight"] if self.teacher else 1.0
        self.pixels, self.batches, evaluated, text_ids = self._hold_data(held_index, progress)
        self.runner = BatchRunner(self.net, self.loss, self.pixels, self.precision)
        self.distill = self._distill_terms(text_ids) if self.teacher is not None else None
        self.evaluators = {
            kind: Evaluator(self.runner, held, pictures, text_ids)
            for kind, (held, pictures) in evaluated.items()
        }
        self.data_info = _describe_data(
            self.index, evaluated.get("eval", (None,))[0], held_index, self.distill, self._teacher_fingerprint
        )
        self.log = Log(self.out / LOG_FILE, on_record)
        self.step, self.earlier_seconds = 0, 0.0

    def _hold_data(
        self, held_index: train_data.PairIndex | None, progress: bool
    ) -> tuple[
        TrainingPixels,
        train_data.PairBatches,
        dict[str, tuple[train_data.HeldOut, np.ndarray]],
        dict[str, int],
    ]:
        """Every picture and text the run reads, decoded and rendered once and held on the device;
        the batches (indices into them); the evaluated images ("eval": held out, "eval_seen":
        trained on) with their pictures; every text's number in the rendered texts."""
        d, size = self.config["data"], self.net.config.image_size
        preprocessing = self.model_config["preprocessing"]
        window = d["shuffle_window"]
        images = train_data.image_source(self.index, d["cache_images"], d["cache_max_images"], window)
        cached = isinstance(images, train_data.CachedImages)
        chunks = self.text_chunks = self.config["run"]["text_chunks"]
        if chunks == "auto":
            chunks = self.text_chunks = _GPU_TEXT_CHUNKS if self.device.type == "cuda" else 0
        spec = train_data.BatchSpec(
            batch_size=d["batch_size"],
            text_pairs=d["text_pairs"],
            seed=self.config["seed"],
            image_size=size,
            preprocessing=preprocessing,
            window=None if cached else window,
            captions_per_image=d["captions_per_image"],
            text_pair_partner=d["text_pair_partner"],
            single_keywords=d["single_keywords"],
            text_chunks=chunks,
            decode_images=not cached,
        )
        evaluated = {}
        if held_index is not None:
            source = train_data.image_source(held_index, d["cache_images"], d["cache_max_images"], window)
            evaluated["eval"] = train_data.held_out(held_index, source, d["eval_max_images"])
        if d["eval_seen_images"]:
            evaluated["eval_seen"] = train_data.held_out(self.index, images, d["eval_seen_images"])
        # Without the contrastive loss no pair batch is drawn, so the pairs' texts are never read.
        texts = train_data.shown_texts(self.index, d["single_keywords"]) if self.contrastive_weight else []
        if self.teacher is not None:
            if not cached:
                raise InputError(
                    "distillation reads the training images from memory, and data.train holds more "
                    f"than data.cache_max_images={d['cache_max_images']} of them (or data.cache_images "
                    "is false): raise the limit, or distil on fewer images"
                )
            if self.teacher.texts is not None:
                texts += self.teacher.texts.texts
        for held in evaluated.values():
            texts += [t for captions, _ in held.captions.values() for t in captions]
        texts = list(dict.fromkeys(texts))
        cache = TextCache(self.model_config["renderer"], self.model_config["text_trim"])
        rendered = cache.get(texts, progress=progress)
        text_ids = {t: i for i, t in enumerate(texts)}
        pictures = None
        if cached:
            keys = np.unique(self.index.key_id)
            pictures = np.zeros((len(self.index.keys), size, size, 3), np.uint8)
            pictures[keys] = decode_pictures(
                [images.images[k] for k in keys], [images.name(k) for k in keys], size, preprocessing
            )
        pixels = TrainingPixels(rendered, pictures, self.device, preprocessing["value_range"], d["resident"])
        batches = train_data.PairBatches(
            self.index, None if cached else images, spec, text_ids, rendered.count
        )
        with_pictures = {}
        for kind, held in evaluated.items():
            if kind == "eval_seen" and pictures is not None:  # training images: decoded above
                key_id = {key: k for k, key in enumerate(self.index.keys)}
                with_pictures[kind] = (held, pictures[[key_id[key] for key in held.keys]])
                continue
            names = [f"{kind} image of key {key!r}" for key in held.keys]
            with_pictures[kind] = (held, decode_pictures(held.images, names, size, preprocessing))
        return pixels, batches, with_pictures, text_ids

    def _distill_terms(self, text_ids: dict[str, int]) -> distill.DistillTerms:
        """The distillation terms, their texts and images numbered as the run holds them."""
        teacher, d = self.teacher, self.config["distill"]
        texts = teacher.texts
        text_rows = np.array([text_ids[t] for t in texts.texts], np.int64) if texts else np.zeros(0, np.int64)
        trained = np.unique(self.index.key_id)  # held-out keys share the key table: leave them out
        image_keys, image_targets = np.zeros(0, np.int64), None
        if d["image_weight"] and d["image_target"] == "teacher":
            key_id = {self.index.keys[k]: k for k in trained}
            wanted = [(key_id[key], i) for i, key in enumerate(teacher.images.keys) if key in key_id]
            if not wanted:
                raise InputError(
                    "distill.images: none of the teacher's image keys is an image of data.train "
                    f"(e.g. {teacher.images.keys[0]!r})"
                )
            image_keys = np.array([k for k, _ in wanted], np.int64)
            image_targets = teacher.images.vectors[[i for _, i in wanted]]
        elif d["image_weight"]:
            image_keys = trained
            image_targets = distill.self_targets(self.out, lambda: self._embed_pictures(trained))
        return distill.DistillTerms(
            self.config,
            text_rows,
            texts.vectors if texts else None,
            image_keys,
            image_targets,
            self.device,
            self.text_chunks,
        )

    def _embed_pictures(self, keys: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The network's head output (not normalised) for the held pictures of `keys`, with the
        arithmetic of `Encoder`."""
        with as_encoder(self.net, self.device):
            starts = range(0, len(keys), batch_size)
            batches = (torch.from_numpy(keys[i : i + batch_size]) for i in starts)
            parts = [self.net(self.pixels.pictures(batch), normalize=False) for batch in batches]
        return torch.cat(parts).float().cpu().numpy()

    @property
    def seconds(self) -> float:
        """Training time over all sessions of this run."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def restore(self, path: Path) -> None:
        state = ckpt.load(path)
        changed = [
            k
            for k in train_config.differences(state["config"], self.config)
            if k not in train_config.RESUMABLE_CHANGES
        ]
        if changed:
            raise InputError(
                f"{path}: the run was started with other values of {', '.join(changed)}; "
                "resume with the same config, or start a new run in another directory"
            )
        if state["data_fingerprint"] != self.index.fingerprint:
            raise InputError(
                f"{path}: the training shards changed since this run started "
                "(their fingerprint differs); resuming would not give the same model"
            )
        if state.get("teacher_fingerprint", "") != self._teacher_fingerprint:
            raise InputError(
                f"{path}: the teacher's embeddings changed since this run started (their fingerprint "
                "differs); resuming would not give the same model"
            )
        self.net.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.earlier_seconds = state["step"], state["seconds"]

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "batches_done": self.step * self.config["optimizer"]["accumulate"],
            "model": self.net.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "rng": ckpt.rng_state(),
            "config": self.config,
            "data_fingerprint": self.index.fingerprint,
            "teacher_fingerprint": self._teacher_fingerprint,
            "seconds": self.seconds,
        }

    @property
    def _teacher_fingerprint(self) -> str:
        return self.teacher.fingerprint if self.teacher is not None else ""

    def checkpoint(self) -> None:
        ckpt.save(self.out, self.step, self.state_dict(), self.config["run"]["keep_checkpoints"])

    def encoder(self) -> Encoder:
        """The network as an Encoder (evaluation mode; call net.train() to go on training)."""
        return Encoder(self.net, self.model_config, name=self.name, device=str(self.device))

    def evaluate(self) -> dict | None:
        """Logs every evaluation (held-out images under "eval", training images under
        "eval_seen"); returns the held-out one."""
        results = {kind: evaluator() for kind, evaluator in self.evaluators.items()}
        for kind, metrics in results.items():
            self.log.write({"step": self.step, kind: metrics})
        return results.get("eval")

    def run(self) -> TrainResult:
        if self.found:
            self.restore(self.found[-1][1])
            self.log.truncate(self.step)
            self.log.write(
                {
                    "step": self.step,
                    "event": "resumed",
                    "checkpoint": self.found[-1][1].name,
                    "device": str(self.device),
                    "precision": self.precision,
                }
            )
        else:
            self.log.truncate(0)
            self.log.write(
                {
                    "step": 0,
                    "event": "started",
                    "pairs": len(self.index),
                    "images": self.index.n_images,
                    "batches_per_epoch": self.batches.batches_per_epoch,
                    "device": str(self.device),
                    "precision": self.precision,
                    "parameters": sum(p.numel() for p in self.net.parameters()),
                }
            )
        self.train_steps()
        final = self.evaluate()
        self.checkpoint()
        self.save(final)
        return TrainResult(self.out, self.step, self.seconds, final["mean"] if final else None)

    def train_steps(self) -> None:
        config, run, o = self.config, self.config["run"], self.config["optimizer"]
        steps, accumulate = config["steps"], o["accumulate"]
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        stream = None
        if self.contrastive_weight:
            stream = iter(
                train_data.loader(
                    self.batches,
                    self.step * accumulate,
                    steps * accumulate,
                    config["data"]["workers"],
                    pin_memory=self.device.type == "cuda",
                )
            )
        # Summed on the device and read at log steps only: reading a loss each step would make the
        # host wait for the device every step.
        sums: dict[str, Tensor] = {}
        window_steps, window_start, paused = 0, time.perf_counter(), 0.0
        while self.step < steps:
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(accumulate):
                terms = self.loss_terms(stream, self.step * accumulate + micro)
                value = sum(terms.values()) / accumulate
                value.backward()
                for name, term in {"loss": value, **terms}.items():
                    part = term.detach() / (1 if name == "loss" else accumulate)
                    sums[name] = sums.get(name, 0) + part
            grad_norm = torch.nn.utils.clip_grad_norm_(params, o["grad_clip"] or math.inf)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.schedule.step()
            self.step += 1
            window_steps += 1
            if self.step % run["log_every"] == 0 or self.step in (1, steps):
                # Reading the sums waits for the device: the window's time is complete after it.
                means = {name: float(total) / window_steps for name, total in sums.items()}
                seconds = time.perf_counter() - window_start - paused
                self.log_step(means, lr, float(grad_norm), window_steps * accumulate / max(seconds, 1e-9))
                sums = {}
                window_steps, window_start, paused = 0, time.perf_counter(), 0.0
            started = time.perf_counter()
            if run["checkpoint_every"] and self.step % run["checkpoint_every"] == 0 and self.step < steps:
                self.checkpoint()
            if run["eval_every"] and self.step % run["eval_every"] == 0 and self.step < steps:
                self.evaluate()
            paused += time.perf_counter() - started

    def loss_terms(self, stream: Iterator[dict] | None, number: int) -> dict[str, Tensor]:
        """The weighted terms of micro-batch `number` by name; their sum is what is minimised."""
        terms = {}
        with autocast(self.device, self.precision):
            if stream is not None:
                batch = next(stream)
                if batch["error"]:
                    raise PixglotError(f"training data: {batch['error']}")
                terms["contrastive"] = self.contrastive_weight * self.runner(batch)
            if self.distill is not None:
                terms.update(self.distill(self.runner, number))
        return terms

    def log_step(
        self, means: dict[str, float], lr: float, grad_norm: float, batches_per_second: float
    ) -> None:
        """`means`: the window's mean loss ("loss") and, in a distillation run, of each term."""
        batches = self.step * self.config["optimizer"]["accumulate"]
        record = {"step": self.step, "loss": means["loss"]}
        if self.contrastive_weight:
            record["epoch"] = round(batches / self.batches.batches_per_epoch, 3)
            record["pairs_per_second"] = batches_per_second * self.config["data"]["batch_size"]
        if self.distill is not None:
            record["terms"] = {k: v for k, v in means.items() if k != "loss"}
            record.update(self.distill.progress(batches, batches_per_second))
        record.update(
            lr=lr,
            temperature=self.net.temperature.item(),
            grad_norm=grad_norm,
            seconds=round(self.seconds, 3),
        )
        if self.loss.bias is not None:
            record["bias"] = self.loss.bias.item()
        self.log.write(record)

    def save(self, final: dict | None) -> None:
        """The model directory: weights, and a config that says how they were made."""
        self.model_config["provenance"] = {
            **self.model_config["provenance"],
            "trained_with": "pixglot distill" if self.distill else "pixglot train",
            "code_revision": code_revision(),
            "data_fingerprint": self.index.fingerprint,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        self.model_config["training"] = {
            "config": self.config,
            "data": self.data_info,
            "steps": self.step,
            "seconds": round(self.seconds, 1),
            # A resumed run may have moved machines (say, from a GPU to a CPU): each part says where.
            "segments": [
                {"from_step": r["step"], "device": r["device"], "precision": r["precision"]}
                for r in _read_log(self.log.path)
                if r.get("event") in ("started", "resumed")
            ],
            "held_out": final["mean"] if final else None,
        }
        save(self.encoder(), self.out)
        self.log.write({"step": self.step, "event": "finished"})


def train(
    config: dict,
    resume: bool = False,
    on_record: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train as `config` (a resolved training config) says; with `resume`, continue the run in its
    output directory from its last checkpoint (or start it, if it has none). `progress` shows a bar
    while the texts are rendered into the cache."""
    with _torch_threads(config["run"]["threads"] or _default_threads(_device(config)[0])):
        return Trainer(config, resume, on_record, progress).run()


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's thread count is the process's: a run sets its own and gives the caller's back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
