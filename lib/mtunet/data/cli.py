"""`python -m mtunet data synth|check`: write the synthetic dataset; check and inventory a dataset."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="write synthetic data; check a dataset",
                                   description="Dataset tools: synthetic generator and checker.")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    synth = sub.add_parser("synth", help="write a synthetic IDRiD + Kaggle data root")
    synth.add_argument("--out", required=True, type=Path, help="output folder (data root)")
    synth.add_argument("--n-seg", type=int, default=24, help="segmentation images (default 24)")
    synth.add_argument("--n-grading", type=int, default=40, help="IDRiD graded images (default 40)")
    synth.add_argument("--n-kaggle", type=int, default=40, help="Kaggle-style images (default 40)")
    synth.add_argument("--size", type=int, default=256, help="image width in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.set_defaults(func=run_synth)

    check = sub.add_parser("check", help="check a dataset and print its inventory")
    check.add_argument("path", type=Path, help="an IDRiD root, a Kaggle root, or a data root holding both")
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from mtunet.errors import UserError
    from mtunet.data.synthetic import write_synthetic

    for name in ("n_seg", "n_grading", "n_kaggle"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if args.size < 32:
        raise UserError("--size must be at least 32")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"{args.out}: exists and is not a folder")
    if args.out.is_dir() and ((args.out / "IDRiD").exists() or (args.out / "kaggle-eyepacs-subset").exists()):
        raise UserError(f"{args.out}: already holds IDRiD/ or kaggle-eyepacs-subset/; choose an empty folder")
    out = write_synthetic(args.out, n_seg=args.n_seg, n_grading=args.n_grading, n_kaggle=args.n_kaggle,
                          size=args.size, seed=args.seed)
    print(f"wrote synthetic data root {out} (seg {args.n_seg}, grading {args.n_grading}, "
          f"kaggle {args.n_kaggle}, {args.size} px, seed {args.seed})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from mtunet.data.validate import check_dataset

    print(check_dataset(args.path).format())
    return 0
