"""A teacher's embeddings of a data set, computed once for distillation (`pixglot distill embed-teacher`).

    teacher = load_teacher("pixglot:demo")                 # or open_clip:ARCH/PRETRAINED, hf:NAME
    embed_shards(teacher, ["shards/"], "teacher/", target="text")

Teachers, named with a prefix:

    pixglot:NAME_OR_DIR          a Pixglot model (installed name, shipped name or model directory)
    open_clip:ARCH/PRETRAINED    an open_clip model, e.g. open_clip:ViT-B-16-SigLIP2/webli
    hf:NAME_OR_DIR               a Hugging Face `transformers` model with get_text_features and
                                 get_image_features (CLIP, SigLIP, SigLIP 2), e.g.
                                 hf:google/siglip2-base-patch16-224

open_clip and transformers are not Pixglot's dependencies: `pip install -e .[teachers]` adds them.
They download their weights on first use into their own caches.

The input is training shards (key, image, text, language, and optionally `source`: the English
caption a row was translated from). For each input shard, one text file and one image file are
written into the output directory (`training.teacher`'s formats) under the shard's name, so a
stopped run goes on where it stopped when started again. With `target="source"` a row's vector is
the teacher's embedding of its `source`, not of its `text`: the student then learns to read every
language as the teacher reads English (M-CLIP's setting, for an English-only teacher). Each distinct
text and each key's image is embedded once per shard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from ground.atomic import write_atomic
from ground.errors import InputError, PixglotError
from model import encoder as pixglot_models
from model.images import open_image
from training.data import shard_files
from training.teacher import read_columns, write_teacher_images, write_teacher_texts

TEACHER_FILE = "teacher.json"
_SAMPLE_SALT = "pixglot-teacher-sample:"
_BATCH = 256


class Teacher(Protocol):
    name: str

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def embed_images(self, images: list[bytes]) -> np.ndarray: ...


@dataclass
class PixglotTeacher:
    """A Pixglot model as a teacher: e.g. one that reads unifont, for a student that reads shaped."""

    encoder: pixglot_models.Encoder
    name: str

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        # Through the rendered-text cache, all at once (the cache adds one segment per call): a student
        # that reads with the same renderer finds them drawn.
        return self.encoder.encode_texts(texts, cached=True)

    def embed_images(self, images: list[bytes]) -> np.ndarray:
        return self.encoder.encode_images(images)


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _missing(package: str) -> PixglotError:
    return PixglotError(f"this teacher needs the {package} package: pip install -e '.[teachers]'")


class _BatchedTeacher:
    """A teacher of another framework, fed `_BATCH` items at a time (`_texts`, `_images`)."""

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _batched(self._texts, texts)

    def embed_images(self, images: list[bytes]) -> np.ndarray:
        return _batched(self._images, images)

    def _texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _images(self, images: list[bytes]) -> np.ndarray:
        raise NotImplementedError


class OpenClipTeacher(_BatchedTeacher):
    def __init__(self, spec: str):
        try:
            import open_clip
        except ImportError:
            raise _missing("open_clip_torch") from None
        arch, _, pretrained = spec.partition("/")
        if not arch or not pretrained:
            raise InputError(
                f"open_clip teacher {spec!r}: expected ARCH/PRETRAINED, e.g. ViT-B-16-SigLIP2/webli"
            )
        self.name = f"open_clip:{spec}"
        self.device = _torch_device()
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, device=self.device
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)

    def _texts(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy()

    def _images(self, images: list[bytes]) -> np.ndarray:
        import torch

        pixels = torch.stack([self.preprocess(open_image(data)) for data in images]).to(self.device)
        with torch.inference_mode():
            return self.model.encode_image(pixels).float().cpu().numpy()


class HuggingFaceTeacher(_BatchedTeacher):
    def __init__(self, spec: str):
        try:
            from transformers import AutoModel, AutoProcessor
        except ImportError:
            raise _missing("transformers") from None
        self.name = f"hf:{spec}"
        self.device = _torch_device()
        self.model = AutoModel.from_pretrained(spec).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(spec)

    def _texts(self, texts: list[str]) -> np.ndarray:
        import torch

        # SigLIP models were trained on texts padded to their full length, and read them so.
        inputs = self.processor(text=texts, padding="max_length", truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return self.model.get_text_features(**inputs.to(self.device)).float().cpu().numpy()

    def _images(self, images: list[bytes]) -> np.ndarray:
        import torch

        inputs = self.processor(images=[open_image(data) for data in images], return_tensors="pt")
        with torch.inference_mode():
            return self.model.get_image_features(**inputs.to(self.device)).float().cpu().numpy()


def load_teacher(spec: str) -> Teacher:
    kind, _, name = spec.partition(":")
    if kind == "pixglot" and name:
        return PixglotTeacher(pixglot_models.load(name), spec)
    if kind == "open_clip" and name:
        return OpenClipTeacher(name)
    if kind == "hf" and name:
        return HuggingFaceTeacher(name)
    raise InputError(f"teacher {spec!r}: expected pixglot:MODEL, open_clip:ARCH/PRETRAINED or hf:NAME")


def _batched(embed: Callable[[list], np.ndarray], items: list, batch: int = _BATCH) -> np.ndarray:
    return np.concatenate([embed(items[i : i + batch]) for i in range(0, len(items), batch)])


def sampled(key: str, language: str, text: str, fraction: float) -> bool:
    """Whether a caption row is among the `fraction` kept: a fixed draw per row, so every run (and
    every shard order) keeps the same rows."""
    digest = hashlib.sha256(f"{_SAMPLE_SALT}{key}\0{language}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def embed_shard(
    teacher: Teacher, path: Path, out: Path, target: str, fraction: float = 1.0
) -> tuple[int, int]:
    """Writes out/texts/<shard> and out/images/<shard>; returns (text rows, images)."""
    columns = ["key", "image", "text", "language", *(["source"] if target == "source" else [])]
    table = read_columns(
        path,
        columns,
        why=lambda missing: (
            " (--target source needs the English source of each caption)" if "source" in missing else ""
        ),
    )
    keys, texts = table.column("key").to_pylist(), table.column("text").to_pylist()
    languages = table.column("language").to_pylist()
    sources = table.column(target).to_pylist()
    keep = [
        i
        for i, s in enumerate(sources)
        if s is not None
        and texts[i] is not None
        and (fraction >= 1 or sampled(keys[i], languages[i], texts[i], fraction))
    ]
    distinct = list(dict.fromkeys(sources[i] for i in keep))
    vectors = teacher.embed_texts(distinct) if distinct else np.zeros((0, 1), np.float32)
    row_of = {text: i for i, text in enumerate(distinct)}
    write_teacher_texts(
        out / "texts" / path.name,
        [texts[i] for i in keep],
        [languages[i] for i in keep],
        vectors[[row_of[sources[i]] for i in keep]],
        [keys[i] for i in keep],
    )
    first: dict[str, bytes] = {}
    for key, image in zip(keys, table.column("image").to_pylist(), strict=True):
        if image is not None:
            first.setdefault(key, image)
    images = teacher.embed_images(list(first.values())) if first else np.zeros((0, 1))
    write_teacher_images(out / "images" / path.name, list(first), images)
    return len(keep), len(first)


def embed_shards(
    teacher: Teacher,
    shards: Sequence[str | Path],
    out: str | Path,
    target: str = "text",
    fraction: float = 1.0,
    progress: bool = False,
) -> dict:
    """Every shard's teacher embeddings into `out` (skipping shards already done); returns the
    summary written to out/teacher.json. `fraction`: embed only this fraction of the caption rows
    (a fixed draw per row; every image is embedded), for sets whose every caption in every language
    would not fit a run's memory."""
    if target not in ("text", "source"):
        raise InputError(f"target: expected 'text' or 'source', got {target!r}")
    if not 0 < fraction <= 1:
        raise InputError(f"fraction: expected a number in (0, 1], got {fraction}")
    out = Path(out)
    summary_path = out / TEACHER_FILE
    files = shard_files(shards)
    if summary_path.is_file():
        earlier = json.loads(summary_path.read_text(encoding="utf-8"))
        asked = {"teacher": teacher.name, "target": target, "fraction": fraction}
        made = {name: earlier.get(name, 1.0 if name == "fraction" else None) for name in asked}
        if made != asked:
            raise InputError(
                f"{out} holds the embeddings of {made['teacher']} (target {made['target']}, fraction "
                f"{made['fraction']}); give another output directory"
            )
    summary = {"teacher": teacher.name, "target": target, "fraction": fraction, "shards": []}
    _write_summary(summary_path, summary)
    rows = images = 0
    for path in tqdm(files, desc="teacher embeddings", unit="shard", disable=not progress):
        done = (out / "texts" / path.name).is_file() and (out / "images" / path.name).is_file()
        if not done:
            embed_shard(teacher, path, out, target, fraction)
        rows += pq.read_metadata(out / "texts" / path.name).num_rows
        images += pq.read_metadata(out / "images" / path.name).num_rows
        summary["shards"].append(path.name)
    summary.update(text_rows=rows, images=images)
    _write_summary(summary_path, summary)
    return summary


def _write_summary(path: Path, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
