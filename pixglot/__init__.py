"""Pixglot: multilingual image search from pixels only.

The product code lives in the top-level packages `rendering`, `model`, `indexer`, `data` and `app`;
this package holds what they share: the PIXGLOT_HOME layout, the database, and the `pixglot` CLI.
"""

__version__ = "0.1.0"
