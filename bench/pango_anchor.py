"""PangoCairo anchor for bench_render.py: the same captions drawn by a mainstream text stack.

Runs under the system Python with PyGObject (Debian: python3-gi, gir1.2-pango-1.0, python3-gi-cairo),
which Pixglot's virtual environment does not have; bench_render.py starts it as a subprocess.
One 224 x 224 canvas and a Noto Sans layout 224 px wide that wraps at words (or at characters
inside over-long words) are reused; each caption clears the canvas, is laid out and drawn, and its
pixels are copied out, as a renderer returning a new array does.

It serves timed passes: for each set name ("captions" or "queries") read from stdin it draws that set
`--loops` times and prints one JSON line with the number of texts drawn and the seconds taken. The
first line it prints names the Pango and cairo versions. bench_render.py interleaves these passes
with its own, so that both sides see the same moments of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gi

gi.require_version("Pango", "1.0")
gi.require_version("PangoCairo", "1.0")
import cairo  # noqa: E402
from gi.repository import Pango, PangoCairo  # noqa: E402

SIZE = 224


class Canvas:
    """One surface, context and layout reused for every caption, as a tuned PangoCairo caller would."""

    def __init__(self, font: Pango.FontDescription):
        self.surface = cairo.ImageSurface(cairo.FORMAT_RGB24, SIZE, SIZE)
        self.ctx = cairo.Context(self.surface)
        self.layout = PangoCairo.create_layout(self.ctx)
        self.layout.set_font_description(font)
        self.layout.set_width(SIZE * Pango.SCALE)
        self.layout.set_wrap(Pango.WrapMode.WORD_CHAR)

    def draw(self, text: str) -> bytes:
        self.ctx.set_source_rgb(1, 1, 1)
        self.ctx.paint()
        self.layout.set_text(text, -1)
        self.ctx.set_source_rgb(0, 0, 0)
        self.ctx.move_to(0, 0)
        PangoCairo.show_layout(self.ctx, self.layout)
        self.surface.flush()
        return bytes(self.surface.get_data())


def timed_pass(texts: list[str], canvas: Canvas, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        for text in texts:
            canvas.draw(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("captions", help="JSON lines with 'caption' and 'query' fields")
    parser.add_argument("--loops", type=int, default=5, help="times each pass draws the whole set")
    parser.add_argument("--font", default="Noto Sans")
    parser.add_argument("--pixels", type=int, default=11, help="font size in pixels")
    args = parser.parse_args()
    with open(args.captions, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    font = Pango.FontDescription.from_string(args.font)
    font.set_absolute_size(args.pixels * Pango.SCALE)
    canvas = Canvas(font)
    sets = {
        name: [row[field] for row in rows] for name, field in (("captions", "caption"), ("queries", "query"))
    }
    for texts in sets.values():  # warm-up: font loading, shaping caches
        for text in texts:
            canvas.draw(text)
    print(json.dumps({"pango": Pango.version_string(), "cairo": cairo.cairo_version_string()}), flush=True)
    for line in sys.stdin:
        texts = sets[line.strip()]
        seconds = timed_pass(texts, canvas, args.loops)
        print(json.dumps({"n": len(texts) * args.loops, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
