"""Batch runner behind `run_all.sh`: executes notebooks/NN_*.ipynb in order with papermill.

A profile (profiles/<name>.yaml) is data:

    description: one line
    base: paper            # optional: start from that profile's parameters and overrides
    parameters:            # papermill parameters; each notebook receives the ones it declares
      image_size: 64
      ...
    notebooks:             # optional per-notebook overrides
      04_variant_ablation: {alpha_values: [0.1, 1.0]}

A parameter that no notebook declares (or that an override gives a notebook that does not
declare it) is an error, not papermill's silent warning. A notebook is skipped when its
executed copy exists and the stamp of (notebook source, library source, its parameters and the
stamps of the notebooks before it) is unchanged; `--force` reruns it. Training runs inside the
notebooks are cached separately (mtunet.study.runs), so a rerun only re-trains what changed.

While a notebook runs, the runner shows which step (the Markdown heading above the running cell)
runs, a progress bar over the notebook's code cells with an estimate of the time left (weighted by
how long each cell took the last time the notebook ran, and counting the training minutes of the
runs it used last time that are not trained now), and what the kernel reports about the
training run or scoring in progress ("epoch 2/4", "scoring at full size 50%"); on a terminal as
one redrawn line on stderr, otherwise as plain lines on stdout every so often. After a batch that
ran a notebook it writes results/<profile>/report.html (mtunet.report.html).

This module is the command and the batch's order of steps; the pieces are
mtunet.commands.notebook_plan (profiles, parameters, stamps: what runs and what is skipped),
notebook_execution (papermill, its engine and quiet kernels, the profile lock, the executions
and manifest records), notebook_progress (the bar, the plain lines, the batch's lines) and
notebook_estimate (the time left: cell times and training runs still to train).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

# The names below are imported from here by tests and other commands; each lives in the module
# it is imported from (patch a setting such as PLAIN_STEP_MIN_S there, not here).
from mtunet.commands.notebook_estimate import (  # noqa: F401
    INJECTED, cell_durations, cell_key, durations_file, expected_durations, remember_durations,
    training_runs_used)
from mtunet.commands.notebook_execution import (  # noqa: F401
    commit, execute_notebook, executions_file, make_inputs, profile_lock, register_engine,
    settle_progress_bars, settled_progress)
from mtunet.commands.notebook_execution import update_manifest as _update_manifest
from mtunet.commands.notebook_plan import (  # noqa: F401
    NOTEBOOK_PATTERN, RUNNER_PARAMETERS, Stamps, chained_stamps, declared_parameters,
    library_hash, list_notebooks, load_profile, notebook_dir, parameters_per_notebook,
    profile_dir, runner_values, select_notebooks, stamp_of)
from mtunet.commands.notebook_progress import (CellProgress, duration_text, failure_message,
                                               stopped_line, summary_line)
from mtunet.config import project_root, resolve_path
from mtunet.errors import UserError
from mtunet.kernel_output import KERNEL_ARGUMENTS, drop_kernel_noise, is_kernel_noise  # noqa: F401
from mtunet.report.executions import Execution


def run(args: argparse.Namespace) -> int:
    # paths given on the command line: relative to where the user is, re-expressed relative to
    # the repository root (the notebooks resolve relative paths there; no machine paths recorded)
    root = project_root()
    for attr in ("data_dir", "external_grading_dir"):
        value = getattr(args, attr)
        if value and not os.path.isabs(value):
            setattr(args, attr, os.path.relpath(os.path.abspath(value), root))
    os.chdir(root)
    profile = load_profile(args.profile)
    name = profile["name"]
    # a dry run writes beside, never over, a profile's results
    sub = f"{name}/dry-run" if args.dry_run else name
    results_dir = root / "results" / sub
    values = runner_values(name, sub, args.data_dir or profile["parameters"].get("data_dir"),
                           args.external_grading_dir)
    notebooks = list_notebooks()
    if not notebooks:
        raise UserError(f"{notebook_dir()}: no notebooks named NN_name.ipynb")
    shared = {k: v for k, v in profile["parameters"].items() if k != "data_dir"}
    profile["parameters"] = {**shared, "data_dir": values["data_dir"]}
    per_notebook = parameters_per_notebook(profile, notebooks, values)
    if args.dry_run:
        for nb in notebooks:
            if "dry_run" not in declared_parameters(nb):
                raise UserError(f"{nb}: --dry-run needs a `dry_run` parameter in this notebook")
            per_notebook[nb.stem]["dry_run"] = True
    chosen = select_notebooks(notebooks, args.start, args.only)

    (results_dir / "executed").mkdir(parents=True, exist_ok=True)
    with profile_lock(results_dir / ".run_all.lock", name):
        make_inputs(profile["parameters"])
        return _run_notebooks(args, profile, notebooks, chosen, per_notebook, results_dir, root)


@dataclasses.dataclass
class _Batch:
    """One batch's state as it goes: where it writes, what ran, what it skipped."""
    args: argparse.Namespace
    profile: dict[str, Any]
    per_notebook: dict[str, dict[str, Any]]
    results_dir: Path
    root: Path
    stamps: Stamps
    started: float = dataclasses.field(default_factory=time.time)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    skipped: int = 0
    unselected: int = 0
    upstream_ran: bool = False   # a notebook ran: every later one is stale

    @property
    def name(self) -> str:
        return self.profile["name"]

    @property
    def executed_dir(self) -> Path:
        return self.results_dir / "executed"


