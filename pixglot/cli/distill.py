"""`pixglot distill`: a student model trained to embed as a teacher does, from the teacher's stored
embeddings (`train`), and those embeddings computed once (`embed-teacher`)."""

from __future__ import annotations

import argparse

from pixglot.cli import train as train_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="train a student model from a teacher's embeddings",
        description=__doc__.splitlines()[0],
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser(
        "train",
        help="train a student from teacher embeddings",
        description="A training run (the options and config of `pixglot train`) whose [distill] section "
        "names the teacher's embeddings: the student learns to embed each text as the teacher did, and its "
        "images as the teacher did or as it did itself at the start. The section is documented in "
        "training/config.py; recipes are in training/configs/.",
    )
    train_command.add_run_options(p)
    p.add_argument(
        "--teacher-texts",
        nargs="+",
        metavar="PARQUET",
        help="teacher text embeddings; overrides distill.texts",
    )
    p.add_argument(
        "--teacher-images",
        nargs="+",
        metavar="PARQUET",
        help="teacher image embeddings; overrides distill.images",
    )
    p.set_defaults(func=_train)

    p = actions.add_parser(
        "embed-teacher",
        help="compute a teacher's embeddings of training shards",
        description="Writes DIR/texts/*.parquet (text, language, teacher_text_emb), DIR/images/*.parquet "
        "(key, teacher_image_emb) and DIR/teacher.json, one file per input shard; run it again to go on "
        "after a stop. Teachers: pixglot:MODEL, open_clip:ARCH/PRETRAINED, hf:NAME (the last two need "
        "pip install -e '.[teachers]').",
    )
    p.add_argument(
        "teacher",
        help="e.g. pixglot:demo, open_clip:ViT-B-16-SigLIP2/webli, hf:google/siglip2-base-patch16-224",
    )
    p.add_argument(
        "shards", nargs="+", metavar="SHARDS", help="training shards (directories or .parquet files)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where the embeddings go")
    p.add_argument(
        "--target",
        choices=("text", "source"),
        default="text",
        help="embed each row's text (default), or its English source (a 'source' column): every "
        "language then learns the teacher's English",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="embed only this fraction of the caption rows, a fixed draw per row (default: all)",
    )
    p.set_defaults(func=_embed_teacher)


def _train(args: argparse.Namespace) -> int:
    overrides = {}
    if args.teacher_texts:
        overrides["distill.texts"] = args.teacher_texts
    if args.teacher_images:
        overrides["distill.images"] = args.teacher_images
    return train_command.run(args, overrides, must_distil=True)


def _embed_teacher(args: argparse.Namespace) -> int:
    from training.embed_teacher import embed_shards, load_teacher

    teacher = load_teacher(args.teacher)
    summary = embed_shards(teacher, args.shards, args.out, args.target, args.fraction, progress=True)
    print(
        f"{summary['teacher']}: {summary['text_rows']} text rows and {summary['images']} images from "
        f"{len(summary['shards'])} shard(s) in {args.out}"
    )
    return 0
