"""A learnable toy task for the trainer's tests: solid colours captioned by their names in two languages."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from training import resolve_config

COLOURS = {
    "red": ((220, 30, 30), "rot"),
    "green": ((30, 180, 40), "grün"),
    "blue": ((30, 60, 220), "blau"),
    "yellow": ((240, 220, 20), "gelb"),
    "black": ((10, 10, 10), "schwarz"),
    "white": ((250, 250, 250), "weiß"),
    "purple": ((140, 40, 160), "lila"),
    "orange": ((250, 140, 20), "orange"),
}


def png(rgb: tuple[int, int, int], size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buffer, "PNG")
    return buffer.getvalue()


def write_colour_shards(directory: Path, shards: int = 2, row_group_size: int | None = None) -> Path:
    """16 rows (8 colours x en, de) over `shards` Parquet files; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        (name, png(rgb), text, language)
        for name, (rgb, german) in COLOURS.items()
        for text, language in ((name, "en"), (german, "de"))
    ]
    per_shard = -(-len(rows) // shards)
    for s in range(shards):
        part = rows[s * per_shard : (s + 1) * per_shard]
        table = pa.table(
            {column: [r[i] for r in part] for i, column in enumerate(("key", "image", "text", "language"))}
        )
        pq.write_table(table, directory / f"colours-{s:05d}.parquet", row_group_size=row_group_size)
    return directory


def toy_config(shards: Path, out: Path, **sections: dict) -> dict:
    """A resolved config for a small, fast model (64 px, 16 patches) on the colour shards."""
    raw = {
        "steps": 8,
        "seed": 0,
        "out": str(out),
        "model": {"base": "tiny-test", "architecture": {"image_size": 64}},
        "data": {"train": [str(shards)], "batch_size": 8, "workers": 0},
        "optimizer": {"lr": 1e-3},
        "schedule": {"warmup_steps": 2},
        # fp32 pinned: "auto" would pick bf16 on CPUs with native bf16, and the tests' numbers
        # must not depend on the CPU they run on.
        "run": {"threads": 1, "log_every": 1, "checkpoint_every": 4, "precision": "fp32"},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return resolve_config(raw)
