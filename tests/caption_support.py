"""Small datasets in the XM3600 layout (captions.jsonl + images/), written for a test."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def write_dataset(root: Path, lines: list[str], images: list[str]) -> Path:
    """`lines` as captions.jsonl under `root`, and a small red picture under images/ for each name."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "images").mkdir(exist_ok=True)
    for name in images:
        Image.new("RGB", (32, 24), (200, 30, 30)).save(root / "images" / name)
    return root
