"""numba's compiler as the renderers use it: their compiled loops are cached between processes in
Pixglot's cache folder (PIXGLOT_HOME/cache/numba) rather than in the source tree, which may not be
writable once installed.

Only the loops of this package go there: a cache locator that claims the functions defined in the
rendering package's files, tried before numba's own. numba's process-wide setting (NUMBA_CACHE_DIR,
`numba.config.CACHE_DIR`) is left as it is, so importing Pixglot moves no other library's cache; a
NUMBA_CACHE_DIR set by the user still wins, for these loops too. A loop's cache folder is decided
when it is declared (`compiled`), at import.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numba
from numba.core import caching

from ground.home import cache_dir

_PACKAGE = Path(__file__).resolve().parent


class PixglotCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """numba's cache locator for the functions defined in the rendering package."""

    def __init__(self, py_func: object, py_file: str):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(cache_dir("numba") / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func: object, py_file: str) -> PixglotCacheLocator | None:
        if numba.config.CACHE_DIR or Path(py_file).resolve().parent != _PACKAGE:
            return None  # numba's own locators decide
        return super().from_function(py_func, py_file)


if PixglotCacheLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, PixglotCacheLocator)

compiled = functools.partial(numba.njit, cache=True)
