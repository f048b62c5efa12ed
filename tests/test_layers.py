"""The packages keep their layers (docs/architecture.md): `lint-imports` passes on the tree, and
fails on a copy of it given an upward import or a circle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pixglot", "app", "indexer", "training", "evaluation", "model", "rendering", "data", "ground")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # The tree under `root` first on the path, ahead of the installed checkout.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_every_import_runs_downward_and_no_modules_import_each_other() -> None:
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("*.pyc", "assets"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("ground/errors.py", "import model", "ground is not allowed to import model"),
        ("rendering/text.py", "import indexer", "rendering is not allowed to import indexer"),
        ("data/captions.py", "from evaluation import metrics", "data is not allowed to import evaluation"),
        ("model/encoder.py", "import training", "model is not allowed to import training"),
        ("data/shards.py", "import rendering", "data is not allowed to import rendering"),
        ("indexer/ingest.py", "import training", "indexer is not allowed to import training"),
        ("app/query.py", "import pixglot.cli", "app is not allowed to import pixglot"),
        ("indexer/searching.py", "from indexer import collection", "No modules of one package"),
    ],
)
def test_an_upward_import_or_a_circle_breaks_the_check(
    copy_of_the_tree: Path, module: str, line: str, broken: str
) -> None:
    path = copy_of_the_tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # noqa\n")
        run = lint_imports(copy_of_the_tree)
    finally:
        path.write_text(original)
    assert run.returncode != 0
    assert broken in run.stdout, run.stdout