def _run_notebooks(args, profile, notebooks, chosen, per_notebook, results_dir: Path, root: Path) -> int:
    """Run the chosen notebooks in order. Once a notebook runs, every later one is stale: its
    inputs (the files earlier notebooks write) may have changed, whatever its own stamp says."""
    batch = _Batch(args, profile, per_notebook, results_dir, root,
                   Stamps(results_dir / "executed" / "stamps.json"))
    stamps = chained_stamps(notebooks, per_notebook, library_hash())
    print(f"profile {batch.name}: {profile.get('description', '')}".rstrip())
    for index, nb in enumerate(notebooks, 1):
        label = f"[{index}/{len(notebooks)}] {nb.stem}"
        if nb.stem not in chosen:
            _not_selected(batch, nb, label)
        elif (not args.force and not args.dry_run and not batch.upstream_ran
              and batch.stamps.up_to_date(nb.stem, stamps[nb.stem], batch.executed_dir / nb.name)):
            batch.skipped += 1
            print(f"{label}: up to date, skipped (use --force to rerun)")
        elif not _run_one(batch, nb, label, f"[{index}/{len(notebooks)}] {nb.stem[:2]}",
                          stamps[nb.stem]):
            return 1
    print(summary_line(batch.name, batch.timings, batch.skipped, batch.unselected,
                       time.time() - batch.started))
    report = results_dir / "report.html"
    if not args.dry_run and (batch.timings or not report.exists()):
        _write_report(batch.executed_dir, report, batch.name, root)
    return 0


def _not_selected(batch: _Batch, nb: Path, label: str) -> None:
    batch.unselected += 1
    if batch.upstream_ran and batch.stamps.forget(nb.stem):
        batch.stamps.save()
        print(f"{label}: not selected; now stale (a notebook before it ran)")
    else:
        print(f"{label}: not selected")


def _progress(batch: _Batch, nb: Path, label: str) -> CellProgress:
    """The notebook's progress line, with last time's cell times and training runs."""
    params = batch.per_notebook[nb.stem]
    return CellProgress(label,
                        history=expected_durations(batch.executed_dir / nb.name,
                                                   durations_file(batch.name)),
                        training_runs=training_runs_used(batch.results_dir / "training_runs.csv",
                                                         nb.stem),
                        runs_dir=resolve_path(params.get("runs_dir") or f"runs/{batch.name}"))


