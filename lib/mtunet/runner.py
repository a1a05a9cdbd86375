"""Batch runner behind `run_all.sh`: executes notebooks/NN_*.ipynb in order with papermill.

A profile (profiles/<name>.yaml) is data:

    description: one line
    parameters:            # papermill parameters; each notebook receives the ones it declares
      image_size: 64
      ...
    notebooks:             # optional per-notebook overrides
      04_variant_ablation: {alpha_values: [0.1, 1.0]}

A parameter that no notebook declares (or that an override gives a notebook that does not
declare it) is an error, not papermill's silent warning. A notebook is skipped when its
executed copy exists and the stamp of (notebook source, library source, its parameters and the
stamps of the notebooks before it) is unchanged; `--force` reruns it. Training runs inside the
notebooks are cached separately (mtunet.experiments), so a rerun only re-trains what changed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mtunet.config import REPO_ROOT
from mtunet.errors import UserError

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILE_DIR = REPO_ROOT / "profiles"
NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
# Parameters the runner itself fills in for every notebook that declares them.
RUNNER_PARAMETERS = ("profile", "data_dir", "results_dir", "figures_dir", "runs_dir",
                     "external_grading_dir")


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """Read a profile YAML by name (profiles/<name>.yaml) or path; check its shape."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise UserError(f"{path}: no such profile (known profiles: {known})")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    unknown_sections = set(profile) - {"description", "parameters", "notebooks"}
    if unknown_sections:
        raise UserError(f"{path}: unknown top-level keys {sorted(unknown_sections)} "
                        "(expected description, parameters, notebooks)")
    profile.setdefault("parameters", {})
    profile.setdefault("notebooks", {})
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names (and default values as source text) of a notebook's `parameters` cell."""
    import papermill

    try:
        return papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # papermill raises plain exceptions for broken notebooks
        raise UserError(f"{notebook}: cannot read its parameters cell ({exc})") from None


