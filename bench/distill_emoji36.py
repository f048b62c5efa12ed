"""Distillation on Emoji-36, measured: the two experiments of docs/distillation.md.

    python bench/distill_emoji36.py EMOJI36_DIR WORK_DIR [--teacher demo] [--steps N]

No multilingual teacher can be had offline, so the mechanism is shown with the teacher at hand, the
shipped demo model (it reads text with the shaped renderer, and was trained on all of Emoji-36):

- cross-renderer: a fresh student that reads unifont learns the teacher's embeddings of every
  caption and picture (`training/configs/distill-emoji36-cross-renderer.toml`);
- cross-lingual (M-CLIP's setting): every caption's target is the teacher's embedding of the
  English caption of the same emoji at the same place (its CLDR name, or its keyword list), so the
  student learns to read 36 languages as the teacher reads English
  (`training/configs/distill-emoji36-cross-lingual.toml`).

Steps: export the shards (all of Emoji-36), add the English source of each row, embed with the
teacher (both targets), train both students, and evaluate the students and the teacher with
`pixglot eval emoji36` on the 609 test emoji (captions, and one-word queries); the teacher also on
English alone. Everything lands in WORK_DIR; a summary table is printed and written to
WORK_DIR/summary.json. Rerunning reuses what is done (shards, embeddings, finished runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data.shards import export_parquet  # noqa: E402
from evaluation.retrieval import evaluate_retrieval  # noqa: E402
from training.embed_teacher import embed_shards, load_teacher  # noqa: E402

RECIPES = {
    "cross-renderer": REPO / "training" / "configs" / "distill-emoji36-cross-renderer.toml",
    "cross-lingual": REPO / "training" / "configs" / "distill-emoji36-cross-lingual.toml",
}


def with_english_source(shards: Path, out: Path, source_language: str = "en") -> Path:
    """The shards with a `source` column: the English caption of the same key at the same place
    (a key's captions in a language are its name, then its keywords); null where English has none."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(shards.glob("*.parquet"))
    english: dict[str, list[str]] = defaultdict(list)
    for path in files:
        table = pq.read_table(path, columns=["key", "text", "language"]).to_pydict()
        for key, text, language in zip(table["key"], table["text"], table["language"], strict=True):
            if language == source_language:
                english[key].append(text)
    for path in files:
        if (out / path.name).is_file():
            continue
        table = pq.read_table(path)
        seen: dict[tuple[str, str], int] = defaultdict(int)
        sources = []
        for key, language in zip(
            table.column("key").to_pylist(), table.column("language").to_pylist(), strict=True
        ):
            place = seen[key, language]
            seen[key, language] += 1
            captions = english.get(key, [])
            sources.append(captions[min(place, len(captions) - 1)] if captions else None)
        pq.write_table(table.append_column("source", pa.array(sources, pa.string())), out / path.name)
    return out


def pixglot(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pixglot", *args], check=True, cwd=REPO)


def evaluate(dataset: Path, model: Path | str, protocol: str, languages: list[str] | None = None) -> dict:
    """Mean and per-language text->image Recall@5 on the test emoji (`pixglot eval emoji36`)."""
    metrics = evaluate_retrieval(
        dataset, model, protocol=protocol, split="test", languages=languages, record=False, reports=False
    ).run.metrics
    return {
        "mean": metrics["mean"]["text_to_image"]["recall@5"],
        "languages": {lang: m["text_to_image"]["recall@5"] for lang, m in metrics["languages"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="Emoji-36 (pixglot data emoji36 build DIR)")
    parser.add_argument("work", type=Path)
    parser.add_argument("--teacher", default="demo", help="a Pixglot model (default: the demo model)")
    parser.add_argument("--only", choices=sorted(RECIPES), nargs="+", default=sorted(RECIPES))
    args = parser.parse_args()
    work = args.work
    timings: dict[str, float] = {}

    def timed(name: str, run: Callable[..., object], *run_args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        result = run(*run_args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {timings[name]} s", flush=True)
        return result

    shards = work / "shards"
    if not any(shards.glob("*.parquet")):
        timed("export", export_parquet, args.dataset, shards, split="all")
    sourced = timed("english source", with_english_source, shards, work / "shards-with-source")
    teacher = load_teacher(f"pixglot:{args.teacher}")
    targets = {
        "cross-renderer": ("teacher-own", "text", shards),
        "cross-lingual": ("teacher-english", "source", sourced),
    }
    summary: dict = {"teacher": args.teacher, "seconds": timings, "runs": {}}
    for name in args.only:
        folder, target, data = targets[name]
        emb, out = work / folder, work / "runs" / name
        timed(f"embed ({name})", embed_shards, teacher, [data], emb, target=target)
        if not (out / "model.safetensors").is_file():
            command = ["distill", "train", "--config", str(RECIPES[name]), "--data", str(shards)]
            command += ["--out", str(out), "--resume"]
            command += ["--teacher-texts", str(emb / "texts"), "--teacher-images", str(emb / "images")]
            timed(f"train ({name})", pixglot, *command)
        trained = json.loads((out / "config.json").read_text())["training"]
        summary["runs"][name] = {"steps": trained["steps"], "seconds": trained["seconds"]}
    results: dict = {}
    for protocol in ("all", "words"):
        for model_name, model in [("teacher", args.teacher), *((n, work / "runs" / n) for n in args.only)]:
            results.setdefault(model_name, {})[protocol] = evaluate(args.dataset, model, protocol)
        results["teacher"][f"{protocol} (English only)"] = evaluate(
            args.dataset, args.teacher, protocol, ["en"]
        )
    summary["eval"] = results
    (work / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    for model_name, by_protocol in results.items():
        means = ", ".join(f"{p} {r['mean']:.3f}" for p, r in by_protocol.items())
        print(f"{model_name}: text->image R@5 on the 609 test emoji: {means}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
