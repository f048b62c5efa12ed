"""Shared by the web page's tests: a real tiny model and a collection of small generated images."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import indexer
import model
from ground.home import models_dir

N_IMAGES = 20
WAIT_SECONDS = 90


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Distinct small PNGs: a colour field with a rectangle, so each has its own vector."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.empty((48 + i, 64, 3), np.uint8)
        pixels[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        top, left = rng.integers(0, 24, 2)
        pixels[top : top + 20, left : left + 30] = rng.integers(0, 256, 3, dtype=np.uint8)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def build_library(home: Path, images: Path, count: int = N_IMAGES) -> list[Path]:
    """In PIXGLOT_HOME `home`: the tiny model saved as "tiny" and collection "t" of `count` images."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXGLOT_HOME", str(home))
        model.save(model.create("tiny-test"), models_dir() / "tiny")
        paths = make_images(images, count)
        options = indexer.IndexOptions(workers=0, progress=False)
        indexer.index_paths([images], collection="t", model="tiny", options=options)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(port: int, server: subprocess.Popen, log: Path, seconds: float = WAIT_SECONDS) -> None:
    """Until the Streamlit server answers its health check; fails with the server's log otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the server did not become healthy in {seconds} s:\n{log.read_text()[-3000:]}")
