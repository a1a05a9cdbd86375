"""The set-up call of a notebook: its parameters, the shared run context, the roles notebook 01
wrote and the output folders, from the notebook's own namespace (papermill injects the profile)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from mtunet.study.parameters import with_defaults


@dataclasses.dataclass
class NotebookSetup:
    """What a notebook of steps 02-07 works with."""

    parameters: dict[str, Any]
    ctx: Any                          # mtunet.study.runs.Context
    splits: Any                       # mtunet.study.roles.StudySplits
    data_dir: Path
    results: Path
    figures: Path


def output_folders(parameters: Mapping[str, Any]) -> tuple[Path, Path]:
    """results/<profile> and figures/<profile> (created), from the parameters."""
    from mtunet.config import resolve_path

    results, figures = resolve_path(parameters["results_dir"]), resolve_path(parameters["figures_dir"])
    results.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    return results, figures


def notebook_setup(namespace: Mapping[str, Any]) -> NotebookSetup:
    """The context, the roles notebook 01 wrote and the output folders, from the parameters
    found in `namespace` (a notebook passes ``globals()``)."""
    import pandas as pd

    from mtunet.study.roles import load_splits
    from mtunet.study.runs import Context

    parameters = with_defaults(namespace)
    results, figures = output_folders(parameters)
    pd.set_option("display.precision", 2)
    splits, data_dir = load_splits(results)
    return NotebookSetup(parameters, Context.from_parameters(parameters), splits, data_dir,
                         results, figures)
