"""`python -m mtunet select-loss`: a profile's segmentation loss, chosen on held-out IDRiD-S
training images (``mtunet.study.loss_selection``); the profile gives every other setting.

    python -m mtunet select-loss --profile cpu --candidates bce:8,dice:8,bce_dice:8
    python -m mtunet select-loss --profile smoke --set image_size=32 --set encoder_weights=random
"""
from __future__ import annotations

import argparse

from mtunet.cli import positive_int

DEFAULT_CANDIDATES = "bce:8,dice:8,bce_dice:8,bce_dice:16"


def parse_candidates(text: str) -> list[tuple]:
    """argparse type of --candidates; imports the losses (and the backend) only when used."""
    from mtunet.study.loss_selection import parse_candidates as parse

    return parse(text)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("select-loss", help="choose a profile's segmentation loss on "
                              "held-out training images", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", help="profile whose settings the candidates share")
    p.add_argument("--data-dir", default=None, help="default: the profile's")
    p.add_argument("--candidates", type=parse_candidates, default=DEFAULT_CANDIDATES,
                   help=f"LOSS:EPOCHS[:LEARNING_RATE],... (default {DEFAULT_CANDIDATES})")
    p.add_argument("--val-images", type=positive_int, default=10,
                   help="IDRiD-S training images held out for scoring (default 10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], type=parse_override,
                   metavar="NAME=VALUE", help="override a study parameter of the profile (YAML value)")
    p.add_argument("--out", default=None, help="where loss_selection.csv/.md go (default results/<profile>)")
    p.add_argument("--runs-dir", default=None, help="training cache (default runs/<profile>)")
    p.set_defaults(func=main)


def parse_override(text: str) -> tuple[str, object]:
    """"image_size=32" -> ("image_size", 32): a known study parameter and a YAML value."""
    import yaml

    from mtunet.study.parameters import DEFAULTS

    name, sep, value = text.partition("=")
    if not sep or name not in DEFAULTS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with NAME one of the study "
                                         f"parameters ({', '.join(sorted(DEFAULTS))})")
    return name, yaml.safe_load(value)


def profile_parameters(args: argparse.Namespace) -> tuple[dict, "object"]:
    """(study parameters, data folder) of a command run on a profile: the profile's parameters,
    its results and runs folders (``--out``, ``--runs-dir``), ``--set`` overrides, and
    ``--data-dir`` else the profile's data folder (the synthetic set when none)."""
    from mtunet.commands.run_notebooks import load_profile
    from mtunet.study.datasets import resolve_data_dir
    from mtunet.study.parameters import with_defaults

    profile = load_profile(args.profile)
    params = with_defaults({**profile["parameters"], "profile": profile["name"],
                            "results_dir": getattr(args, "out", None) or f"results/{profile['name']}",
                            "runs_dir": getattr(args, "runs_dir", None) or f"runs/{profile['name']}",
                            **dict(args.overrides)})
    return params, resolve_data_dir(args.data_dir or params["data_dir"], params["synthetic"])


def main(args: argparse.Namespace) -> int:
    from mtunet.config import resolve_path
    from mtunet.report.executions import Execution
    from mtunet.report.manifest import git_commit
    from mtunet.study.loss_selection import select_loss
    from mtunet.study.roles import splits_from_parameters
    from mtunet.study.runs import Context

    params, data = profile_parameters(args)
    ctx = Context.from_parameters(params)
    # its wall time joins the profile's notebook executions (the README's results block totals them)
    with Execution(resolve_path(params["runs_dir"]) / "executions.csv", "select-loss",
                   git_commit()["commit"]) as execution:
        table = select_loss(ctx, splits_from_parameters(data, params), params["seed_model"],
                            args.candidates, args.val_images, resolve_path(params["results_dir"]))
        execution.outcome = "done"
    print(table.to_string(index=False))
    return 0
