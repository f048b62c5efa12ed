"""`pixglot models`: list, download, convert and inspect models."""

from __future__ import annotations

import argparse
import json
import sys

from ground.errors import FileFormatError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="models: list, pull, convert", description=__doc__.splitlines()[0]
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("list", help="installed models and official checkpoints to pull")
    p.set_defaults(func=_list)

    p = actions.add_parser("pull", help="download an official CLIPPO checkpoint and install it")
    p.add_argument(
        "name", metavar="NAME", help="e.g. clippo_b16_yfcc100m_i21k_init (see `pixglot models list`)"
    )
    p.add_argument("--base-url", help="where NAME.npz is downloaded from (also PIXGLOT_CHECKPOINT_URL)")
    p.add_argument("--sha256", help="expected sha256 of the .npz; a mismatch stops the install")
    p.add_argument("--force", action="store_true", help="download and convert again if installed")
    p.add_argument(
        "--keep-download", action="store_true", help="keep the .npz in PIXGLOT_HOME/cache/downloads"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pull)

    p = actions.add_parser("convert", help="convert a big_vision .npz checkpoint into a model directory")
    p.add_argument("npz", metavar="FILE.npz")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument("--name", help="model name stored in its config (default: the directory's name)")
    p.add_argument("--force", action="store_true", help="replace a model already in DIR")
    p.add_argument(
        "--knows",
        action="append",
        default=[],
        metavar="KIND",
        help="a kind of picture the checkpoint learnt, e.g. photos (repeatable); the indexer warns "
        "when a folder holds other kinds",
    )
    p.set_defaults(func=_convert)

    p = actions.add_parser("info", help="a model's config, dimension and weights fingerprint")
    p.add_argument("name", metavar="NAME_OR_DIR")
    p.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    from model.encoder import installed_models, model_dir, read_model_config, shipped_models
    from model.pull import official_checkpoints

    installed = installed_models()
    # An installed model of the same name wins over a shipped one (model_dir's lookup order).
    local = [(name, "installed") for name in installed]
    local += [(name, "shipped") for name in shipped_models() if name not in installed]
    rows = [("NAME", "STATUS", "ARCHITECTURE", "DIM", "RENDERER", "TEXT TRIM")]
    for name, status in local:
        try:
            config = read_model_config(model_dir(name))
        except FileFormatError as err:
            rows.append((name, "unreadable", err.reason, "", "", ""))
            continue
        arch = config.get("architecture", {})
        shape = f"w{arch.get('width')} d{arch.get('depth')} p{arch.get('patch_size')} {arch.get('pool')}"
        renderer = config.get("renderer", {}).get("style", "?")
        dim = arch.get("out_dim") or arch.get("width")
        rows.append((name, status, shape, str(dim), renderer, "yes" if config.get("text_trim") else "no"))
    for name, info in official_checkpoints().items():
        if name not in installed:
            rows.append((name, "pullable", info["description"], "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _pull(args: argparse.Namespace) -> int:
    from model.pull import pull

    out = pull(
        args.name,
        base=args.base_url,
        sha256=args.sha256,
        force=args.force,
        keep_download=args.keep_download,
        progress=not args.quiet,
    )
    print(f"{args.name}: installed in {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from model.convert import convert

    out = convert(args.npz, args.out, name=args.name, overwrite=args.force, knows=args.knows)
    print(f"{args.npz}: converted into {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import model

    encoder = model.load(args.name, device="cpu")
    info = {"name": encoder.name, "dim": encoder.dim, "fingerprint": encoder.fingerprint, **encoder.config}
    json.dump(info, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0