def _run_one(batch: _Batch, nb: Path, label: str, short_label: str, stamp: str) -> bool:
    """Execute one notebook into a scratch copy, which replaces its executed copy when every cell
    ran: a failure never replaces the last good one. False when a cell failed."""
    args, executed_dir = batch.args, batch.executed_dir
    print(f"{label}: running ...", flush=True)
    t0 = time.time()
    target = executed_dir / f"{nb.stem}.running.ipynb"
    progress = _progress(batch, nb, short_label)
    # the notebook's time on this machine, kills included (runs/<profile>/executions.csv)
    execution = None if args.dry_run else Execution(executions_file(batch.name), nb.stem, commit())
    try:
        with execution or contextlib.nullcontext():
            # paths relative to the repository root: papermill records them in the notebook
            execute_notebook(os.path.relpath(nb, batch.root), os.path.relpath(target, batch.root),
                             batch.per_notebook[nb.stem], cwd=notebook_dir(), progress=progress)
            if execution is not None:
                execution.outcome = "done"
    except Exception as exc:  # papermill wraps the cell's exception
        progress.close()
        failed = executed_dir / f"{nb.stem}.failed.ipynb"
        if target.exists():
            target.replace(failed)
        batch.stamps.forget(nb.stem)
        batch.stamps.save()
        print(failure_message(exc, nb, failed), file=sys.stderr)
        print(stopped_line(batch.name, nb.stem, time.time() - batch.started, len(batch.timings)),
              flush=True)
        return False
    finally:
        progress.close()  # also on Ctrl-C: the terminal keeps no half-drawn bar
    _keep(batch, nb, target, stamp, time.time() - t0)
    print(f"{label}: done in {duration_text(batch.timings[nb.stem])}", flush=True)
    return True


def _keep(batch: _Batch, nb: Path, target: Path, stamp: str, seconds: float) -> None:
    """A notebook that ran: its executed copy, its cell times, stamp and manifest entry."""
    output = batch.executed_dir / nb.name
    settle_progress_bars(target)
    target.replace(output)
    (batch.executed_dir / f"{nb.stem}.failed.ipynb").unlink(missing_ok=True)
    batch.timings[nb.stem] = seconds
    batch.upstream_ran = True
    if not batch.args.dry_run:
        remember_durations(durations_file(batch.name), output)
        batch.stamps.record(nb.stem, stamp)
        batch.stamps.save()
        _update_manifest(batch.results_dir, batch.profile, batch.per_notebook, nb.stem, seconds)


def _write_report(executed_dir: Path, report: Path, profile: str, root: Path) -> None:
    """results/<profile>/report.html from the executed notebooks; a failure here is a warning,
    never a failed batch (the tables and figures are made by then)."""
    from mtunet.report.html import write_report

    try:
        count = write_report(executed_dir, report, title=f"MTUnet reproduction: {profile} profile")
    except Exception as exc:  # nbconvert raises many kinds; the batch itself has succeeded
        print(f"warning: {report} not written ({type(exc).__name__}: {exc}); rebuild it with "
              f"python -m mtunet.report.html --profile {profile}", file=sys.stderr)
        return
    if count:
        where = os.path.relpath(report, root) if report.is_relative_to(root) else report
        print(f"report: {where} ({count} notebook(s), {report.stat().st_size / 1e6:.1f} MB)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke", help="profile name or YAML path (default smoke)")
    parser.add_argument("--data-dir", help="data root holding IDRiD/ and kaggle-eyepacs-subset/ "
                        "(default: the profile's; smoke generates a synthetic set)")
    parser.add_argument("--external-grading-dir", help="an external graded set (Table 4)")
    parser.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    parser.add_argument("--only", metavar="NN", help="run notebook NN only")
    parser.add_argument("--force", action="store_true", help="rerun notebooks even if up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate data and parameters and build every model; train nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
