"""Contrastive training of Pixglot's one-tower models (`pixglot train --config FILE.toml`).

    config = model.train.load_config("recipe.toml", overrides={"data.train": ["shards/"]})
    result = model.train.train({**config, "out": "runs/demo"})

The config schema is documented in `model.train.config`; example configs are in
`model/train/configs/`.
"""

from model.train.config import load as load_config
from model.train.config import resolve as resolve_config
from model.train.loop import TrainResult, train

__all__ = ["TrainResult", "load_config", "resolve_config", "train"]
