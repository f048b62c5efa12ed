"""Distillation: a student learns to embed as a teacher does, from the teacher's stored embeddings.

A run with a `[distill]` section (`pixglot distill train`) adds to each step's loss

- a text term: the student's embeddings of `distill.text_batch` teacher texts (rendered by the
  student's own renderer, from the run's rendered-text cache) against the teacher's vectors of them;
- an image term: the student's embeddings of `distill.image_batch` training images against the
  teacher's vectors of them ("teacher"), or against the student's own embeddings of them at the
  start of the run ("self": a one-tower model reads images with the same network it is retrained to
  read texts with, and this keeps its image vectors, and an index built with them, where they were);
- the contrastive loss on data.train's pairs, weighted by `distill.contrastive_weight` (0: not
  computed at all).

Distances: "cosine", 1 - cos(student, teacher); "mse", the mean squared difference per dimension
between the student's head output before normalisation and the teacher's vector as stored (the
M-CLIP loss).

A teacher's space may be wider or narrower than the student's: then, before training starts, the
student's head is replaced by one of the teacher's size, the old head followed by a seeded random
semi-orthogonal map (which keeps the student's cosines when the space grows). It trains with the
rest of the network: the learned linear map into the teacher's space is part of the model, and the
saved model embeds into that space directly.

Batches are a pure function of (seed, batch number), as the pairs' are: every epoch of the teacher
texts (and of the images) is its own seeded permutation, so a resumed run draws what it would have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ground.atomic import write_atomic
from ground.errors import InputError
from model.vit import ViT
from training.data import fingerprint_files, group_texts, shard_files
from training.teacher import TeacherImages, TeacherTexts, read_teacher_images, read_teacher_texts

if TYPE_CHECKING:
    from training.loop import BatchRunner

# Random streams of the distillation batches; the pair batches use 0..3 (training.data).
_TEXT_STREAM, _IMAGE_STREAM = 10, 11
SELF_TARGETS_FILE = "distill_image_targets.npy"


@dataclass(frozen=True)
class TeacherVectors:
    """What a run learns from: the teacher's text rows and (with image_target "teacher") images."""

    texts: TeacherTexts | None
    images: TeacherImages | None
    fingerprint: str

    @property
    def dim(self) -> int | None:
        """The teacher's embedding size (None: no teacher vectors, the image term targets "self")."""
        source = self.texts or self.images
        return None if source is None else source.vectors.shape[1]


def read_teacher(config: dict, held_out: set[str] = frozenset()) -> TeacherVectors:
    """The teacher's vectors the run learns from; text rows of the `held_out` keys left out."""
    d = config["distill"]
    texts = read_teacher_texts(d["texts"], config["data"]["languages"]) if d["texts"] else None
    if texts is not None and held_out:
        texts = texts.subset(np.array([key not in held_out for key in texts.keys], bool))
    images = read_teacher_images(d["images"]) if d["images"] else None
    if texts is not None and images is not None and texts.vectors.shape[1] != images.vectors.shape[1]:
        raise InputError(
            f"distill: the teacher's text vectors have {texts.vectors.shape[1]} values and its image "
            f"vectors {images.vectors.shape[1]}: they must come from one teacher's shared space"
        )
    files = shard_files(d["texts"], "teacher texts") if d["texts"] else []
    files += shard_files(d["images"], "teacher images") if d["images"] else []
    return TeacherVectors(texts, images, fingerprint_files(files) if files else "")


def semi_orthogonal(rows: int, columns: int, seed: int) -> Tensor:
    """(rows, columns) with orthonormal columns (rows >= columns) or orthonormal rows."""
    generator = torch.Generator().manual_seed(seed)
    tall = torch.randn(max(rows, columns), min(rows, columns), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(tall)
    q = q * torch.sign(torch.diagonal(r))  # a unique Q for a given matrix
    return (q if rows >= columns else q.T).float()


def head_for(net: ViT, dim: int, seed: int) -> ViT:
    """`net` embedding into `dim` values: itself when it already does, else a copy whose head is
    its head followed by a semi-orthogonal map into `dim`."""
    if net.dim == dim:
        return net
    widened = ViT(dataclasses.replace(net.config, out_dim=dim))
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    widened.load_state_dict(state, strict=False)
    q = semi_orthogonal(dim, net.dim, seed)
    with torch.no_grad():
        if net.head is None:  # the pooled width was the embedding
            widened.head.weight.copy_(q)
            widened.head.bias.zero_()
        else:
            widened.head.weight.copy_(q @ net.head.weight.float())
            widened.head.bias.copy_(q @ net.head.bias.float())
    widened.grad_checkpointing = net.grad_checkpointing
    return widened.to(next(net.parameters()).device).train(net.training)


def epoch_batch(n: int, size: int, seed: int, stream: int, number: int) -> np.ndarray:
    """Batch `number` of `size` items from n: each epoch visits every item once, in its own seeded
    order."""
    positions = np.arange(number * size, (number + 1) * size)
    epochs = positions // n
    out = np.empty(size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, stream, int(epoch)]).permutation(n)
        at = epochs == epoch
        out[at] = order[positions[at] % n]
    return out


