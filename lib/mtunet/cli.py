"""`python -m mtunet ...`: one entry point; each subcommand lives beside the code it drives.

A subcommand module exposes ``add_parser(subparsers)`` (which sets ``func``) and is imported
lazily, so ``--help`` stays fast and does not import a deep-learning backend.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from mtunet.errors import UserError

# subcommand name -> module defining add_parser(subparsers)
SUBCOMMANDS = {
    "data": "mtunet.data.cli",
    "predict": "mtunet.commands.predict",
    "bench": "mtunet.commands.bench",
    "select-loss": "mtunet.commands.select_loss",
    "diagnose": "mtunet.commands.diagnose",
    "select-grading-inputs": "mtunet.commands.select_grading_inputs",
}


def positive_int(value: str) -> int:
    """argparse type for counts (steps, batch sizes): an integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mtunet",
        description="MTUnet reproduction: data checks, loss selection, prediction and benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
