"""The first query after a fresh set-up: how long a user waits, before and after the warm-up.

    python bench/bench_first_query.py [--images 300] [--model demo]

Each step runs in a fresh process, with a new PIXGLOT_HOME and an empty numba cache, as on a fresh
clone. The collection holds generated photos indexed with the shipped model (indexing renders no
text, so it compiles none of the renderer's code).

- before: what the page did until the warm-up: load the model when it shows, then compile the
  renderer at the first query. Timed: the model load, the first query, the second.
- after, `pixglot ui` start-up: the warm-up the command runs before serving (compiles into numba's
  cache).
- after, the page: a new server process (Streamlit's AppTest, no browser) shows the page, which
  warms up from the cache, then answers a first and a second query, each with its page of
  thumbnails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECTION = "first"

BEFORE = """
import json, time
import indexer
t0 = time.perf_counter()
collection = indexer.open_collection("first")
collection.encoder()
t1 = time.perf_counter()
collection.search("猫", k=24)
t2 = time.perf_counter()
collection.search("кошка", k=24)
t3 = time.perf_counter()
print(json.dumps({"model load": t1 - t0, "first query": t2 - t1, "second query": t3 - t2}))
"""

UI_START = """
import argparse, json, time
from pixglot.cli.ui import prepare_first_collection
t0 = time.perf_counter()
prepare_first_collection(argparse.Namespace(collection="first", db=None))
print(json.dumps({"warm-up": time.perf_counter() - t0}))
"""

PAGE = """
import json, sys, time
from streamlit.testing.v1 import AppTest
page = AppTest.from_file(sys.argv[1], default_timeout=600)
t0 = time.perf_counter()
page.run()
t1 = time.perf_counter()
page.text_input(key="text").set_value("猫").run()
t2 = time.perf_counter()
page.text_input(key="text").set_value("кошка").run()
t3 = time.perf_counter()
assert not page.exception and not page.error, (page.exception, page.error)
print(json.dumps({"page served": t1 - t0, "first query": t2 - t1, "second query": t3 - t2}))
"""


def run(script: str, env: dict[str, str], *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixglot-first-query-") as tmp:
        home, numba_cache = Path(tmp, "home"), Path(tmp, "numba")
        env = {
            **os.environ,
            "PIXGLOT_HOME": str(home),
            "NUMBA_CACHE_DIR": str(numba_cache),
            "PYTHONPATH": str(REPO),
        }
        sys.path.insert(0, str(REPO))
        from indexer.samples import write_images

        write_images(Path(tmp, "photos"), args.images)
        index = [sys.executable, "-m", "pixglot", "index", str(Path(tmp, "photos")), "-c", COLLECTION]
        subprocess.run([*index, "-m", args.model, "--quiet"], env=env, check=True, capture_output=True)

        before = run(BEFORE, env)
        shutil.rmtree(numba_cache, ignore_errors=True)
        start = run(UI_START, env)
        page = run(PAGE, env, str(REPO / "app" / "main.py"))

    machine = f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    print(f"{machine}; model {args.model}, {args.images} images")
    print("| step | seconds |")
    print("|---|---:|")
    for name, value in before.items():
        print(f"| before: {name} | {value:.2f} |")
    print(f"| after: `pixglot ui` start-up warm-up (compiles) | {start['warm-up']:.2f} |")
    for name, value in page.items():
        print(f"| after: {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
