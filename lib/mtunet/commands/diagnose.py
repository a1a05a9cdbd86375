"""`python -m mtunet diagnose`: one network trained under recipe changes, one arm each, scored on
held-out IDRiD-S training images after every epoch (``mtunet.study.recipe_diagnosis``).

    python -m mtunet diagnose --profile cpu --model mtunet --epochs 6 \\
        --arm "interleaved=grade_batches=interleaved" --arm "paired=grade_batches=paired"

``--inference-check RUN_DIR`` trains nothing: it scores a run's held-out images four ways (whole
image or 128-px tiles, moving or per-batch batch-norm statistics) to tell a context flood from a
batch-norm one (``mtunet.study.inference_check``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mtunet.cli import positive_int
from mtunet.commands.select_loss import parse_override, profile_parameters
from mtunet.errors import UserError


def parse_named_arm(text: str) -> tuple[str, dict]:
    """"NAME=CHANGES" -> (NAME, spec changes); CHANGES as ``recipe_diagnosis.parse_arm``."""
    from mtunet.study.recipe_diagnosis import parse_arm

    name, sep, changes = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=CHANGES (e.g. "
                                         "paired=grade_batches=paired)")
    return name, parse_arm(changes)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("diagnose", help="one network under recipe changes, scored on "
                              "held-out training images every epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data-dir", default=None, help="default: the profile's")
    p.add_argument("--model", default="mtunet")
    p.add_argument("--arm", dest="arms", action="append", type=parse_named_arm, default=[],
                   metavar="NAME=CHANGES", help="an arm: NAME=FIELD=VALUE[;FIELD=VALUE]; "
                   "NAME=profile for none (repeat for each arm)")
    p.add_argument("--epochs", type=positive_int, default=6, help="every arm's cap (default 6)")
    p.add_argument("--val-images", type=positive_int, default=10)
    p.add_argument("--set", dest="overrides", action="append", default=[], type=parse_override,
                   metavar="NAME=VALUE")
    p.add_argument("--inference-check", metavar="RUN_DIR", default=None,
                   help="score this run's held-out images four ways instead of training arms")
    p.add_argument("--out", default=None, help="default results/<profile>")
    p.add_argument("--runs-dir", default=None, help="default runs/<profile>")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mtunet.config import resolve_path
    from mtunet.report.tables import write_table
    from mtunet.study.recipe_diagnosis import diagnose, note
    from mtunet.study.roles import splits_from_parameters
    from mtunet.study.runs import Context

    params, data = profile_parameters(args)
    splits = splits_from_parameters(data, params)
    if args.inference_check:
        return check_inference(Path(args.inference_check), splits, params)
    if not args.arms:
        raise UserError("diagnose: give at least one --arm NAME=CHANGES (or --inference-check RUN_DIR)")
    ctx = Context.from_parameters(params)
    table = diagnose(ctx, splits, args.model, args.arms, args.val_images, args.epochs)
    write_table(table, resolve_path(params["results_dir"]), f"diagnosis_{args.model}",
                f"{args.model}: recipe changes scored on held-out IDRiD-S training images",
                note=note(ctx, args.model, args.val_images, args.epochs, args.arms))
    print(table.to_string(index=False))
    return 0


def check_inference(run_dir: Path, splits, params) -> int:
    """Print :func:`mtunet.study.inference_check.inference_check` of a run's held-out images."""
    from mtunet.study.inference_check import inference_check, run_network

    net, info, weights = run_network(run_dir)
    held = set(info.get("heldout_ids") or [])
    records = [r for r in splits["seg_train"] if r.key in held]
    if not records:
        raise UserError(f"{run_dir}: run.json names no held-out images of this profile's IDRiD-S "
                        "train (trained without heldout_images, or with another profile)")
    size = info["spec"].get("work_size") or info["spec"]["image_size"]
    table = inference_check(net, info["model"], records, size)
    print(f"{info['run_id']} ({weights}), {len(records)} held-out images at {size} px:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0
