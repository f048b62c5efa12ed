"""Checks that the font stack serves every language Pixglot claims: the API behind `pixglot fonts doctor`."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from rendering.fontstack import FontStack, default_stack
from rendering.shaped import ShapedRenderer

SAMPLES_FILE = Path(__file__).with_name("samples.toml")


@dataclass
class LanguageCheck:
    language: str
    sample: str
    fonts: list[str]  # the stack fonts that draw the sample's glyphs
    covered: bool
    missing: list[str]  # code points, U+XXXX
    truncated: bool


def samples() -> dict[str, str]:
    return tomllib.loads(SAMPLES_FILE.read_text(encoding="utf-8"))["samples"]


def check_languages(stack: FontStack | None = None) -> list[LanguageCheck]:
    stack = stack or default_stack()
    renderer = ShapedRenderer(stack=stack)
    checks = []
    for language, sample in samples().items():
        layout = renderer.layout(sample, language)
        used = sorted(
            {stack.fonts[f].id for line in range(len(layout.lines)) for _, f, _ in layout.glyphs(line)}
        )
        report = layout.report
        checks.append(
            LanguageCheck(
                language=language,
                sample=sample,
                fonts=used,
                covered=not report.missing,
                missing=[f"U+{ord(c):04X}" for c in report.missing],
                truncated=bool(report.truncated),
            )
        )
    return checks


def stack_files(stack: FontStack | None = None) -> list[dict]:
    """Every font of the stack with its file and checksum, so two machines can be compared."""
    stack = stack or default_stack()
    found = [{"id": f.id, "file": str(f.path), "face": f.index, "sha256": f.sha256()} for f in stack.fonts]
    return found + [{"file": name, "missing": True} for name in stack.missing_files]


def report(stack: FontStack | None = None) -> dict:
    checks = check_languages(stack)
    return {
        "ok": all(c.covered and not c.truncated for c in checks),
        "languages": [asdict(c) for c in checks],
        "fonts": stack_files(stack),
    }
