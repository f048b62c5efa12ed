"""Pixglot: multilingual image search from pixels only.

This package is the front door: the `pixglot` command (`pixglot.cli`, also `python -m pixglot`) and
the demo's set-up. The layers below it, each its own top-level package, are described in
docs/architecture.md: `app` (the web page) beside it, `indexer` and `training`, `evaluation`,
`model`, `rendering` and `data`, and `ground` at the bottom.
"""

import importlib.metadata

__version__ = importlib.metadata.version("pixglot")  # pyproject.toml's, as installed
