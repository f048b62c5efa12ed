"""The CLIPPO model: one ViT that embeds photos and text rendered as pixels.

`load(name_or_path)` an installed or shipped model, `create(config)` a randomly initialised one,
`save(encoder, directory)`; an `Encoder` embeds texts and images into the same unit sphere.
"""

from model.encoder import EncodedImages, Encoder, create, installed_models, load, model_dir, save
from model.images import BadImageError, open_image

__all__ = [
    "BadImageError",
    "EncodedImages",
    "Encoder",
    "create",
    "installed_models",
    "load",
    "model_dir",
    "open_image",
    "save",
]