def parameters_per_notebook(profile: dict[str, Any], notebooks: list[Path],
                            runner_values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each notebook the profile parameters it declares; unknown names are errors."""
    declared = {nb.stem: set(declared_parameters(nb)) for nb in notebooks}
    everywhere = set().union(*declared.values()) if declared else set()
    shared = dict(profile["parameters"])
    unknown = sorted(set(shared) - everywhere)
    if unknown:
        raise UserError(f"{profile['path']}: parameter(s) {unknown} are declared by no notebook "
                        f"(check the spelling; declared: {sorted(everywhere)})")
    for stem, overrides in profile["notebooks"].items():
        if stem not in declared:
            raise UserError(f"{profile['path']}: 'notebooks' names {stem!r}, which is not a notebook "
                            f"(have: {sorted(declared)})")
        bad = sorted(set(overrides or {}) - declared[stem])
        if bad:
            raise UserError(f"{profile['path']}: notebook {stem} does not declare {bad}")
    result = {}
    for nb in notebooks:
        values = {**runner_values, **shared, **(profile["notebooks"].get(nb.stem) or {})}
        result[nb.stem] = {k: v for k, v in values.items() if k in declared[nb.stem]}
    return result


def library_hash() -> str:
    digest = hashlib.sha1()
    for path in sorted((REPO_ROOT / "lib" / "mtunet").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_of(notebook: Path, params: dict[str, Any], previous: str, lib: str) -> str:
    digest = hashlib.sha1()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(previous.encode())
    digest.update(lib.encode())
    return digest.hexdigest()


def _select(notebooks: list[Path], start: str | None, only: str | None) -> set[str]:
    numbers = [nb.name[:2] for nb in notebooks]
    for value, flag in ((start, "--from"), (only, "--only")):
        if value is not None and value.zfill(2) not in numbers:
            raise UserError(f"{flag} {value}: no notebook numbered {value.zfill(2)} (have {numbers})")
    if only is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] == only.zfill(2)}
    if start is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] >= start.zfill(2)}
    return {nb.stem for nb in notebooks}


def _explain_failure(exc: Exception, notebook: Path, output: Path) -> str:
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return (f"notebook {notebook.name} failed in {where}: {ename}: {evalue}\n"
            f"  the executed notebook with the traceback: {output}")


def run(args: argparse.Namespace) -> int:
    import papermill

    # paths given on the command line: relative to where the user is, re-expressed relative to
    # the repository root (the notebooks resolve relative paths there; no machine paths recorded)
    for attr in ("data_dir", "external_grading_dir"):
        value = getattr(args, attr)
        if value and not os.path.isabs(value):
            setattr(args, attr, os.path.relpath(os.path.abspath(value), REPO_ROOT))
    os.chdir(REPO_ROOT)
    profile = load_profile(args.profile)
    name = profile["name"]
    # a dry run writes beside, never over, a profile's results
    sub = f"{name}/dry-run" if args.dry_run else name
    results_dir = REPO_ROOT / "results" / sub
    executed_dir = results_dir / "executed"
    runner_values = {
        "profile": name,
        "data_dir": args.data_dir or profile["parameters"].get("data_dir"),
        # relative to the repository root, so executed notebooks name no machine paths
        "results_dir": f"results/{sub}",
        "figures_dir": f"figures/{sub}",
        "runs_dir": f"runs/{name}",
        "external_grading_dir": args.external_grading_dir,
    }
    notebooks = list_notebooks()
    if not notebooks:
        raise UserError(f"{NOTEBOOK_DIR}: no notebooks named NN_name.ipynb")
    shared = {k: v for k, v in profile["parameters"].items() if k != "data_dir"}
    profile["parameters"] = {**shared, "data_dir": runner_values["data_dir"]}
    per_notebook = parameters_per_notebook(profile, notebooks, runner_values)
    if args.dry_run:
        for nb in notebooks:
            if "dry_run" not in declared_parameters(nb):
                raise UserError(f"{nb}: --dry-run needs a `dry_run` parameter in this notebook")
            per_notebook[nb.stem]["dry_run"] = True
    chosen = _select(notebooks, args.start, args.only)

    executed_dir.mkdir(parents=True, exist_ok=True)
    stamps_path = executed_dir / "stamps.json"
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    lib = library_hash()
    previous = ""
    started = time.time()
    timings: dict[str, float] = {}
    print(f"profile {name}: {profile.get('description', '')}".rstrip())
    for index, nb in enumerate(notebooks, 1):
        params = per_notebook[nb.stem]
        stamp = stamp_of(nb, params, previous, lib)
        previous = stamp
        output = executed_dir / nb.name
        label = f"[{index}/{len(notebooks)}] {nb.stem}"
        if nb.stem not in chosen:
            print(f"{label}: not selected")
            continue
        if (not args.force and not args.dry_run and output.exists()
                and stamps.get(nb.stem) == stamp):
            print(f"{label}: up to date, skipped (use --force to rerun)")
            continue
        print(f"{label}: running ...", flush=True)
        t0 = time.time()
        # execute into a scratch copy: a failure never replaces the last good executed notebook
        target = executed_dir / f"{nb.stem}.running.ipynb"
        try:
            # paths relative to the repository root: papermill records them in the notebook
            papermill.execute_notebook(os.path.relpath(nb, REPO_ROOT), os.path.relpath(target, REPO_ROOT),
                                       parameters=params, kernel_name="python3",
                                       progress_bar=sys.stderr.isatty(), cwd=str(NOTEBOOK_DIR))
        except Exception as exc:  # papermill wraps the cell's exception
            failed = executed_dir / f"{nb.stem}.failed.ipynb"
            if target.exists():
                target.replace(failed)
            stamps.pop(nb.stem, None)
            stamps_path.write_text(json.dumps(stamps, indent=2))
            print(_explain_failure(exc, nb, failed), file=sys.stderr)
            return 1
        target.replace(output)
        (executed_dir / f"{nb.stem}.failed.ipynb").unlink(missing_ok=True)
        timings[nb.stem] = time.time() - t0
        if not args.dry_run:
            stamps[nb.stem] = stamp
            stamps_path.write_text(json.dumps(stamps, indent=2))
            _update_manifest(results_dir, profile, per_notebook, nb.stem, timings[nb.stem])
        print(f"{label}: done in {timings[nb.stem]:.0f} s", flush=True)
    total = time.time() - started
    print(f"profile {name}: {len(timings)} notebook(s) run in {total / 60:.1f} min "
          f"({', '.join(f'{k[:2]} {v:.0f}s' for k, v in timings.items()) or 'nothing to do'})")
    return 0


def _update_manifest(results_dir: Path, profile: dict[str, Any], parameters: dict[str, Any],
                     notebook: str, seconds: float) -> None:
    """The batch manifest, rewritten after every notebook: an interrupted batch keeps one that
    says which notebooks finished, with which parameters, at which commit."""
    from mtunet.manifest import write_manifest

    path = results_dir / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    finished = previous.get("notebook_seconds", {})
    finished[notebook] = round(seconds, 1)
    write_manifest(path, profile=profile["name"],
                   profile_file=os.path.relpath(profile["path"], REPO_ROOT),
                   parameters=parameters,
                   notebook_seconds={k: finished[k] for k in sorted(finished)},
                   notebook_commits={**previous.get("notebook_commits", {}),
                                     notebook: _commit()})


def _commit() -> str | None:
    from mtunet.manifest import git_commit

    return git_commit()["commit"]


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
