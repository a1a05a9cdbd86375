"""`python -m mtunet select-grading-inputs`: the graders' input size and grade preprocessing,
chosen with the linear probe on held-out APTOS training images (``mtunet.study.grading_inputs``).

    python -m mtunet select-grading-inputs --profile cpu --candidates "128,224 x none,graham"
"""
from __future__ import annotations

import argparse

from mtunet.cli import positive_int
from mtunet.commands.select_loss import parse_override, profile_parameters

DEFAULT_CANDIDATES = "128,224x none,graham"


def parse_candidates(text: str):
    from mtunet.study.grading_inputs import parse_candidates as parse

    try:
        return parse(text)
    except Exception as exc:  # noqa: BLE001 - argparse shows the message
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("select-grading-inputs", help="choose the graders' input size and "
                              "preprocessing on held-out training images",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data-dir", default=None, help="default: the profile's")
    p.add_argument("--candidates", type=parse_candidates, default=DEFAULT_CANDIDATES,
                   help=f"SIZE:PREPROCESSING,... or 'SIZES x NAMES' (default {DEFAULT_CANDIDATES!r})")
    p.add_argument("--heldout-images", type=positive_int, default=None,
                   help="grade_train images held out (default: the profile's heldout_grade_images)")
    p.add_argument("--set", dest="overrides", action="append", default=[], type=parse_override,
                   metavar="NAME=VALUE")
    p.add_argument("--out", default=None, help="default results/<profile>")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mtunet.config import resolve_path
    from mtunet.errors import UserError
    from mtunet.report.tables import write_table
    from mtunet.study.grading_inputs import note, select_grading_inputs
    from mtunet.study.roles import splits_from_parameters

    params, data = profile_parameters(args)
    n_heldout = args.heldout_images or params["heldout_grade_images"]
    if not n_heldout:
        raise UserError("no held-out images: give --heldout-images or set heldout_grade_images "
                        "in the profile")
    splits = splits_from_parameters(data, params)
    table = select_grading_inputs(splits, args.candidates, n_heldout, params["encoder_weights"])
    write_table(table, resolve_path(params["results_dir"]), "grading_input_selection",
                "Graders' input size and preprocessing, chosen on held-out APTOS training images "
                "(linear probe, AUC %)", note=note(table, splits))
    print(table.to_string(index=False))
    return 0
