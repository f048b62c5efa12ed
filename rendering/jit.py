"""numba's compiler as the renderers use it: compiled code is cached between processes, under
PIXGLOT_HOME rather than in the source tree. Every compiled loop is declared with `compiled`, so
the cache is set before any of them is."""

from __future__ import annotations

import functools
import os

import numba

from ground.home import cache_dir

if "NUMBA_CACHE_DIR" not in os.environ:
    numba.config.CACHE_DIR = str(cache_dir("numba"))

compiled = functools.partial(numba.njit, cache=True)
