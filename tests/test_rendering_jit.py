"""The renderers' compiled loops are cached in Pixglot's cache folder, and nothing else's is moved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import numba
import numpy as np

before = numba.config.CACHE_DIR
from rendering import kernels  # declares the renderers' loops
import elsewhere               # a module of another library, with a cached loop of its own

assert numba.config.CACHE_DIR == before, (before, numba.config.CACHE_DIR)
assert kernels._bisect_right(np.arange(5), 3, 0, 5) == 4
assert elsewhere.double(2) == 4
"""

ELSEWHERE = """
import numba


@numba.njit(cache=True)
def double(x):
    return 2 * x
"""


def _run(tmp_path: Path, **env: str) -> None:
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    (library / "elsewhere.py").write_text(ELSEWHERE)
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environment.update(PYTHONPATH=os.pathsep.join([str(REPO), str(library)]), **env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_rendering_loops_cache_under_pixglot_home_and_other_loops_stay_put(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _run(tmp_path, PIXGLOT_HOME=str(home))
    ours = {p.name for p in home.rglob("*.nbi")}
    assert any(name.startswith("kernels._bisect_right") for name in ours), ours
    assert not any(name.startswith("elsewhere.") for name in ours), ours
    # The other library's loop is cached where numba puts it by default: beside its source.
    assert any((tmp_path / "library" / "__pycache__").glob("elsewhere.double-*.nbi"))


def test_a_numba_cache_dir_set_by_the_user_wins(tmp_path: Path) -> None:
    home, chosen = tmp_path / "home", tmp_path / "chosen"
    _run(tmp_path, PIXGLOT_HOME=str(home), NUMBA_CACHE_DIR=str(chosen))
    assert any(p.name.startswith("kernels._bisect_right") for p in chosen.rglob("*.nbi"))
    assert not list(home.rglob("*.nbi"))