def distance(student: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """Mean distance over the batch. `student`: the head's output before normalisation."""
    student, teacher = student.float(), teacher.float()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


class DistillTerms(nn.Module):
    """The distillation terms of a step, from the run's pixels on the device.

    text_ids: (n,) each teacher text row's number in the run's rendered texts;
    image_keys: (m,) the key ids (rows of the held pictures) of the images the image term reads;
    image_targets: (m, dim) their targets (the teacher's vectors, or the student's own)."""

    def __init__(
        self,
        config: dict,
        text_ids: np.ndarray,
        text_targets: np.ndarray | None,
        image_keys: np.ndarray,
        image_targets: np.ndarray | None,
        device: torch.device,
        text_chunks: int,
    ):
        super().__init__()
        d = config["distill"]
        self.seed, self.kind, self.text_chunks = config["seed"], d["loss"], text_chunks
        self.text_weight = d["text_weight"] if text_targets is not None else 0.0
        self.image_weight = d["image_weight"] if image_targets is not None else 0.0
        self.text_batch, self.image_batch = d["text_batch"], d["image_batch"]
        self.text_ids = text_ids
        self.image_keys = image_keys
        self.register_buffer("text_targets", _tensor(text_targets, device), persistent=False)
        self.register_buffer("image_targets", _tensor(image_targets, device), persistent=False)

    def describe(self) -> dict:
        """What the run learns from, for the model's config."""
        return {
            "text_rows": len(self.text_ids) if self.text_weight else 0,
            "images": len(self.image_keys) if self.image_weight else 0,
            "dim": next((t.shape[1] for t in (self.text_targets, self.image_targets) if t is not None), None),
        }

    def progress(self, batches: int, batches_per_second: float) -> dict[str, float]:
        """For the log: passes over the teacher texts and the images so far, and their rates."""
        record = {}
        for name, n, size, weight in (
            ("texts", len(self.text_ids), self.text_batch, self.text_weight),
            ("images", len(self.image_keys), self.image_batch, self.image_weight),
        ):
            if weight:
                record[f"{name}_epoch"] = round(batches * size / n, 3)
                record[f"{name}_per_second"] = batches_per_second * size
        return record

    def texts(self, runner: BatchRunner, number: int) -> Tensor:
        rows = epoch_batch(len(self.text_ids), self.text_batch, self.seed, _TEXT_STREAM, number)
        ids = self.text_ids[rows]
        order, groups, slots = group_texts(runner.pixels.text_count[ids], self.text_chunks)
        device = runner.device
        student = runner.embed_texts(
            torch.from_numpy(ids[order]).to(device), groups, torch.from_numpy(slots), normalize=False
        )
        return distance(student, self.text_targets[torch.from_numpy(rows).to(device)], self.kind)

    def images(self, runner: BatchRunner, number: int) -> Tensor:
        rows = epoch_batch(len(self.image_keys), self.image_batch, self.seed, _IMAGE_STREAM, number)
        device = runner.device
        pixels = runner.pixels.pictures(torch.from_numpy(self.image_keys[rows]))
        student = runner.net(pixels, normalize=False)
        return distance(student, self.image_targets[torch.from_numpy(rows).to(device)], self.kind)

    def forward(self, runner: BatchRunner, number: int) -> dict[str, Tensor]:
        """The weighted terms of micro-batch `number`, by name; call under the step's autocast."""
        terms = {}
        if self.text_weight:
            terms["distill_text"] = self.text_weight * self.texts(runner, number)
        if self.image_weight:
            terms["distill_image"] = self.image_weight * self.images(runner, number)
        return terms


def _tensor(array: np.ndarray | None, device: torch.device) -> Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(device)


def self_targets(out: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The student's own image vectors at the start of the run: computed once and kept in the run's
    directory, so a resumed run (perhaps on another device, in other arithmetic) targets the same."""
    path = out / SELF_TARGETS_FILE
    if path.is_file():
        return np.load(path)
    targets = compute()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, targets)

    write_atomic(path, write)
    return targets
