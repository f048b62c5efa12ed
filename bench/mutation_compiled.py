"""Mutation testing of the renderer's compiled kernels, which mutmut leaves alone: a seeded sample.

    python bench/mutation_compiled.py [--sample 40] [--seed 0] [--diffs] [--nodes 1441,2292]

mutmut skips every function under a decorator (its per-call switch between the original and the
mutants is Python code that a numba function cannot call), so `bench/mutation.py
rendering/kernels.py` measures only the one plain function there. This script mutates the
`@compiled` functions of `rendering/kernels.py` itself, one mutant per fresh copy of the project:
numba compiles the mutated kernels (seconds each), and the rendering tests that `bench/mutation.py`
uses for the module run against them, stopping at the first failure. Trying every mutant would take
hours, so a seeded random sample is tried and the kill rate is an estimate, printed with its 95%
interval (Wilson). A mutant that makes a test loop past the time limit counts as killed, as in
mutmut.

The mutations are mutmut's simplest kinds, on the kernels' syntax tree: an arithmetic or bitwise
operator swapped (`+`/`-`, `*`/`//`, `&`/`|`, `<<`/`>>`, ...), a comparison loosened or tightened
(`<`/`<=`, `==`/`!=`, ...), `and`/`or` swapped, `not` dropped, and an integer constant plus one.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mutation import MODULES, PACKAGES, REPO, Target  # the sibling script: run from bench/

MODULE = "rendering/kernels.py"
SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitAnd,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


def _compiled_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node in the bodies of the `@compiled` functions, in a fixed order."""
    for function in tree.body:
        if isinstance(function, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "compiled" for d in function.decorator_list
        ):
            for statement in function.body:
                yield from ast.walk(statement)


def _sites(node: ast.AST) -> list[str]:
    """The ways `node` can be mutated."""
    if isinstance(node, (ast.BinOp, ast.AugAssign, ast.BoolOp)) and type(node.op) in SWAPS:
        return ["swap"]
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAPS:
        return ["swap"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ["drop not"]
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return ["plus one"]
    return []


def mutants(source: str) -> list[tuple[int, str]]:
    """(node number, kind) of every mutant of the compiled functions in `source`."""
    return [(i, kind) for i, node in enumerate(_compiled_nodes(ast.parse(source))) for kind in _sites(node)]


class _DropNot(ast.NodeTransformer):
    def __init__(self, target: ast.AST) -> None:
        self.target = target

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        return node.operand if node is self.target else self.generic_visit(node)


def mutate(source: str, number: int, kind: str) -> str:
    """`source` with mutant (`number`, `kind`) applied, as Python source (comments dropped)."""
    tree = ast.parse(source)
    node = next(n for i, n in enumerate(_compiled_nodes(tree)) if i == number)
    if kind == "drop not":
        tree = _DropNot(node).visit(tree)
    elif kind == "plus one":
        node.value += 1
    elif isinstance(node, ast.Compare):
        node.ops = [SWAPS[type(node.ops[0])]()]
    else:
        node.op = SWAPS[type(node.op)]()
    return ast.unparse(ast.fix_missing_locations(tree))


def _changed_line(original: str, mutated: str) -> str:
    # ast.unparse reformats the whole file, so compare against the unmutated file unparsed the same way.
    before = ast.unparse(ast.parse(original)).splitlines()
    after = mutated.splitlines()
    pairs = enumerate(zip(before, after, strict=True))
    return next(f"line {i + 1}: {a.strip()}  ->  {b.strip()}" for i, (a, b) in pairs if a != b)


def run_tests(kernels_source: str, target: Target, timeout: float) -> tuple[str, float]:
    """'killed', 'survived' or 'timeout' for the tests against these kernels, and the seconds taken."""
    with tempfile.TemporaryDirectory(prefix="pixglot-kernel-mutant-") as scratch:
        folder = Path(scratch)
        for name in (*PACKAGES, "tests"):
            if name != "rendering":
                (folder / name).symlink_to(REPO / name, target_is_directory=True)
        (folder / "rendering").mkdir()
        for entry in (REPO / "rendering").iterdir():
            if entry.name not in ("kernels.py", "__pycache__"):
                (folder / "rendering" / entry.name).symlink_to(entry)
        (folder / MODULE).write_text(kernels_source)
        (folder / "pyproject.toml").symlink_to(REPO / "pyproject.toml")
        # The copy's packages come first (the editable install would import the checkout's), and
        # numba compiles into a cache of its own, never the user's.
        env = {**os.environ, "PYTHONPATH": scratch, "NUMBA_CACHE_DIR": str(folder / "numba-cache")}
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]
        command += [f"--deselect={test}" for test in target.deselect]
        start = time.perf_counter()
        quiet = subprocess.DEVNULL
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=quiet, stderr=quiet, start_new_session=True
        )
        try:
            verdict = "survived" if process.wait(timeout=timeout) == 0 else "killed"
        except subprocess.TimeoutExpired:
            verdict = "timeout"
        finally:
            with contextlib.suppress(ProcessLookupError):  # the tests' own worker processes too
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return verdict, time.perf_counter() - start


def wilson(caught: int, tried: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval of a proportion seen as `caught` of `tried`."""
    if tried == 0:
        return 0.0, 1.0
    p = caught / tried
    centre = (p + z * z / (2 * tried)) / (1 + z * z / tried)
    half = z * math.sqrt(p * (1 - p) / tried + z * z / (4 * tried * tried)) / (1 + z * z / tried)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="mutants to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diffs", action="store_true", help="print the line each survivor changes")
    parser.add_argument(
        "--nodes",
        type=lambda text: {int(n) for n in text.split(",")},
        help="try these nodes' mutants instead",
    )
    args = parser.parse_args()

    target = MODULES[MODULE]
    source = (REPO / MODULE).read_text()
    every = mutants(source)
    if args.nodes:
        sample = [(number, kind) for number, kind in every if number in args.nodes]
    else:
        sample = random.Random(args.seed).sample(every, min(args.sample, len(every)))
    # The mutants are unparsed source: so is the clean run, which checks that unparsing changes nothing.
    clean, clean_s = run_tests(ast.unparse(ast.parse(source)), target, timeout=1800)
    if clean != "survived":
        sys.exit(f"the tests fail on the unmutated kernels ({clean}): fix that first")
    print(
        f"{MODULE}: {len(every)} mutants of the compiled functions; trying {len(sample)} (seed {args.seed})"
    )
    print(f"clean run of the tests: {clean_s:.0f} s")
    verdicts: dict[str, int] = {"killed": 0, "survived": 0, "timeout": 0}
    start = time.perf_counter()
    for number, kind in sample:
        mutated = mutate(source, number, kind)
        verdict, seconds = run_tests(mutated, target, timeout=3 * clean_s + 60)
        verdicts[verdict] += 1
        line = f"  {verdict:8} node {number} ({kind}), {seconds:.0f} s"
        if verdict == "survived" and args.diffs:
            line += f"\n      {_changed_line(source, mutated)}"
        print(line, flush=True)
    caught = verdicts["killed"] + verdicts["timeout"]
    low, high = wilson(caught, len(sample))
    print(f"killed {verdicts['killed']}  survived {verdicts['survived']}  timeout {verdicts['timeout']}")
    print(
        f"kill rate {caught / max(1, len(sample)):.1%} of {len(sample)} sampled "
        f"(95% interval {low:.0%}-{high:.0%}), {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
