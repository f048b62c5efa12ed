"""Text to pixels: the tokenizer of a pixels-only model.

Two styles behind one interface (`rendering.base.Renderer`):
- `shaped`: HarfBuzz shaping, Unicode bidi, a pinned Noto font stack; Pixglot's own models.
- `unifont`: bit-exact with big_vision's `render_unifont`, for the official CLIPPO checkpoints.

A model's config.json carries a `renderer` dict; `renderer_from_config` turns it back into the
renderer that the model was trained with.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from ground.errors import InputError
from rendering.base import BATCH, Renderer, Rendering, RenderReport

STYLES = ("shaped", "unifont")


def renderer_from_config(config: dict) -> Renderer:
    style = config.get("style", "shaped")
    if style == "shaped":
        from rendering.shaped import ShapedRenderer

        return ShapedRenderer(config)
    if style == "unifont":
        from rendering.unifont import UnifontRenderer

        return UnifontRenderer(config)
    raise InputError(f"unknown renderer style {style!r}; expected one of {', '.join(STYLES)}")


def shared_renderer(config: dict) -> Renderer:
    """The renderer of `config`, one per config and process: its fonts and glyph cache stay loaded
    between calls, in worker processes too (renderers are safe to share between threads)."""
    return _shared(json.dumps(config, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _shared(config_json: str) -> Renderer:
    return renderer_from_config(json.loads(config_json))


def get_renderer(style: str = "shaped", **options) -> Renderer:
    """`shared_renderer` of this style and options."""
    return shared_renderer({"style": style, **options})


def render_with_report(text: str, style: str = "shaped", **options) -> Rendering:
    return get_renderer(style, **options).render_with_report(text)


def render(text: str, style: str = "shaped", **options) -> np.ndarray:
    """H x W x 3 uint8 image of `text` (default 224 x 224, 16 px patches)."""
    return get_renderer(style, **options).render(text)


__all__ = [
    "BATCH",
    "STYLES",
    "RenderReport",
    "Renderer",
    "Rendering",
    "get_renderer",
    "render",
    "render_with_report",
    "renderer_from_config",
    "shared_renderer",
]
