"""Mutation testing of one module at a time: would the tests notice if the code were subtly wrong?

    python bench/mutation.py evaluation/metrics.py [--diffs] [--keep DIR]

Some modules give answers that nobody reads closely: a Recall@k one rank off, a line broken in the
wrong place, a right-to-left run drawn in the wrong order, a resumed run that starts from the wrong
checkpoint. Every line of them can run under the tests while no test would fail if it were wrong.
mutmut (3.x) makes one small change at a time (a `<` for a `<=`, a constant plus one, an argument
dropped), runs the tests that reach the changed function, and counts the changes ("mutants") that
no test notices. Those are listed so that a human can judge them: a real wrong answer the suite
misses, or an equivalent change (the same behaviour, written differently).

Each module is measured with the test files that are meant to cover it (MODULES), not the whole
suite, so that a run takes minutes. The project is linked into a fresh scratch folder with a
generated `[tool.mutmut]` table, so every run starts from nothing (mutmut keeps earlier verdicts
in its `mutants/` folder and would not retest a survivor after tests are added) and the checkout
is left as it was. Spawned Python processes (worker pools, `python -m pixglot` in the crash tests)
find the mutated copy first through PYTHONPATH. mutmut learns which tests reach which function by
running them once in its own process: a test that does all its work in a spawned process reaches
nothing there, so it is never run against a mutant, and only the in-process tests count.

Kill rate, as mutmut's own badge computes it: (killed + timeout) / (all - skipped); a mutant no
selected test reaches counts as a survivor. A run stopped with Ctrl-C reports over the mutants it
tested. Functions compiled by numba (`@compiled`) are never mutated here: mutmut skips decorated
functions, because its per-call switch between the original and the mutants is Python code a
compiled function cannot call. `bench/mutation_compiled.py` measures those on a sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("ground", "pixglot", "rendering", "model", "indexer", "data", "evaluation", "training", "app")
# Mutants run two at a time, whatever the machine: these runs share it with other work.
MAX_CHILDREN = 2


@dataclass(frozen=True)
class Target:
    tests: tuple[str, ...]
    # Slow tests whose subject is elsewhere (process pools, kill-and-resume): they would run for
    # every mutant of a function they reach, for minutes, and catch what faster tests catch.
    deselect: tuple[str, ...] = ()


_RENDERING_TESTS = (  # the kernels' own tests first: with -x, a mutant there fails in seconds
    "tests/test_rendering_kernels.py",
    "tests/test_rendering_kernels_reference.py",
    "tests/test_rendering_shaped.py",
    "tests/test_rendering_fuzz.py",
    "tests/test_rendering_unifont.py",
    "tests/test_rendering_tables.py",
)
_WORKER_POOL_TEST = "tests/test_rendering_shaped.py::test_batch_in_worker_processes_equals_in_process"
_PRUNE_TEST = "tests/test_indexer_pipeline.py::test_prune_drops_vanished_images_only_when_asked"

MODULES: dict[str, Target] = {
    "evaluation/metrics.py": Target(("tests/test_data_metrics.py",)),
    "rendering/text.py": Target(_RENDERING_TESTS, deselect=(_WORKER_POOL_TEST,)),
    "rendering/kernels.py": Target(_RENDERING_TESTS, deselect=(_WORKER_POOL_TEST,)),
    "training/checkpoint.py": Target(
        ("tests/test_train_loop.py",),
        deselect=(
            "tests/test_train_loop.py::test_learns_the_toy_task_and_writes_a_model_directory",
            "tests/test_train_loop.py::test_worker_processes_build_the_same_batches",
        ),
    ),
    "indexer/decode.py": Target(
        ("tests/test_pictures.py", "tests/test_indexer_pipeline.py", "tests/test_file_names.py"),
        deselect=(_PRUNE_TEST,),
    ),
    "indexer/ingest.py": Target(
        (
            "tests/test_indexer_ingest.py",
            "tests/test_indexer_pipeline.py",
            "tests/test_indexer_crash.py",
            "tests/test_file_names.py",
        ),
        deselect=(_PRUNE_TEST,),
    ),
}


def mutmut_table(module: str, target: Target) -> str:
    selection = [*target.tests, *(f"--deselect={test}" for test in target.deselect)]
    table = {
        "source_paths": [module],
        # The mutated module imports the rest of the project, and the tests read its data files.
        "also_copy": list(PACKAGES),
        "pytest_add_cli_args_test_selection": selection,
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        # Torch and numba start threads: each mutant's process is forked from a server that has
        # only collected the tests, never from one that ran them.
        "process_isolation": "forkserver",
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def scratch_project(folder: Path, module: str, target: Target) -> None:
    """The checkout linked into `folder`, with the pyproject.toml that configures this run."""
    for name in (*PACKAGES, "tests"):
        (folder / name).symlink_to(REPO / name, target_is_directory=True)
    pyproject = (REPO / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(pyproject.rstrip("\n") + "\n" + mutmut_table(module, target))
    tomllib.loads((folder / "pyproject.toml").read_text())  # fail here, not inside mutmut


def mutmut(folder: Path, *args: str, capture: bool = False) -> str:
    # The folder must exist before Python starts: a PYTHONPATH entry missing at start-up stays
    # skipped, and the editable install's finder then imports the checkout's unmutated code.
    (folder / "mutants").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(folder / "mutants")}
    command = [sys.executable, "-m", "mutmut", *args]
    pipe = subprocess.PIPE if capture else None
    with subprocess.Popen(command, cwd=folder, env=env, text=True, stdout=pipe, stderr=pipe) as process:
        try:
            out, err = process.communicate()
        except KeyboardInterrupt:
            # mutmut got the same Ctrl-C: it stops its workers and keeps what it has measured.
            out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"mutmut {' '.join(args)} failed (exit {process.returncode})\n{err or ''}")
    return out or ""


def not_killed(folder: Path) -> dict[str, str]:
    """mutmut's name and status of every mutant that is not killed."""
    found = {}
    for line in mutmut(folder, "results", capture=True).splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=sorted(MODULES))
    parser.add_argument("--diffs", action="store_true", help="print the change each survivor makes")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, for `mutmut show`")
    args = parser.parse_args()

    target = MODULES[args.module]
    if args.keep:
        args.keep.mkdir(parents=True)
        folder, cleanup = args.keep.resolve(), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="pixglot-mutation-")
        folder = Path(cleanup.name)
    try:
        scratch_project(folder, args.module, target)
        start = time.perf_counter()
        mutmut(folder, "run", "--max-children", str(MAX_CHILDREN))
        wall = time.perf_counter() - start
        mutmut(folder, "export-cicd-stats", capture=True)
        stats = json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())
        untested = ("timeout", "not checked", "check was interrupted by user")
        survivors = {name: status for name, status in not_killed(folder).items() if status not in untested}
        diffs = {name: mutmut(folder, "show", name, capture=True) for name in survivors} if args.diffs else {}
    finally:
        if cleanup:
            cleanup.cleanup()

    verdicts = ("killed", "survived", "timeout", "no_tests", "suspicious", "segfault")
    checked = sum(stats[v] for v in verdicts)
    caught = stats["killed"] + stats["timeout"]
    total, skipped = stats["total"], stats["skipped"]
    print()
    print(f"module {args.module}: {total} mutants in {wall:.0f} s wall, {MAX_CHILDREN} at a time")
    print(f"tests: {' '.join(target.tests)}")
    if target.deselect:
        print(f"deselected: {' '.join(target.deselect)}")
    print(
        f"killed {stats['killed']}  survived {stats['survived']}  timeout {stats['timeout']}  "
        f"no tests {stats['no_tests']}  suspicious {stats['suspicious']}  segfault {stats['segfault']}  "
        f"skipped {skipped}"
    )
    if checked < total - skipped:  # an interrupted run: the rate is over the mutants it tested
        print(f"not checked {total - skipped - checked} (interrupted)")
    print(f"kill rate {caught / max(1, checked):.1%}")
    for name, status in sorted(survivors.items()):
        print(f"  {status}: {name}")
        if name in diffs:
            print(diffs[name])


if __name__ == "__main__":
    main()
