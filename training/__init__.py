"""Contrastive training of Pixglot's one-tower models (`pixglot train --config FILE.toml`).

    config = training.load_config("recipe.toml", overrides={"data.train": ["shards/"]})
    result = training.train({**config, "out": "runs/demo"})

The config schema is documented in `training.config`; example configs are in
`training/configs/`.
"""

from training.config import load as load_config
from training.config import resolve as resolve_config
from training.loop import TrainResult, train

__all__ = ["TrainResult", "load_config", "resolve_config", "train"]
